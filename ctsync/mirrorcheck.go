package ctsync

import (
	"context"
	"errors"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
)

// The mirror check (multiprimary, direct cache): every mpCheckEvery, the
// mirrors whose timeouts run out (under refreshBelow) and those only dead
// peers hold are looked up in the kernel (kernel.Conn.Get), and adopted or
// refreshed by the rules of multiprimary.go; the full dump that reconciles everything else comes
// every reconcileEvery, as in primary-backup. A dump walks every bucket
// of the kernel's hash table whatever the table holds (262 144 here), and
// a dump every 10 s cost the packets defer held: they waited out their
// timeout in the dumps' windows. A lookup costs the same whatever the
// table's size (kernel.Conn.Get), so the check costs what the mirrors it
// reads do.
//
// The loop gathers the candidates a slice of the cache per turn; the
// lookups then run off the loop, once the writer has written the peers'
// states queued before, a batch at a time, and the loop applies each
// batch as it comes. A mirror the peer changed since the check began is
// left alone: its state is newer than the lookup's. A dump begun
// meanwhile does everything the check does: the check stops.

// mpCheckEvery is the interval between mirror checks, give or take
// reconJitter.
const mpCheckEvery = refreshEvery

const (
	// checkScanSlice is how many flows of the external cache one turn of
	// the loop scans for the check's candidates: the whole cache at once
	// held the loop for tens of milliseconds at 100k mirrors.
	checkScanSlice = 4096
	// checkBatchSize is how many mirrors one Get looks up, and one turn
	// of the loop applies.
	checkBatchSize = 256
	// checkGetTimeout bounds one batch of lookups: a kernel that never
	// answers ends the check, never every later one.
	checkGetTimeout = 10 * time.Second
)

// mirrorCheck is the state of the mirror checks.
type mirrorCheck struct {
	last  time.Time     // when the last check (or dump) began
	after time.Duration // the next check's interval (jittered)
	// The scan for candidates under way (a slice per turn): scanning,
	// the next item of the external cache, the keys found, the peers
	// up when it began.
	scanning bool
	pos      int
	keys     []ct.Key
	up       uint8
	run      *checkRun // the lookups under way; nil: none
}

// checkRun is one check's lookups, batch by batch.
type checkRun struct {
	began   time.Time // when the lookups were queued behind the writer: a mirror written since is left alone
	answers chan checkBatch
	cancel  context.CancelFunc
	stale   bool // a dump began since: its answers are dropped
}

// checkBatch is the answer to one batch of lookups.
type checkBatch struct {
	at    time.Time // when the lookups were made (their timeouts are as of then)
	flows []ct.Flow // the mirrors the kernel holds
	done  bool      // the check's last batch
	err   error
}

// checkTick begins a mirror check when one is due, and scans the next
// slice of the external cache for its candidates; once the scan is
// complete it starts the lookups.
func (e *Engine) checkTick(ctx context.Context, now time.Time) {
	c := &e.check
	if e.cfg.Topology != Multiprimary || e.cfg.Cache != Direct || c.run != nil || e.bg != nil {
		return
	}
	if !c.scanning {
		if now.Sub(c.last) < c.after {
			return
		}
		c.last, c.after = now, jittered(mpCheckEvery)
		c.scanning, c.pos, c.keys, c.up = true, 0, c.keys[:0], e.upMask(now)
	}
	c.pos = e.external.slice(c.pos, checkScanSlice, func(f ct.Flow, holders uint8) {
		// Those a live peer holds whose timeouts run out, and all those
		// only dead peers hold: this node may have taken over their
		// traffic, and must adopt them before a node rejoins and asks
		// for its copy.
		if f.Timeout < refreshBelow || holders&c.up == 0 {
			if k := f.Key(); !e.internal.has(k) {
				c.keys = append(c.keys, k)
			}
		}
	})
	if c.pos < e.external.len() {
		return // the next slice at the next turn
	}
	c.scanning = false
	keys := c.keys
	c.keys = nil
	if len(keys) == 0 {
		return
	}
	conn, err := e.dumpSocket()
	if err != nil {
		e.log.Warn("cannot open a socket for the mirror check", "err", err)
		return
	}
	// The lookups must see the peers' states queued for the kernel:
	// judged against an older entry, a state just received would look
	// refreshed here (adopted), or be written back over (refreshed).
	barrier := e.writeBarrier()
	rctx, cancel := context.WithCancel(ctx)
	r := &checkRun{began: now, answers: make(chan checkBatch), cancel: cancel}
	c.run = r
	e.wg.Go(func() {
		defer cancel()
		err := e.awaitWrites(rctx, barrier)
		for start := 0; ; start += checkBatchSize {
			b := checkBatch{at: time.Now(), err: err}
			if err == nil {
				gctx, gcancel := context.WithTimeout(rctx, checkGetTimeout)
				_, b.err = conn.Get(gctx, keys[start:min(start+checkBatchSize, len(keys))], func(f ct.Flow) {
					b.flows = append(b.flows, f)
				})
				gcancel()
			}
			// A lookup the kernel refused ends nothing; the socket's
			// failure, a timeout or a dump (stale) ends the check.
			b.done = b.err != nil && !errors.Is(b.err, kernel.ErrLookup) || start+checkBatchSize >= len(keys)
			select {
			case r.answers <- b:
			case <-ctx.Done():
				return
			}
			if b.done {
				return
			}
		}
	})
}

// checking reports whether a mirror check's scan is under way: the loop
// turns again at once for its next slice.
func (e *Engine) checking() bool { return e.check.scanning }

// checkAnswers is the channel of the check under way's answers (nil:
// none, which blocks for ever in a select).
func (e *Engine) checkAnswers() <-chan checkBatch {
	if e.check.run == nil {
		return nil
	}
	return e.check.run.answers
}

// staleCheck drops the mirror check under way: a dump begins, which does
// all it does.
func (e *Engine) staleCheck() {
	c := &e.check
	c.scanning, c.keys = false, nil
	if c.run != nil && !c.run.stale {
		c.run.stale = true
		c.run.cancel()
	}
}

// applyCheck applies a batch of the mirror check's answers.
func (e *Engine) applyCheck(b checkBatch) {
	r := e.check.run
	if b.done {
		e.check.run = nil
	}
	if r.stale {
		return
	}
	if b.err != nil {
		e.log.Warn("mirror check", "err", b.err)
	}
	rc := &reconcile{e: e, seen: map[ct.Key]bool{}, mp: true, now: b.at, upMask: e.upMask(b.at)}
	began := r.began.UnixNano()
	for i := range b.flows {
		f := &b.flows[i]
		k := f.Key()
		if e.internal.has(k) {
			continue // this node's own since: its events tell
		}
		if _, written, ok := e.external.getAt(k); !ok || written > began {
			continue // gone, or changed since: newer than the lookup
		}
		rc.visit(f)
	}
	rc.flush()
}

// dumpSocket returns the socket for the dumps and lookups made off the
// loop, opened at the first.
func (e *Engine) dumpSocket() (KernelConn, error) {
	if e.dumpConn == nil {
		c, err := e.opts.Kernel.Dial()
		if err != nil {
			return nil, err
		}
		e.dumpConn = c
	}
	return e.dumpConn, nil
}
