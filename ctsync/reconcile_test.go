package ctsync

import (
	"testing"
	"time"
)

// TestPacer: a paced task rests as long as it has worked since its last
// rest (at most max), and its rests do not count as work.
func TestPacer(t *testing.T) {
	clock := time.Unix(1000, 0)
	var slept []time.Duration
	p := newPacer(10 * time.Millisecond)
	p.now = func() time.Time { return clock }
	p.sleep = func(d time.Duration) { slept = append(slept, d); clock = clock.Add(d) }

	p.rest() // the start: no rest
	for _, work := range []time.Duration{2 * time.Millisecond, 0, 25 * time.Millisecond, 3 * time.Millisecond} {
		clock = clock.Add(work)
		p.rest()
	}
	want := []time.Duration{2 * time.Millisecond, 0, 10 * time.Millisecond, 3 * time.Millisecond}
	if len(slept) != len(want) {
		t.Fatalf("rests %v, want %v", slept, want)
	}
	for i := range want {
		if slept[i] != want[i] {
			t.Errorf("rest %d: %v, want %v (all: %v)", i, slept[i], want[i], slept)
		}
	}
}
