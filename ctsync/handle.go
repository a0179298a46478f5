package ctsync

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
)

// replaceCarry: after a replacement, the peer the old engine heard counts
// as up for this long while the new one has not heard it yet (the
// protocol's peer timeout): a reload is not an outage of the sync link,
// and must not demote the node (the peer, which stopped hearing the old
// engine, would notice the same silence after as long).
const replaceCarry = time.Second

// Handle runs one Engine at a time and replaces it when the
// configuration changes (a reload). The daemon and the failover
// choreography hold the Handle, never an engine, so that none of them
// ever calls an engine that has stopped; its methods are the Engine's,
// and are safe for concurrent use.
//
// Replace checks the new configuration and opens its new links once
// (CanReplace) while the running engine goes on; only then does it wait
// for the calls in flight, stop the running engine and start the new one
// in the node's role (the last SetRole and SetGroupRole), with the old
// one's caches (Engine.inheritFrom). The new engine has a new epoch, so
// the peer sees it as restarted: each sends the other a complete copy, as
// after a restart of the daemon. The kernel's table is not touched: a
// master's new engine knows its flows at once and sends them all, a
// backup's keeps the master's states where they are (direct cache) and is
// sent them again; a dump soon after finds what changed during the swap.
// The counters go on from the replaced engines' (Stats).
type Handle struct {
	opts    Options
	changed chan struct{}
	cur     atomic.Pointer[Engine] // for Status, which never waits
	prev    atomic.Pointer[Engine] // the engine cur replaced: Status until cur's first

	// life serialises Run's start and end and Replace; it guards running,
	// stop and done.
	life    sync.Mutex
	running bool
	stop    context.CancelFunc
	done    chan struct{} // the engine's Run and its relay have ended
	// use is held for reading by every call to the engine, and for
	// writing (with life) while Replace and Run's end stop it: the calls
	// in flight end before the engine they use stops. eng, cfg and base
	// are written with both held, and read with either.
	use  sync.RWMutex
	eng  *Engine
	cfg  Config
	base Stats // the replaced engines' counters

	mu         sync.Mutex // guards the fields below
	role       Role
	masterOf   map[string]bool
	carryUntil time.Time // see replaceCarry
}

// NewHandle opens an engine (New); Run runs it.
func NewHandle(c Config, opts Options) (*Handle, error) {
	e, err := New(c, opts)
	if err != nil {
		return nil, err
	}
	h := &Handle{opts: opts, changed: make(chan struct{}, 1), eng: e, cfg: c, masterOf: map[string]bool{}}
	h.cur.Store(e)
	return h, nil
}

// Run runs the engine, and those that replace it, until ctx is done.
// A call made before Run waits for it, as an Engine's does.
func (h *Handle) Run(ctx context.Context) {
	h.life.Lock()
	h.running = true
	h.startLocked()
	h.life.Unlock()
	<-ctx.Done()
	h.life.Lock()
	defer h.life.Unlock()
	h.use.Lock()
	defer h.use.Unlock()
	h.running = false
	h.stopLocked()
}

// startLocked runs h.eng, and relays its signals to Changed; life is
// held.
func (h *Handle) startLocked() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	h.stop, h.done = cancel, done
	e := h.eng
	h.mu.Lock()
	carry := time.Until(h.carryUntil)
	h.mu.Unlock()
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		wg.Go(func() { h.relay(ctx, e, carry) })
		e.Run(ctx)
		wg.Wait()
	}()
}

// relay passes e's signals on; when the peer's carried state ends, it
// signals too, so that the followers read Status again.
func (h *Handle) relay(ctx context.Context, e *Engine, carry time.Duration) {
	var end <-chan time.Time
	if carry > 0 {
		t := time.NewTimer(carry)
		defer t.Stop()
		end = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.Changed():
		case <-end:
		}
		select {
		case h.changed <- struct{}{}:
		default:
		}
	}
}

func (h *Handle) stopLocked() {
	if h.stop == nil {
		return
	}
	h.stop()
	<-h.done
	h.stop, h.done = nil, nil
}

// Config returns the running engine's configuration.
func (h *Handle) Config() Config {
	h.life.Lock()
	defer h.life.Unlock()
	return h.cfg
}

// CanReplace reports why c could not replace the engine's configuration:
// c is invalid, or a link of c that the engine does not hold already
// cannot be opened (its address is missing, its port taken). A link with
// the same socket as one of the engine's is not tried: the engine holds
// it until it stops.
func (e *Engine) CanReplace(c Config) error {
	if err := c.check(); err != nil {
		return err
	}
	for _, l := range c.Links {
		held := false
		for _, o := range e.cfg.Links {
			held = held || sameSocket(l, o)
		}
		if held {
			continue
		}
		conn, err := e.opts.Listen(l)
		if err != nil {
			return fmt.Errorf("sync link %s: %w", l.Name, err)
		}
		conn.Close()
	}
	return nil
}

