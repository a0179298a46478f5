//go:build !race

package cfg

const slowdown = 1
