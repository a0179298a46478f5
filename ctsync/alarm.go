package ctsync

import (
	"context"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
)

// Alarm mode (mode = "alarm"), the first protocol of conntrackd: changes
// go to the peer at once but without sequence numbers, acknowledgements
// or resends (the protocol's Unreliable mode); instead every state is sent
// again every refresh_interval, spread over the interval, and the peer
// forgets a state it has not heard of for cache_timeout (in direct mode
// it deletes it from its kernel table too, where it wrote it). A lost
// update is repaired by the next refresh, a lost deletion by the timeout.
// Deletions are sent at once, like every change. The envelope's
// authentication and replay protection apply as in reliable mode.

// expireEvery bounds how often the external cache is scanned for states
// the peer stopped refreshing.
const expireEvery = time.Second

// alarmState is the engine's alarm-mode bookkeeping; the engine's
// goroutine owns it.
type alarmState struct {
	keys       []ct.Key  // this cycle's snapshot of the internal cache
	pos        int       // keys[:pos] were queued in this cycle
	cycleStart time.Time // zero: no cycle yet
	lastExpire time.Time
	peerSince  time.Time // when the peer was last seen coming up; zero: down
	complete   bool      // the engine's bulkComplete at the last tick
}

// alarmDue is how many of n keys are due after elapsed of a refresh
// cycle of length interval: they go out evenly over the cycle, not in one
// burst.
func alarmDue(n int, elapsed, interval time.Duration) int {
	if interval <= 0 || elapsed >= interval {
		return n
	}
	if elapsed <= 0 {
		return 0
	}
	return int(int64(n) * int64(elapsed) / int64(interval))
}

// alarmTick runs alarm mode's periodic work: the spread refresh of this
// node's states, the expiry of the peer's, and the completeness of the
// peer's copy (once the peer has been up for a whole refresh interval, it
// has sent every state it has).
func (e *Engine) alarmTick(ctx context.Context, now time.Time, peerUp bool) {
	a := &e.alarm
	interval := e.cfg.RefreshInterval
	if a.cycleStart.IsZero() || now.Sub(a.cycleStart) >= interval {
		e.alarmQueue(len(a.keys)) // what is left of the cycle that ends
		a.keys = a.keys[:0]
		for k := range e.internal.keys() {
			a.keys = append(a.keys, k)
		}
		a.pos, a.cycleStart = 0, now
	}
	e.alarmQueue(alarmDue(len(a.keys), now.Sub(a.cycleStart), interval))

	if now.Sub(a.lastExpire) >= expireEvery {
		a.lastExpire = now
		e.alarmExpire(ctx, now)
	}

	// A flush or a restarted peer makes the copy incomplete again: count
	// a whole interval from then. (Alarm mode has one peer.)
	p := e.peers[0]
	switch {
	case !peerUp:
		a.peerSince = time.Time{}
	case a.peerSince.IsZero() || a.complete && !p.bulkComplete:
		a.peerSince = now
	}
	if peerUp && !p.bulkComplete && now.Sub(a.peerSince) >= interval {
		p.bulkComplete = true
		e.log.Info("the peer has refreshed every state once (alarm mode)", "entries", e.external.len())
	}
	a.complete = p.bulkComplete
	// The periodic refresh replaces asking again for a complete copy.
	p.bulkAsked = time.Time{}
}

// alarmQueue queues the snapshot's keys up to due that are still this
// node's (a deleted one's destruction went out when it happened).
func (e *Engine) alarmQueue(due int) {
	a := &e.alarm
	for ; a.pos < due && a.pos < len(a.keys); a.pos++ {
		if k := a.keys[a.pos]; e.hasInternal(k) {
			e.queue(k)
		}
	}
}

func (e *Engine) hasInternal(k ct.Key) bool {
	return e.internal.has(k)
}

// alarmExpire forgets the peer's states not heard of for cache_timeout,
// and deletes from the kernel those this node wrote there.
func (e *Engine) alarmExpire(ctx context.Context, now time.Time) {
	limit := now.Add(-e.cfg.CacheTimeout).UnixNano()
	var gone []ct.Flow
	n := 0
	for f, at := range e.external.flows() {
		if at >= limit {
			continue
		}
		k := f.Key()
		e.external.del(k) // the flow the iteration gave: allowed
		n++
		if e.mirror(k) {
			gone = append(gone, f)
		}
	}
	if n == 0 {
		return
	}
	e.stats.expired.Add(uint64(n))
	e.log.Info("peer states expired: not refreshed within cache_timeout", "entries", n)
	ops := make([]flowOp, len(gone))
	for i := range gone {
		ops[i] = flowOp{kernel.Delete, gone[i]}
	}
	e.queueWrite(writeJob{flows: ops})
}
