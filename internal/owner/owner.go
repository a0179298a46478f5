// Package owner runs a function on the goroutine that owns some state (a
// sync engine's loop, a VRRP group's) and waits until it has run. The
// owner receives functions on a channel and runs each one before it takes
// the next; it closes its done channel when it ends.
package owner

import (
	"context"
	"errors"
)

// ErrStopped means the owner had ended: the function did not run.
var ErrStopped = errors.New("stopped")

// Do hands f to the owner over ctl and waits until f has run. It returns
// ErrStopped if the owner ended (done closed) before taking f, and ctx's
// error if ctx ends first; f may then still run, later.
func Do(ctx context.Context, ctl chan<- func(), done <-chan struct{}, f func()) error {
	ran := make(chan struct{})
	select {
	case ctl <- func() { f(); close(ran) }:
	case <-done:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ran:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
