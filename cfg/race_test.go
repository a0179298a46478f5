//go:build race

package cfg

// slowdown is how much slower the race detector makes parsing: the time
// bounds of the tests scale with it.
const slowdown = 10
