package ctsync

import (
	"context"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/ctsync/proto"
)

// Reconciling the internal cache with the kernel table. A dump catches
// what the events missed (entries older than the listener, lost events)
// and, in multiprimary, adopts and refreshes the peers' flows
// (multiprimary.go). The periodic dump runs off the loop: a goroutine
// waits for the writer to have written what was queued, reads the table
// through a socket of its own and hands the flows to the loop, which
// applies them. A dump of 100k entries took a second or more on the loop,
// holding up the keep-alives and ACKs meanwhile (a peer then looked
// gone). The events the loop takes while the dump runs are newer than
// it: their flows are left as the events made them, and so are those the
// peers changed meanwhile. A resync made on the
// loop meanwhile (a takeover, an overrun, `ctha sync resync`) makes the
// background dump's result stale: it is dropped.

// mergeSlice is how many flows of a finished background dump the loop
// applies per turn: applying 50k flows at once held the loop for tens of
// milliseconds, and with them the packets defer holds (its timeout is
// 20 ms); slices of 4096 still took 4-5 ms each on the loaded lab.
const mergeSlice = 1024

// bgDump is a reconciling dump under way off the loop.
type bgDump struct {
	at    time.Time       // when the table was read (its timeouts are as of then)
	dirty map[ct.Key]bool // flows the events or the peers changed since the dump began
	flows []ct.Flow
	err   error
	stale bool // a resync on the loop came after it began
	// Applying it (finishDump, mergeStep): its reconciliation and the
	// next flow to visit.
	r    *reconcile
	next int
}

// startDump starts a reconciling dump off the loop; finishDump applies
// it. Without a second socket it is made on the loop.
func (e *Engine) startDump(ctx context.Context) {
	conn, err := e.dumpSocket()
	if err != nil {
		e.log.Warn("cannot open a socket for dumps off the loop; dumping on it", "err", err)
		if err := e.resync(ctx); err != nil {
			e.log.Error("reconciling dump failed", "err", err)
		}
		return
	}
	e.beginResync()
	d := &bgDump{dirty: map[ct.Key]bool{}}
	e.bg = d
	// The dump must see the peer's states queued for the kernel: after a
	// takeover they are this node's.
	barrier := e.writeBarrier()
	e.wg.Go(func() {
		d.err = e.awaitWrites(ctx, barrier)
		d.at = time.Now()
		if d.err == nil {
			d.err = conn.Dump(ctx, func(f ct.Flow) bool {
				d.flows = append(d.flows, f)
				return true
			})
		}
		select {
		case e.dumpDone <- d:
		case <-ctx.Done():
		}
	})
}

// finishDump begins to apply a dump made off the loop: mergeStep applies
// it a slice per turn of the loop. Meanwhile e.bg stays set: the events
// and the peers' updates go on marking the flows they change (dirty), and
// no other dump begins.
func (e *Engine) finishDump(ctx context.Context, d *bgDump) {
	switch {
	case d.stale:
		e.bg = nil
		return
	case d.err != nil:
		e.bg = nil
		e.log.Error("reconciling dump failed", "err", d.err)
		e.holdBulk = false // the copies go, as complete as the events made them
		return
	}
	d.r = e.newReconcile(d.at)
	e.mergeStep(ctx)
}

// merging reports whether a finished dump is being applied.
func (e *Engine) merging() bool { return e.bg != nil && e.bg.r != nil }

// mergeStep applies the next slice of the dump being applied, and ends it
// after the last.
func (e *Engine) mergeStep(ctx context.Context) {
	d := e.bg
	if d.stale { // a resync on the loop did it all again
		e.bg = nil
		return
	}
	end := min(d.next+mergeSlice, len(d.flows))
	for i := d.next; i < end; i++ {
		if !d.dirty[d.flows[i].Key()] {
			d.r.visit(&d.flows[i])
		}
	}
	d.next = end
	if end < len(d.flows) {
		d.r.flush() // this slice's refresh writes
		return
	}
	e.bg = nil
	defer func() { e.holdBulk = false }()
	d.r.end(d.dirty)
	if e.cfg.Expectations {
		if err := e.resyncExpects(ctx); err != nil {
			e.log.Error("reconciling the expectations failed", "err", err)
		}
	}
}