// sameSocket reports whether links a and b open the same socket.
func sameSocket(a, b Link) bool {
	return a.Interface == b.Interface && a.Local == b.Local && a.MulticastGroup == b.MulticastGroup && a.Port == b.Port
}

// Replace runs an engine of configuration c instead of the running one,
// with vips as its Options.VIPs; it reports false, and does nothing, when
// c is the running configuration. When c cannot run (CanReplace), the
// running engine goes on untouched and the error says why. In the rare
// case that c passed the check but its engine then failed to open (an
// address removed in between), an engine of the previous configuration
// runs again, and the error says so.
func (h *Handle) Replace(c Config, vips []netip.Addr) (bool, error) {
	h.life.Lock()
	defer h.life.Unlock()
	old, oldCfg := h.eng, h.cfg
	if !h.running {
		return false, ErrStopped
	}
	if reflect.DeepEqual(c, oldCfg) {
		return false, nil
	}
	if err := old.CanReplace(c); err != nil {
		return false, err
	}
	h.use.Lock()
	defer h.use.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	st := old.Stats(ctx)
	cancel()
	peerUp := old.Status().PeerUp
	h.stopLocked()

	opts := h.opts
	opts.VIPs, opts.inherit = vips, old
	h.mu.Lock()
	opts.Role, opts.MasterOf = h.role, nil
	for g := range h.masterOf {
		opts.MasterOf = append(opts.MasterOf, g)
	}
	if peerUp {
		h.carryUntil = time.Now().Add(replaceCarry)
	}
	h.mu.Unlock()
	e, err := New(c, opts)
	if err != nil {
		err = fmt.Errorf("conntrack_sync not replaced: %w", err)
		e2, err2 := New(oldCfg, opts)
		if err2 != nil {
			// Nothing runs: the calls get ErrStopped from the old
			// engine, stopped (an engine runs once).
			return false, errors.Join(err, fmt.Errorf("and the previous configuration could not run again: %w", err2))
		}
		h.opts.inherit = nil
		h.base.add(st) // the stopped engine's counters, once another replaces it
		h.eng = e2
		h.prev.Store(old)
		h.cur.Store(e2)
		h.startLocked()
		return false, fmt.Errorf("%w; the previous configuration runs again (a new engine)", err)
	}
	opts.inherit = nil
	h.base.add(st)
	h.opts, h.eng, h.cfg = opts, e, c
	h.prev.Store(old)
	h.cur.Store(e)
	h.startLocked()
	return true, nil
}

// Status is the running engine's (Engine.Status); it never waits for a
// replacement. Until a new engine has published its own, it is the
// replaced one's last; shortly after, the peer the old engine heard is
// still reported up (replaceCarry).
func (h *Handle) Status() Status {
	st := h.cur.Load().Status()
	if st.Peers == nil { // not published yet: a new engine
		if p := h.prev.Load(); p != nil {
			st = p.Status()
		}
	}
	if !st.PeerUp {
		h.mu.Lock()
		carry := time.Now().Before(h.carryUntil)
		h.mu.Unlock()
		st.PeerUp = carry
	}
	return st
}

// Changed is signalled when the running engine's is (Engine.Changed), and
// when an engine replaces another.
func (h *Handle) Changed() <-chan struct{} { return h.changed }

// engine returns the running engine, with use held for reading: call
// done when the call to it has returned.
func (h *Handle) engine() (e *Engine, done func()) {
	h.use.RLock()
	return h.eng, h.use.RUnlock
}

// SetRole is Engine.SetRole; an engine that replaces this one starts in
// role r.
func (h *Handle) SetRole(ctx context.Context, r Role) error {
	e, done := h.engine()
	defer done()
	h.mu.Lock()
	h.role = r
	h.mu.Unlock()
	return e.SetRole(ctx, r)
}

// SetGroupRole is Engine.SetGroupRole; an engine that replaces this one
// starts with it.
func (h *Handle) SetGroupRole(ctx context.Context, group string, r Role) error {
	e, done := h.engine()
	defer done()
	h.mu.Lock()
	if r == RoleMaster {
		h.masterOf[group] = true
	} else {
		delete(h.masterOf, group)
	}
	h.mu.Unlock()
	return e.SetGroupRole(ctx, group, r)
}

// Settle is Engine.Settle.
func (h *Handle) Settle(ctx context.Context) error {
	e, done := h.engine()
	defer done()
	return e.Settle(ctx)
}

// Commit is Engine.Commit.
func (h *Handle) Commit(ctx context.Context) (CommitResult, error) {
	e, done := h.engine()
	defer done()
	return e.Commit(ctx)
}

