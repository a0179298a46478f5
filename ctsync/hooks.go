package ctsync

import (
	"context"
	"time"
)

// What the failover choreography asks of the engine. The daemon calls
// these from its VRRP hooks; the engine knows nothing of VRRP.

// Settle applies every datagram already received, so that in direct mode
// the kernel holds every state the peer sent before the takeover. It
// waits for the writer off the loop: a long wait (a bulk copy being
// written) must not hold the keep-alives and ACKs.
func (e *Engine) Settle(ctx context.Context) error {
	var done chan struct{}
	if err := e.do(ctx, func() {
		for more := true; more; {
			select {
			case d := <-e.inbox:
				e.onDatagram(ctx, d)
			default:
				more = false
			}
		}
		done = e.writeBarrier()
	}); err != nil {
		return err
	}
	return e.awaitWrites(ctx, done)
}

// drained reports whether every peer that is up has acknowledged
// everything owed to it.
func (e *Engine) drained(now time.Time) bool {
	for _, p := range e.peers {
		idle := p.ep.Idle()
		if p.ctd != nil {
			idle = p.ctd.ep.Unacked() == 0
		}
		if !idle && p.up(now) {
			return false
		}
	}
	return true
}

// Drain waits until the peer has acknowledged everything this node owes
// it (a planned handover: the peer takes over with a complete table), or
// until ctx is done. It reports whether everything was acknowledged.
func (e *Engine) Drain(ctx context.Context) bool {
	for {
		idle := false
		if err := e.do(ctx, func() { idle = e.drained(time.Now()) }); err != nil {
			return false
		}
		if idle {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TakeOver makes this node's tables its own after it became master: the
// peer's states (committed, or in direct mode already in the kernel) join
// the internal cache through a resync, the external cache is emptied, and
// the peer, when it comes back, gets a complete copy.
func (e *Engine) TakeOver(ctx context.Context) error {
	var err error
	if derr := e.do(ctx, func() {
		e.external.clear()
		err = e.resync(ctx)
		e.bulkAll()
	}); derr != nil {
		return derr
	}
	return err
}