// resync reconciles the internal cache with a dump of the kernel table,
// on the loop.
func (e *Engine) resync(ctx context.Context) error {
	if e.bg != nil {
		e.bg.stale = true
	}
	defer func() { e.holdBulk = false }()
	e.beginResync()
	if err := e.settleWrites(ctx); err != nil {
		return err
	}
	r := e.newReconcile(time.Now())
	if err := e.kern.Dump(ctx, func(f ct.Flow) bool {
		r.visit(&f)
		return true
	}); err != nil {
		r.flush()
		return err
	}
	r.end(nil)
	if e.cfg.Expectations {
		return e.resyncExpects(ctx)
	}
	return nil
}

// beginResync records that a dump begins: it covers the resync owed and
// the pauses of the events that have ended (the writer ends its pause
// before it reaches the barrier the dump waits for).
func (e *Engine) beginResync() {
	e.resyncDue = time.Time{}
	e.evPause.owed.Store(false)
	e.lastRecon, e.dumped = time.Now(), true
	e.reconAfter = jittered(reconcileEvery)
	// A dump does what a mirror check does (mirrorcheck.go).
	e.check.last, e.check.after = e.lastRecon, jittered(mpCheckEvery)
	e.staleCheck()
	e.stats.resyncs.Add(1)
}

// reconcile is one dump's reconciliation.
type reconcile struct {
	e       *Engine
	seen    map[ct.Key]bool
	mp      bool
	now     time.Time // when the dump began: its timeouts are as of then
	upMask  uint8
	refresh []flowOp // multiprimary: mirrors written again
}

func (e *Engine) newReconcile(at time.Time) *reconcile {
	return &reconcile{e: e, seen: make(map[ct.Key]bool, e.internal.len()),
		mp: e.cfg.Topology == Multiprimary, now: at, upMask: e.upMask(at)}
}

// visit takes one flow of the dump.
func (r *reconcile) visit(f *ct.Flow) {
	e := r.e
	k := f.Key()
	cached := e.internal.has(k)
	switch {
	case r.mp && !cached:
		adopted, again, peer := e.mpDumped(f, r.now, r.upMask)
		if again {
			x := *f
			x.Timeout = peer.Timeout
			r.refresh = append(r.refresh, flowOp{kernel.Update, x})
			e.external.touch(k, r.now.UnixNano())
		}
		if e.external.has(k) && !adopted {
			return // a mirror: a peer's flow
		}
		if adopted {
			e.stats.adopted.Add(1)
		}
	case !r.mp && e.external.has(k) && e.role != proto.RoleMaster:
		return
	}
	switch e.flt.admit(f, cached, false) {
	case admitForget:
		return
	case admitHold: // replicated with its last kept state
		r.seen[k] = cached
		return
	}
	r.seen[k] = true
	if e.pending(k) {
		return // a held packet's newer state: its event comes
	}
	if old, ok := e.internal.get(k); !ok || !sameButTimeout(&old, f) {
		e.internal.put(f)
		e.queue(k)
	} else {
		e.internal.put(f) // fresher timeout, nothing to send
	}
}

// flush queues the refresh writes.
func (r *reconcile) flush() {
	r.e.stats.refreshed.Add(uint64(len(r.refresh)))
	r.e.queueWrite(writeJob{flows: r.refresh, refresh: true})
	r.refresh = nil
}

// end ends a complete dump: this node's flows it did not list are gone,
// except those the events changed meanwhile (dirty).
func (r *reconcile) end(dirty map[ct.Key]bool) {
	r.flush()
	e := r.e
	for k := range e.internal.keys() {
		if !r.seen[k] && !dirty[k] && !e.pending(k) {
			e.internal.del(k)
			e.queue(k)
		}
	}
}