// TakeOver is Engine.TakeOver.
func (h *Handle) TakeOver(ctx context.Context) error {
	e, done := h.engine()
	defer done()
	return e.TakeOver(ctx)
}

// Request is Engine.Request.
func (h *Handle) Request(ctx context.Context) error {
	e, done := h.engine()
	defer done()
	return e.Request(ctx)
}

// Purge is Engine.Purge.
func (h *Handle) Purge(ctx context.Context) (int, error) {
	e, done := h.engine()
	defer done()
	return e.Purge(ctx)
}

// Drain is Engine.Drain.
func (h *Handle) Drain(ctx context.Context) bool {
	e, done := h.engine()
	defer done()
	return e.Drain(ctx)
}

// Flush is Engine.Flush.
func (h *Handle) Flush(ctx context.Context) error {
	e, done := h.engine()
	defer done()
	return e.Flush(ctx)
}

// Resync is Engine.Resync.
func (h *Handle) Resync(ctx context.Context) error {
	e, done := h.engine()
	defer done()
	return e.Resync(ctx)
}

// Bulk is Engine.Bulk.
func (h *Handle) Bulk(ctx context.Context) error {
	e, done := h.engine()
	defer done()
	return e.Bulk(ctx)
}

// Dump is Engine.Dump.
func (h *Handle) Dump(ctx context.Context, which string) ([]ct.Flow, error) {
	e, done := h.engine()
	defer done()
	return e.Dump(ctx, which)
}

// Stats is Engine.Stats, counted from the first engine: the replaced
// engines' counters are added.
func (h *Handle) Stats(ctx context.Context) Stats {
	e, done := h.engine()
	defer done()
	s := e.Stats(ctx)
	s.add(h.base)
	return s
}

// add adds o's counters to s's.
func (s *Stats) add(o Stats) {
	for _, p := range [][2]*uint64{
		{&s.DatagramsIn, &o.DatagramsIn}, {&s.DatagramsOut, &o.DatagramsOut}, {&s.SendErrors, &o.SendErrors},
		{&s.Records, &o.Records}, {&s.Events, &o.Events}, {&s.Overruns, &o.Overruns}, {&s.Resyncs, &o.Resyncs},
		{&s.KernelWrites, &o.KernelWrites}, {&s.KernelFailures, &o.KernelFailures}, {&s.Commits, &o.Commits},
		{&s.BulksSent, &o.BulksSent}, {&s.BulksReceived, &o.BulksReceived}, {&s.BulksStale, &o.BulksStale},
		{&s.BulkRetries, &o.BulkRetries}, {&s.SplitBrains, &o.SplitBrains}, {&s.LinkSwitches, &o.LinkSwitches},
		{&s.Expired, &o.Expired}, {&s.StaleUpdates, &o.StaleUpdates}, {&s.Adopted, &o.Adopted},
		{&s.Refreshed, &o.Refreshed}, {&s.SNATOverlaps, &o.SNATOverlaps}, {&s.SNATOutOfRange, &o.SNATOutOfRange},
		{&s.NATConflicts, &o.NATConflicts},
		{&s.Protocol.DataSent, &o.Protocol.DataSent}, {&s.Protocol.Resent, &o.Protocol.Resent},
		{&s.Protocol.AcksSent, &o.Protocol.AcksSent}, {&s.Protocol.NacksSent, &o.Protocol.NacksSent},
		{&s.Protocol.KeepalivesSent, &o.Protocol.KeepalivesSent}, {&s.Protocol.Delivered, &o.Protocol.Delivered},
		{&s.Protocol.Duplicates, &o.Protocol.Duplicates}, {&s.Protocol.OutOfWindow, &o.Protocol.OutOfWindow},
		{&s.Protocol.Jumps, &o.Protocol.Jumps}, {&s.Protocol.GaveUp, &o.Protocol.GaveUp},
		{&s.Protocol.Malformed, &o.Protocol.Malformed},
	} {
		*p[0] += *p[1]
	}
	s.Drops = addCounts(s.Drops, o.Drops)
	s.Filtered = addCounts(s.Filtered, o.Filtered)
}

func addCounts(a, b map[string]uint64) map[string]uint64 {
	if len(b) == 0 {
		return a
	}
	if a == nil {
		a = map[string]uint64{}
	}
	for k, v := range b {
		a[k] += v
	}
	return a
}

// SetVIPs is Engine.SetVIPs; an engine that replaces this one starts with
// vips.
func (h *Handle) SetVIPs(ctx context.Context, vips []netip.Addr) error {
	h.life.Lock()
	h.opts.VIPs = vips
	h.life.Unlock()
	e, done := h.engine()
	defer done()
	return e.SetVIPs(ctx, vips)
}
