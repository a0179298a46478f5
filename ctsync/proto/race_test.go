//go:build race

package proto

// raceEnabled: the race detector makes the simulations about ten times
// slower; the volume scenarios run without it (make test's second pass).
const raceEnabled = true
