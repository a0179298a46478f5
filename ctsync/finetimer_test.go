package ctsync

import (
	"sync"
	"testing"
	"time"
)

// TestFineTimer: the timer fires after its deadline, each Reset arms it
// again, a Reset before the deadline moves it, and Close ends run.
func TestFineTimer(t *testing.T) {
	ft, err := newFineTimer()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(ft.run)
	defer func() { ft.Close(); wg.Wait() }()

	wait := func(d time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		if err := ft.Reset(d); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ft.C():
			return time.Since(start)
		case <-time.After(5 * time.Second):
			t.Fatalf("timer of %v never fired", d)
			return 0
		}
	}
	for _, d := range []time.Duration{0, 300 * time.Microsecond, 2 * time.Millisecond} {
		if got := wait(d); got < d {
			t.Errorf("timer of %v fired after %v", d, got)
		}
	}
	// A deadline moved later: no signal at the first one.
	if err := ft.Reset(time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if got := wait(20 * time.Millisecond); got < 20*time.Millisecond {
		t.Errorf("timer moved to 20ms fired after %v", got)
	}
}
