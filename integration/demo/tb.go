package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// fatal is the panic value of demoTB.Fatalf: it unwinds the scenario to
// run, which recovers it and cleans up.
type fatal struct{ msg string }

// demoTB is the lab.TB of the demo: the lab reports to it as it would to a
// test. Fatalf and Skipf panic with a fatal value, so they must only be
// called from the goroutine that runs the scenario (the live view uses
// only lab methods that return errors). Cleanup functions run, last
// registered first, in runCleanups; a Fatalf during cleanup is recorded
// and the other cleanups still run.
type demoTB struct {
	dir  string       // the demo's directory; TempDir makes sub-directories
	logf func(string) // where Logf goes
	mu   sync.Mutex   // guards the fields below
	fns  []func()     // cleanups, in registration order
	errs []string     // every Fatalf message
	n    int          // TempDir counter
	done bool         // runCleanups started: Fatalf no longer panics
}

func (t *demoTB) Helper() {}

func (t *demoTB) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.fns = append(t.fns, f)
}

func (t *demoTB) Logf(format string, args ...any) { t.logf(fmt.Sprintf(format, args...)) }

func (t *demoTB) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	t.mu.Lock()
	t.errs = append(t.errs, msg)
	cleaning := t.done
	t.mu.Unlock()
	if cleaning {
		return
	}
	panic(fatal{msg})
}

// Skipf is a failure too: the lab skips only when it cannot run, which
// the demo checks first with lab.Check.
func (t *demoTB) Skipf(format string, args ...any) { t.Fatalf(format, args...) }

// Failed reports whether Fatalf was called; the lab then prints the tail
// of every process's log when it stops it.
func (t *demoTB) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.errs) > 0
}

// fail marks the run failed without a panic (the scenario's own errors),
// so that the lab's cleanups print the processes' logs.
func (t *demoTB) fail(msg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.errs = append(t.errs, msg)
}

// TempDir returns a new numbered directory under the demo's directory,
// which the demo removes at the end.
func (t *demoTB) TempDir() string {
	t.mu.Lock()
	t.n++
	dir := filepath.Join(t.dir, fmt.Sprintf("proc%02d", t.n))
	t.mu.Unlock()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	return dir
}

// runCleanups runs every cleanup, last registered first, each protected
// from panics, and returns the messages of the Fatalf calls made during
// cleanup.
func (t *demoTB) runCleanups() []string {
	t.mu.Lock()
	t.done = true
	fns := slices.Clone(t.fns)
	t.fns = nil
	before := len(t.errs)
	t.mu.Unlock()
	for _, f := range slices.Backward(fns) {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.mu.Lock()
					t.errs = append(t.errs, fmt.Sprintf("cleanup panicked: %v", r))
					t.mu.Unlock()
				}
			}()
			f()
		}()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.errs[before:])
}
