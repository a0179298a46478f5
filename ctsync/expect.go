package ctsync

import (
	"context"
	"errors"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/ctsync/proto"
	"github.com/ctha/ctha/ctsync/wire"
)

// expectations are the conntrack expectations replicated (FTP's, SIP's,
// ...): this node's, whose master flow is replicated, and the peer's.
// They travel in the same reliable stream as the flows, after their
// master (the kernel reports the master first), under keys with
// ct.Key.Expect set. The reconciling dumps cover them too
// (resyncExpects).
type expectations struct {
	internal map[ct.Key]ct.Expect
	external map[ct.Key]ct.Expect
}

func (x *expectations) init() {
	if x.internal == nil {
		x.internal = map[ct.Key]ct.Expect{}
	}
	if x.external == nil {
		x.external = map[ct.Key]ct.Expect{}
	}
}

// recordSource is the protocol's Source: flows from the internal cache,
// expectations from theirs.
type recordSource struct{ e *Engine }

// AppendRecord implements proto.Source.
func (s recordSource) AppendRecord(b []byte, k ct.Key) []byte {
	if !k.Expect {
		b = s.e.internal.AppendRecord(b, k)
		if d := s.e.dq; d != nil {
			if t, ok := d.byKey[k]; ok {
				b = wire.AppendWriteAck(b, t) // a packet waits for it (defer.go)
			}
		}
		return b
	}
	if x, ok := s.e.exp.internal[k]; ok {
		return wire.AppendExpect(b, &x)
	}
	return wire.AppendExpectDestroy(b, k)
}

// onExpectEvent applies an expectation event: an expectation is
// replicated when its master flow is.
func (e *Engine) onExpectEvent(ev *kernel.Event) {
	e.exp.init()
	k := ev.Expect.Key()
	if ev.Type == kernel.EventExpectNew {
		if e.internal.has(ev.Expect.MasterKey()) {
			e.exp.internal[k] = *ev.Expect
			e.queue(k)
			return
		}
		e.stats.drop("expect_master_not_replicated")
	}
	if _, ok := e.exp.internal[k]; ok {
		delete(e.exp.internal, k)
		e.queue(k)
	}
}

// expectKeys yields the keys of this node's expectations (a bulk copy
// sends them after the flows).
func (e *Engine) expectKeys(yield func(ct.Key) bool) bool {
	for k := range e.exp.internal {
		if !yield(k) {
			return false
		}
	}
	return true
}

// resyncExpects reconciles this node's expectations with a dump of the
// kernel's, after resync has done the flows: what the events missed (an
// overrun, a restart) is sent, what is gone is withdrawn. As for flows,
// the peer's expectations mirrored here are left out unless this node is
// master.
func (e *Engine) resyncExpects(ctx context.Context) error {
	exps, err := e.kern.DumpExpect(ctx)
	if err != nil {
		return err
	}
	e.exp.init()
	seen := make(map[ct.Key]bool, len(exps))
	for _, x := range exps {
		k := x.Key()
		if _, peer := e.exp.external[k]; peer && e.role != proto.RoleMaster {
			continue
		}
		if !e.internal.has(x.MasterKey()) {
			continue // its master is not replicated
		}
		seen[k] = true
		old, ok := e.exp.internal[k]
		e.exp.internal[k] = x
		old.Timeout = x.Timeout // it counts down: no news
		if !ok || old != x {
			e.queue(k)
		}
	}
	for k := range e.exp.internal {
		if !seen[k] {
			delete(e.exp.internal, k)
			e.queue(k)
		}
	}
	return nil
}

// expectBatch is what a delivery asks of the kernel's expectations.
// Within a batch each expectation ends in the state of the peer's last
// record of it: a create after a destroy of the same one replaces it
// (replaces: deleted, then created), a destroy after a create cancels
// the create. writeExpects writes the replaces' deletes, then the
// creates and replaces, then the deletes.
type expectBatch struct{ creates, replaces, deletes []ct.Expect }

// without returns xs without the expectation of key k, and whether it
// was there.
func without(xs []ct.Expect, k ct.Key) ([]ct.Expect, bool) {
	n := len(xs)
	xs = slices.DeleteFunc(xs, func(x ct.Expect) bool { return x.Key() == k })
	return xs, len(xs) != n
}

// applyExpect takes an expectation record from the peer.
func (e *Engine) applyExpect(r *wire.Record, b *expectBatch) {
	e.exp.init()
	k := r.Expect.Key()
	direct := e.cfg.Cache == Direct
	switch r.Kind {
	case wire.KindExpect:
		e.exp.external[k] = *r.Expect
		if direct && !e.internal.has(r.Expect.MasterKey()) {
			var destroyed bool
			if b.deletes, destroyed = without(b.deletes, k); destroyed {
				b.replaces = append(b.replaces, *r.Expect)
			} else {
				b.creates = append(b.creates, *r.Expect)
			}
		}
	case wire.KindExpectDestroy:
		if x, ok := e.exp.external[k]; ok {
			delete(e.exp.external, k)
			if direct {
				b.creates, _ = without(b.creates, k)
				b.replaces, _ = without(b.replaces, k)
				b.deletes = append(b.deletes, x)
			}
		}
	}
}

// planExpects completes a delivery's batch, written after its flows (the
// masters exist by then). Create replaces a master flow that exists
// (delete and create), which takes its expectations with it: those of the
// masters the delivery writes are created again.
func (e *Engine) planExpects(b *expectBatch, masters []ct.Key) {
	if len(masters) == 0 || len(e.exp.external) == 0 || e.cfg.Cache != Direct {
		return
	}
	written := make(map[ct.Key]bool, len(masters))
	for _, k := range masters {
		written[k] = true
	}
	for _, x := range e.exp.external {
		if written[x.MasterKey()] {
			b.creates = append(b.creates, x)
		}
	}
}

// pruneExpects forgets, at the end of the peer's bulk copy, the peer's
// expectations the copy did not carry.
func (e *Engine) pruneExpects(seen map[ct.Key]bool, b *expectBatch) {
	for k, x := range e.exp.external {
		if !seen[k] {
			delete(e.exp.external, k)
			if e.cfg.Cache == Direct {
				b.deletes = append(b.deletes, x)
			}
		}
	}
}

// commitExpects writes the peer's expectations after a commit of its
// flows; it returns how many the kernel refused.
func (e *Engine) commitExpects(ctx context.Context) (n, failed int, err error) {
	var exps []ct.Expect
	if err := e.do(ctx, func() {
		for _, x := range e.exp.external {
			if !e.internal.has(x.MasterKey()) {
				exps = append(exps, x)
			}
		}
	}); err != nil || len(exps) == 0 {
		return 0, 0, err
	}
	errs, err := e.kern.WriteExpect(ctx, kernel.Create, exps)
	for _, werr := range errs {
		if werr != nil && !errors.Is(werr, unix.EEXIST) {
			failed++
		}
	}
	return len(exps), failed, err
}
