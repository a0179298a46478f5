package ctdwire

// The end of a bulk, which conntrackd does not mark.

import "time"

// BulkWatch decides when a resync the peer sends has ended. conntrackd
// sends no marker: its answer to a RESYNC (and -B) is state messages like
// any other. The rule: a bulk is complete once Quiet has passed without a
// state message, counted from the request (so an empty peer completes
// after Quiet) or from the last state message since. A peer that keeps
// sending live updates delays completion: use Max to bound it.
type BulkWatch struct {
	Quiet time.Duration // default 2 s
	Max   time.Duration // 0: no bound

	start, last time.Time
	running     bool
}

// Start begins watching at now (when the RESYNC is sent).
func (w *BulkWatch) Start(now time.Time) { w.start, w.last, w.running = now, now, true }

// Observe notes a state message received at now.
func (w *BulkWatch) Observe(now time.Time) {
	if w.running {
		w.last = now
	}
}

// Done reports (once) at now that the bulk is complete.
func (w *BulkWatch) Done(now time.Time) bool {
	if !w.running {
		return false
	}
	q := w.Quiet
	if q <= 0 {
		q = 2 * time.Second
	}
	if now.Sub(w.last) >= q || (w.Max > 0 && now.Sub(w.start) >= w.Max) {
		w.running = false
		return true
	}
	return false
}

// Running reports whether a bulk is being watched.
func (w *BulkWatch) Running() bool { return w.running }
