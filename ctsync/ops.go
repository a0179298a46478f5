package ctsync

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/ctsync/proto"
	"github.com/ctha/ctha/internal/owner"
	"golang.org/x/sys/unix"
)

var errENOENT = unix.ENOENT

// ErrStopped is returned by operations on an engine that is not running.
var ErrStopped = errors.New("conntrack sync is not running")

// ErrIncomplete is returned by Purge before the peer's complete copy is
// held.
var ErrIncomplete = errors.New("the peer's complete copy is not held yet: nothing purged")

// ErrMaster is returned by Purge on a master.
var ErrMaster = errors.New("this node is master: its table is the reference, nothing to purge")

// do runs f on the engine's goroutine and waits for it; the status is
// published again before it returns, so that a status read after an
// operation (`ctha sync request`, then `ctha status`) shows it.
func (e *Engine) do(ctx context.Context, f func()) error {
	if err := owner.Do(ctx, e.ctl, e.done, func() { f(); e.publish(time.Now()) }); err != owner.ErrStopped {
		return err
	}
	return ErrStopped
}

// Resync reconciles the internal cache with the kernel table and sends
// the peer what differs (conntrackd -R).
func (e *Engine) Resync(ctx context.Context) error {
	var err error
	if derr := e.do(ctx, func() { err = e.resync(ctx) }); derr != nil {
		return derr
	}
	return err
}

// Bulk sends the peer a complete copy of this node's flows (conntrackd -B).
func (e *Engine) Bulk(ctx context.Context) error {
	return e.do(ctx, e.bulkAll)
}

// bulkAll sends every peer a complete copy.
func (e *Engine) bulkAll() {
	for _, p := range e.peers {
		e.startBulk(p)
	}
}

// Request asks the peer for a complete copy of its flows (conntrackd -n).
func (e *Engine) Request(ctx context.Context) error {
	return e.do(ctx, func() {
		for _, p := range e.peers {
			if p.ctd != nil {
				e.apply(ctx, p, []proto.Delivery{e.ctdRequest(p, time.Now())}) // ctdpeer.go
				continue
			}
			p.bulkComplete, p.bulkAsked = false, time.Now()
			p.ep.RequestBulk()
		}
	})
}

// Purge deletes the kernel's flows that the peer does not hold, except
// this node's own (conntrackd -t, run by a backup). The deletions are not
// replicated. It returns how many it deleted. A master never purges: its
// table is the reference (a purge scheduled while it was backup that fires
// after it took over is refused with ErrMaster), and nothing is purged
// before the peer's complete copy is held (ErrIncomplete).
func (e *Engine) Purge(ctx context.Context) (int, error) {
	n := 0
	var err error
	derr := e.do(ctx, func() {
		switch {
		case e.role == proto.RoleMaster:
			err = ErrMaster
			return
		case !e.peers[0].bulkComplete: // primary-backup: one peer
			// Against a partial copy, the master's flows would look stale.
			err = ErrIncomplete
			return
		}
		// What is queued for the kernel first: the dump must not find
		// a flow whose deletion is still queued, nor miss one whose
		// creation is.
		if err = e.settleWrites(ctx); err != nil {
			return
		}
		var stale []ct.Flow
		err = e.kern.Dump(ctx, func(f ct.Flow) bool {
			if !e.external.has(f.Key()) && e.flt.keep(&f) {
				stale = append(stale, f)
			}
			return true
		})
		if err != nil {
			return
		}
		for _, f := range stale {
			e.internal.del(f.Key()) // forgotten without telling the peer
		}
		res := e.write(ctx, e.wr.kern, kernel.Delete, stale)
		n = res.OK
	})
	return n, errors.Join(derr, err)
}

// SetRole tells the engine the node's role; keep-alives carry it.
func (e *Engine) SetRole(ctx context.Context, r Role) error {
	return e.do(ctx, func() {
		e.role = r.protoRole()
		for _, p := range e.peers {
			p.ep.SetRole(e.role)
			if r == RoleMaster {
				p.bulkAsked = time.Time{} // a master awaits no copy of the peer's
			}
		}
		e.wr.mayPause.Store(r != RoleMaster)
		if r != RoleMaster {
			e.yieldToPeer()
		}
	})
}

// SetGroupRole tells the engine this node's role in a sync group
// (multiprimary): the link probes announce the groups it is master of, so
// that each node sees another master of the same group (Status.SplitGroups).
// In primary-backup it is ignored; SetRole says it all.
func (e *Engine) SetGroupRole(ctx context.Context, group string, r Role) error {
	return e.do(ctx, func() {
		if e.cfg.Topology != Multiprimary {
			return
		}
		if r == RoleMaster {
			e.masterOf[group] = true
		} else {
			delete(e.masterOf, group)
		}
	})
}

// yieldToPeer: the peer is master now, so its state of a flow both nodes
// hold replaces this node's own. The own entry stopped seeing the flow's
// packets when the VIPs moved: its TCP window is stale, and the packets
// it would see on a takeover back could fall outside it and be dropped
// as INVALID; the peer's state is written as every peer state is (with
// the liberal window, unless tcp_window_tracking). The peer's records
// that arrive from now on replace the own entries anyway (apply); this
// covers those that came before the role changed (the new master's
// copy starts at once, often before this node has stepped down).
func (e *Engine) yieldToPeer() {
	var yield []ct.Key
	for k := range e.internal.keys() {
		if e.external.has(k) {
			yield = append(yield, k)
		}
	}
	var ops []flowOp
	for _, k := range yield {
		e.internal.del(k)
		if f, ok := e.external.get(k); ok && e.mirror(k) {
			ops = append(ops, flowOp{kernel.Create, f})
		}
	}
	if len(yield) > 0 {
		e.log.Info("the peer's states replace this node's own", "flows", len(yield))
	}
	e.queueWrite(writeJob{flows: ops})
}

// SetVIPs replaces the addresses on this node that are not its own
// (Options.VIPs: flows to them are replicated), as a reload that changes
// the VIPs does.
func (e *Engine) SetVIPs(ctx context.Context, vips []netip.Addr) error {
	vips = slices.Clone(vips)
	return e.do(ctx, func() {
		e.opts.VIPs = vips
		if err := e.refreshOwn(); err != nil {
			e.log.Warn("cannot list this node's addresses", "err", err)
		}
	})
}
