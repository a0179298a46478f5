package ctsync

import (
	"context"
	"errors"
	"fmt"
	"github.com/ctha/ctha/internal/linkwatch"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/ctha/ctha/ctsync/auth"
	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/ctsync/nfq"
	"github.com/ctha/ctha/ctsync/proto"
	"github.com/ctha/ctha/ctsync/wire"
)

// Timers of the engine.
const (
	reconcileEvery = 60 * time.Second // a dump catches what events missed
	refreshEvery   = 10 * time.Second // direct mode: peer states kept alive in the kernel
	refreshBelow   = 3600             // ... those whose timeout is shorter (seconds)
	maxPayload     = 1400 - auth.Overhead
	// coalesce: during a burst, new records wait up to this long to fill a
	// datagram (proto.Config.Coalesce); the first after a quiet spell
	// leaves at once.
	coalesce = 500 * time.Microsecond

	// A node that starts makes its first dump of the kernel table once it
	// holds the peer's complete copy, so that what it mirrors of the peer
	// from a previous run is known as the peer's, not claimed as its own;
	// or when no peer is heard for firstDumpAlone, or at the latest after
	// startup_sync_timeout.
	firstDumpAlone = 3 * time.Second
	// bulkRetry: a bulk request (an unreliable message) that brought no
	// bulk copy is repeated after this long.
	bulkRetry = 2 * time.Second
	// After a netlink overrun the queued events are discarded before the
	// resync: drainQuiet is how long the socket must stay empty, drainMax
	// bounds the whole drain.
	drainQuiet = 20 * time.Millisecond
	drainMax   = 5 * time.Second
	// splitGrace: both nodes master for longer than this is a split brain,
	// not a preemption under way.
	splitGrace = 2 * time.Second
)

// Options are the engine's seams.
type Options struct {
	Log *slog.Logger
	// StateDir holds the epoch files (cfg.Config.StateDir).
	StateDir string
	// VIPs are addresses on this node that are not its own: flows to them
	// are replicated.
	VIPs []netip.Addr

	// OnStatus, if set, is called on the engine's goroutine after the
	// published Status changed in what a reader of events cares about:
	// a peer's reachability, its name, its copy's completeness or count
	// of copies, the peer's role, a split brain. It must not block.
	OnStatus func(prev, now Status)

	// The seams (seams.go), for tests in one process.
	//
	// Kernel is the conntrack table (the kernel's, through netlink, by
	// default).
	Kernel Kernel
	// Listen opens a sync link's socket (a UDP socket bound as the link
	// says, by default).
	Listen func(l Link) (PacketConn, error)
	// Host is what the engine watches of the links' interfaces (rtnetlink
	// by default).
	Host linkwatch.Host
	// OpenQueue binds the NFQUEUE of defer (nfq.Open by default);
	// DeferRules returns the nftables rules that feed it (ctha's
	// tables, package nfqtable, by default).
	OpenQueue  func(num uint16) (PacketQueue, error)
	DeferRules func() (DeferRules, error)
	// Role and MasterOf are the node's role (SetRole) and, in
	// multiprimary, the sync groups it is master of (SetGroupRole) when
	// the engine starts: a reload's new engine takes over the running
	// one's (Handle.Replace). Zero: no role yet.
	Role     Role
	MasterOf []string
	// inherit is the stopped engine this one replaces (Handle.Replace):
	// its caches carry over (inheritFrom).
	inherit *Engine

	// RuntimeTimers: the loop waits with the Go runtime's timers rather
	// than a timerfd (up to a millisecond later; a fake clock, such as
	// testing/synctest's, needs them).
	RuntimeTimers bool
}

// Engine replicates this node's conntrack table to its peer and keeps the
// peer's. One goroutine (Run) owns the caches and the protocol; in direct
// mode a writer goroutine applies the peer's states to the kernel in the
// order the loop queues them (writer.go). The methods that ask something
// of it (Commit, Status, ...) are safe for concurrent use.
type Engine struct {
	cfg   Config
	opts  Options
	log   *slog.Logger
	kern  KernelConn
	lis   KernelEvents
	ls    *linkSet // the sync links (links.go)
	peers []*peer  // peer.go
	flt   *filter

	sender, epoch uint32
	seq           uint64

	internal cache // this node's flows
	external extCache
	exp      expectations // expect.go

	role    proto.Role
	started time.Time
	dumped  bool // the first dump of the kernel table is done
	// holdBulk: this engine replaced a master's (Options.Role) that had
	// not dumped the table yet (else it inherits what that dump found): it
	// dumps the kernel table at once, and its copies wait for that dump,
	// so that the peer is never sent an empty copy, whose end would delete
	// the master's states from the peer's kernel.
	holdBulk               bool
	lastCommit             *CommitResult
	lastRefresh, lastRecon time.Time
	reconAfter             time.Duration // the next dump's interval (reconcileEvery, jittered)
	alarm                  alarmState    // mode = "alarm" (alarm.go)
	refresh                refresh       // direct mode (writer.go)
	resyncDue              time.Time     // a resync owed after the events were paused; zero: none
	evPause                eventPause    // writer.go
	wr                     writer        // the peer's states to the kernel (writer.go)
	timer                  *fineTimer    // the loop's wake-up (finetimer.go)
	// The reconciling dump under way off the loop (reconcile.go), the
	// mirror check (mirrorcheck.go), the socket they read, and where the
	// dump reports.
	bg       *bgDump
	check    mirrorCheck
	dumpConn KernelConn
	dumpDone chan *bgDump
	// Multiprimary (node.go): the groups this node is master of, and
	// since when each has another master too.
	masterOf   map[string]bool
	splitSince map[string]time.Time
	// Defer (defer.go): nil when off. The write acks the writer has
	// written, for the loop to answer (every node answers them).
	dq          *deferral
	writtenMu   sync.Mutex
	written     []written
	writtenWake chan struct{}

	events  chan eventBatch
	inbox   chan datagram
	ctl     chan func()
	done    chan struct{}
	changed chan struct{} // Changed
	wg      sync.WaitGroup

	commitMu sync.Mutex // one commit at a time (ops.go)

	statusMu sync.Mutex
	status   Status // published by the loop
	stats    counters
}

type eventBatch struct {
	events []kernel.Event
	err    error
}

type datagram struct {
	h       auth.Header
	payload []byte
	link    int        // the index of the link it came on
	src     netip.Addr // the address it came from
	peer    *peer      // the peer it came from
}

// New opens the kernel sockets and the sync links; Run starts replication.
func New(c Config, opts Options) (*Engine, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Kernel == nil {
		opts.Kernel = netlinkKernel{}
	}
	if opts.Listen == nil {
		opts.Listen = listenUDP
	}
	if opts.Host == nil {
		opts.Host = linkwatch.Kernel
	}
	if opts.OpenQueue == nil {
		opts.OpenQueue = openQueue
	}
	if opts.DeferRules == nil {
		opts.DeferRules = newDeferRules
	}
	e := &Engine{
		cfg: c, opts: opts, log: opts.Log.With("sync", c.Links[0].Name),
		flt:      newFilter(c.Filter),
		internal: cache{}, external: extCache{},
		events: make(chan eventBatch, 64), inbox: make(chan datagram, 1024),
		ctl: make(chan func()), done: make(chan struct{}), changed: make(chan struct{}, 1),
		dumpDone: make(chan *bgDump, 1), writtenWake: make(chan struct{}, 1),
		wr:       writer{queue: make(chan writeJob, writeQueue), laneWait: refreshMaxWait},
		masterOf: map[string]bool{}, splitSince: map[string]time.Time{},
	}
	// The links first: they fail at once where an address does not
	// exist, before anything of the kernel's conntrack settings is touched.
	var err error
	if e.ls, err = openLinks(c.Links, opts); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			e.ls.Close()
		}
	}()
	if err := opts.Kernel.EnsureEvents(); err != nil {
		return nil, err
	}
	if e.epoch, err = auth.NextEpoch(filepath.Join(opts.StateDir, "sync-epoch"), time.Now()); err != nil {
		return nil, fmt.Errorf("conntrack sync: %w", err)
	}
	if e.peers, err = newPeers(c, opts.StateDir); err != nil {
		return nil, err
	}
	e.sender = auth.NewSenderID()
	if e.kern, err = opts.Kernel.Dial(); err != nil {
		return nil, err
	}
	e.wr.kern = e.kern
	e.wr.dial = func() (kernelConn, error) { return opts.Kernel.Dial() }
	if e.lis, err = opts.Kernel.Listen(kernel.ListenOptions{
		IgnorePortID: e.kern.PortID(), Filter: e.flt.kernelFilter(), Expectations: c.Expectations,
	}); err != nil {
		e.kern.Close()
		return nil, err
	}
	if !opts.RuntimeTimers {
		if e.timer, err = newFineTimer(); err != nil {
			e.lis.Close()
			e.kern.Close()
			return nil, fmt.Errorf("conntrack sync: %w", err)
		}
	}
	if c.Defer > 0 {
		// Last: nothing after it fails, and its rules queue packets.
		if e.dq, err = openDeferral(&c, opts); err != nil {
			if e.timer != nil {
				e.timer.Close()
			}
			e.lis.Close()
			e.kern.Close()
			return nil, err
		}
	}
	e.exp.init()
	if o := opts.inherit; o != nil {
		e.inheritFrom(o)
	}
	e.evPause.pause, e.evPause.join = e.lis.Pause, e.lis.Resume
	// No role yet: not master. A multiprimary node forwards at all times:
	// its events are never paused.
	e.wr.mayPause.Store(c.Topology != Multiprimary && opts.Role != RoleMaster)
	e.role = opts.Role.protoRole()
	e.holdBulk = opts.Role == RoleMaster && c.Topology == PrimaryBackup && !e.dumped
	if c.Topology == Multiprimary {
		for _, g := range opts.MasterOf {
			e.masterOf[g] = true
		}
	}
	for _, p := range e.peers {
		p.guard.SetSelf(e.sender)
		p.ep = proto.New(proto.Config{MaxPayload: maxPayload, Coalesce: coalesce, Epoch: e.epoch,
			Unreliable: c.Mode == Alarm}, recordSource{e})
		p.ep.SetRole(e.role)
		for i := range p.views {
			p.views[i].carrier = e.ls.views[i].carrier
		}
		if c.Protocol == ProtocolConntrackd {
			e.newCtdPeer(p)
		}
	}
	ok = true
	return e, nil
}

// inheritFrom takes over the caches of old, the stopped engine this one
// replaces, when both have the same topology and cache: this node's flows
// as old knew them, so that its first copy to a peer is complete at once
// (an empty copy's end would delete the states that peer mirrors), and,
// with the same peers, theirs (a backup's external cache), which their
// new copies then refresh, and the replay guards. A dump comes at once all
// the same: it finds what changed while no engine ran, and what a new
// filter leaves out.
func (e *Engine) inheritFrom(old *Engine) {
	if old.cfg.Topology != e.cfg.Topology || old.cfg.Cache != e.cfg.Cache {
		return
	}
	e.internal, e.exp.internal = old.internal, old.exp.internal
	old.internal, old.exp.internal = cache{}, nil
	if samePeers(old.cfg.Links, e.cfg.Links) {
		e.external, e.exp.external = old.external, old.exp.external
		old.external, old.exp.external = extCache{}, nil
		// The replay guards too: a fresh one would take once any
		// datagram of the peer's current run, replayed.
		for i, p := range e.peers {
			p.guard = old.peers[i].guard
		}
	}
	e.exp.init()
	if e.dumped = old.dumped; e.dumped {
		e.resyncDue = time.Now()
	}
}

// samePeers reports whether links a and b list the same peers in the same
// order (a multicast link: the one peer).
func samePeers(a, b []Link) bool {
	return len(a) > 0 && len(b) > 0 && slices.Equal(a[0].Peers, b[0].Peers) &&
		a[0].MulticastGroup.IsValid() == b[0].MulticastGroup.IsValid()
}

// Run replicates until ctx is done, then closes the engine's sockets.
func (e *Engine) Run(ctx context.Context) {
	defer close(e.done)
	e.wr.stop = ctx.Done()
	e.wg.Add(2)
	go func() { defer e.wg.Done(); e.listen(ctx) }()
	go func() { defer e.wg.Done(); e.runWriter(ctx) }()
	var tick <-chan struct{}
	var rtimer *time.Timer // with runtime timers
	if e.timer != nil {
		e.wg.Go(e.timer.run)
		tick = e.timer.C()
	} else {
		rtimer = time.NewTimer(time.Hour)
		defer rtimer.Stop()
	}
	e.startLinks(ctx)
	var queued <-chan nfq.Packet
	if e.dq != nil {
		queued = e.dq.q.Packets()
		e.dq.startRules(ctx, e.log)
	}
	defer func() {
		if e.dq != nil {
			e.dq.close(e.log)
		}
		e.lis.Close()
		e.ls.Close()
		if e.timer != nil {
			e.timer.Close()
		}
		e.wg.Wait()
		e.kern.Close()
		if e.dumpConn != nil {
			e.dumpConn.Close()
		}
	}()

	if err := e.refreshOwn(); err != nil {
		e.log.Warn("cannot list this node's addresses", "err", err)
	}
	// No dump yet (see firstDumpAlone), and no bulk request here: the
	// protocol asks the peer for a copy when it first hears from it.
	e.started = time.Now()
	for {
		now := time.Now()
		nextProbe := e.tickLinks(ctx, now)
		e.flush(now)
		if e.merging() {
			e.mergeStep(ctx)
		}
		if e.dq != nil {
			if t := e.deferTick(now); !t.IsZero() {
				nextProbe = earliest(nextProbe, t)
			}
		}
		e.publish(now) // before maintain's dumps, which may take a while
		e.maintain(ctx, now)
		e.publish(time.Now())
		next := nextProbe
		for _, p := range e.peers {
			if p.ctd != nil {
				next = earliest(next, p.ctd.ep.NextTimeout(now))
				continue
			}
			next = earliest(next, p.ep.NextTimeout(now))
		}
		if t := e.refreshTick(time.Now()); !t.IsZero() {
			next = earliest(next, t)
		}
		if !e.resyncDue.IsZero() {
			next = earliest(next, e.resyncDue)
		}
		if e.merging() || e.checking() {
			next = now // the next slice at once, after what is waiting
		}
		var fallback <-chan time.Time // runtime timers, or the timerfd cannot be armed
		if rtimer != nil {
			rtimer.Reset(time.Until(next))
			fallback = rtimer.C
		} else if err := e.timer.Reset(time.Until(next)); err != nil {
			e.log.Error("cannot arm the sync timer", "err", err)
			fallback = time.After(max(time.Until(next), time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return
		case b := <-e.events:
			e.onEvents(ctx, b)
			// Take what else the listener has queued before the next
			// flush: the kernel sends one event per datagram, and one
			// flush per event would send one record per datagram.
			for more := true; more; {
				select {
				case b := <-e.events:
					e.onEvents(ctx, b)
				default:
					more = false
				}
			}
		case d := <-e.inbox:
			e.onDatagram(ctx, d)
		case p, ok := <-queued:
			if !ok {
				// Unbound and without rules, the packets pass; bound,
				// they would wait unread until the queue filled.
				e.log.Error("defer stopped: the queue failed; its rules removed, packets pass without waiting", "err", e.dq.q.Err())
				e.dq.close(e.log)
				queued = nil
				break
			}
			e.onQueued(&p, time.Now())
			for range deferBurst - 1 { // what else is queued, before the next flush
				select {
				case p, ok = <-queued:
				default:
					ok = false
				}
				if !ok {
					break
				}
				e.onQueued(&p, time.Now())
			}
		case <-e.writtenWake:
			e.sendWritten()
		case f := <-e.ctl:
			f()
		case d := <-e.dumpDone:
			e.finishDump(ctx, d)
		case b := <-e.checkAnswers():
			e.applyCheck(b)
		case <-tick:
		case <-fallback:
		}
	}
}

// listen forwards kernel events to the loop.
func (e *Engine) listen(ctx context.Context) {
	for {
		evs, err := e.lis.Receive(nil)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if errors.Is(err, kernel.ErrOverrun) {
			e.drainEvents()
		}
		select {
		case e.events <- eventBatch{evs, err}:
		case <-ctx.Done():
			return
		}
	}
}

// drainEvents discards the events queued on the listener after an
// overrun. Those from before the loss have lost what followed them: a NEW
// whose DESTROY was dropped would bring back, after the resync, a flow that
// is gone from the table (until the next reconciling dump). The resync's
// dump, which starts after the drain, covers everything they said.
func (e *Engine) drainEvents() {
	n := 0
	for end := time.Now().Add(drainMax); time.Now().Before(end); {
		if e.lis.SetReadDeadline(time.Now().Add(drainQuiet)) != nil {
			break
		}
		evs, err := e.lis.Receive(nil)
		n += len(evs)
		if err != nil && !errors.Is(err, kernel.ErrOverrun) {
			break // the deadline: the socket is empty (or closed)
		}
	}
	_ = e.lis.SetReadDeadline(time.Time{})
	e.log.Debug("events queued before the overrun discarded", "events", n)
}

// onDatagram runs the replay checks and the protocol on an authenticated
// datagram, and applies what it delivers.
func (e *Engine) onDatagram(ctx context.Context, d datagram) {
	p := d.peer
	if p.ctd != nil {
		e.onCtdDatagram(ctx, d) // ctdpeer.go
		return
	}
	if err := p.guard.Check(d.h); err != nil {
		e.stats.dropErr(err)
		return
	}
	if d.h.Epoch > p.guard.Epoch() {
		if err := auth.SavePeerEpoch(p.epochPath, d.h.Epoch); err != nil {
			e.log.Error("saving the peer's epoch failed", "peer", p.name(), "err", err)
		}
	}
	// A copy under way or awaited when the peer restarts is abandoned:
	// the new run sends a new one.
	awaiting := p.bulkSeen != nil || !p.bulkAsked.IsZero()
	if d.h.Epoch > p.epoch {
		// A peer met for the first time or restarted: the protocol asks
		// for its copy now.
		p.bulkAsked = time.Now()
	}
	out, err := p.ep.Input(d.h.Epoch, d.payload, time.Now(), nil)
	if err != nil {
		e.stats.drop("malformed")
		// What was decoded before the malformed part stands: the
		// protocol has taken it, and acknowledges it, so the peer never
		// sends it again. It is applied.
		e.apply(ctx, p, out)
		return
	}
	p.epoch = d.h.Epoch
	p.guard.Accept(d.h)
	e.linkHeard(p, d.link, d.src, d.payload, time.Now())
	if e.dq != nil {
		e.onWritten(p, d.payload, time.Now())
	}
	e.stats.datagramsIn.Add(1)
	if p.ep.PeerRestarted() {
		e.log.Info("peer restarted; it will send a complete copy", "peer", p.name())
		if awaiting {
			e.stats.bulkRetries.Add(1)
		}
		p.bulkComplete, p.bulkSeen, p.bulkExpected = false, nil, 0
		if e.cfg.Topology == Multiprimary {
			e.adoptPeer(p)
		}
	}
	e.apply(ctx, p, out)
}

// flush sends what the protocol has to send to each peer.
func (e *Engine) flush(now time.Time) {
	var buf []byte
	for _, p := range e.peers {
		if p.ctd != nil {
			e.ctdFlush(p, now) // ctdpeer.go
			continue
		}
		if p.ep.BulkNeeded() {
			p.bulkOwed = true
		}
		if p.bulkOwed && !e.holdBulk {
			p.bulkOwed = false
			e.startBulk(p)
		}
		for _, b := range p.ep.Output(now, nil) {
			e.seq++
			buf = auth.Seal(buf[:0], &e.cfg.Key, auth.Header{Sender: e.sender, Epoch: e.epoch, Seq: e.seq}, b)
			if err := e.sendTo(p, buf); err != nil {
				e.stats.sendErrors.Add(1)
				continue
			}
			e.stats.datagramsOut.Add(1)
		}
	}
}

// startBulk sends peer p a complete copy, unless one for its current run
// is under way: that one covers everything (proto.Endpoint.StartBulk).
func (e *Engine) startBulk(p *peer) {
	if p.ctd != nil {
		e.ctdBulk(p) // ctdpeer.go
		return
	}
	id := p.ep.StartBulk(func(yield func(ct.Key) bool) {
		for k := range e.internal.keys() {
			if !yield(k) {
				return
			}
		}
		e.expectKeys(yield) // after their masters
	})
	if id == p.bulkSent {
		return
	}
	p.bulkSent = id
	e.stats.bulksSent.Add(1)
	e.log.Info("sending a complete copy to the peer", "peer", p.name(), "entries", e.internal.len(), "bulk", id)
}

// onEvents applies kernel events to the internal cache.
func (e *Engine) onEvents(ctx context.Context, b eventBatch) {
	for i := range b.events {
		ev := &b.events[i]
		if ev.Expect != nil {
			e.onExpectEvent(ev) // expect.go
			continue
		}
		k := ev.Flow.Key()
		if e.bg != nil {
			e.bg.dirty[k] = true // newer than the dump under way
		}
		if e.cfg.Topology == PrimaryBackup && e.external.has(k) && e.role != proto.RoleMaster {
			continue // the peer's flow mirrored in this kernel, not ours
		}
		e.stats.events.Add(1)
		if ev.Type == kernel.EventNew && !e.cfg.SNATPorts.IsZero() && ev.Flow.Status&ct.StatusSrcNAT != 0 &&
			!e.cfg.SNATPorts.Contains(ev.Flow.Reply.DstPort) {
			e.stats.snatOutOfRange.Add(1)
		}
		if ev.Type != kernel.EventDestroy {
			switch e.admitEvent(ev, k) { // filter.go
			case admitStore:
				e.internal.put(&ev.Flow)
				if e.dq == nil || !e.dq.echoed(&ev.Flow) {
					e.queue(k)
				}
				continue
			case admitHold:
				continue
			}
		}
		if e.internal.del(k) {
			e.queue(k)
		} else if e.cfg.Topology == Multiprimary {
			e.external.del(k) // a mirror gone here: nobody forwarded it (multiprimary.go)
		}
	}
	if errors.Is(b.err, kernel.ErrOverrun) {
		e.stats.overruns.Add(1)
		e.log.Warn("conntrack events were lost (netlink overrun); resyncing from a dump")
		if err := e.resync(ctx); err != nil {
			e.log.Error("resync after overrun failed", "err", err)
		}
	} else if b.err != nil {
		e.log.Warn("conntrack event receive failed", "err", b.err)
	}
}

// maintain runs the periodic work: reconciling dumps, and in direct mode
// keeping the peer's states alive in the kernel.
func (e *Engine) maintain(ctx context.Context, now time.Time) {
	peerUp := e.peersUp(now)
	if e.resyncOwed() && e.resyncDue.IsZero() {
		// A takeover's own resync, which often comes at once after a
		// commit, makes it needless: wait a little for it.
		e.resyncDue = now.Add(resyncAfterCommit)
	}
	if e.cfg.Mode == Alarm {
		e.alarmTick(ctx, now, peerUp)
	}
	// A dump waits for the writer to have written what is queued
	// (resync, settleWrites): while the writer is behind (a bulk copy
	// arriving in direct mode) it would hold the loop, and with it the
	// keep-alives and ACKs, for seconds. It comes once the writer has
	// caught up; the loop wakes at least every keep-alive interval.
	writing := e.wr.backlog.Load() > 0
	if !e.dumped && e.holdBulk {
		// A master's table is its own: no copy of the peer's to wait for.
		// Off the loop, as the keep-alives must go on.
		e.refreshOwn()
		e.startDump(ctx)
	} else if !e.dumped {
		since := now.Sub(e.started)
		if !writing && (e.copiesComplete(now) || e.upMask(now) == 0 && since >= firstDumpAlone || since >= e.startupTimeout()) {
			if err := e.resync(ctx); err != nil {
				e.log.Error("first dump of the conntrack table failed", "err", err)
			}
		}
	} else if e.bg == nil && (now.Sub(e.lastRecon) >= e.reconAfter || !e.resyncDue.IsZero() && !now.Before(e.resyncDue)) {
		// Off the loop (reconcile.go): the writer's backlog and the
		// dump itself never hold up the keep-alives.
		e.refreshOwn()
		e.startDump(ctx)
	} else {
		e.checkTick(ctx, now)
	}
	// The request for a peer's copy travels once, unacknowledged: ask
	// again while no copy has begun to arrive.
	for _, p := range e.peers {
		if p.ctd != nil {
			e.ctdTick(ctx, p, now) // ctdpeer.go: its own bulk rules
			continue
		}
		if p.up(now) && !p.bulkAsked.IsZero() && p.bulkSeen == nil && now.Sub(p.bulkAsked) >= bulkRetry {
			e.log.Info("no complete copy from the peer yet; asking again", "peer", p.name(),
				"asked", now.Sub(p.bulkAsked).Round(time.Millisecond))
			p.ep.RequestBulk()
			p.bulkAsked = now
			e.stats.bulkRetries.Add(1)
		}
	}
}

// reconJitter: each interval between dumps is reconcileEvery, give or
// take this fraction, drawn at random. Nodes started together (a power
// cut, a lab) otherwise dump in step for ever, and a pair sharing CPUs
// (virtual machines on one host, the lab) loses both at once: in the
// lab, the held packets that waited out defer's timeout came in those
// windows.
const reconJitter = 0.2

// jittered returns d, give or take reconJitter of it.
func jittered(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*2-1)*reconJitter*float64(d))
}

func (e *Engine) startupTimeout() time.Duration {
	if e.cfg.StartupSyncTimeout > 0 {
		return e.cfg.StartupSyncTimeout
	}
	return DefaultStartupSyncTimeout
}

func (e *Engine) refreshOwn() error {
	addrs, err := e.opts.Host.Addrs()
	if err == nil {
		// The sync links' groups too: the peer's datagrams to a group
		// are the pair's own traffic (their reply source is the group).
		e.flt.setOwn(append(addrs, e.ls.groups()...), e.opts.VIPs)
	}
	return err
}

// mirror reports whether a peer flow belongs in this node's kernel now:
// in direct mode, unless this node has the same flow as its own.
func (e *Engine) mirror(k ct.Key) bool {
	ours := e.internal.has(k)
	return e.cfg.Cache == Direct && !ours
}

// apply takes what peer p sent, in order.
func (e *Engine) apply(ctx context.Context, p *peer, ds []proto.Delivery) {
	var ops []flowOp // in the order the peer sent them
	var exps expectBatch
	var acks []uint32 // write acks: answered once ops are written
	now := time.Now().UnixNano()
	inBulk := p.bulkSeen != nil // some of ops belong to the peer's bulk copy
	for _, d := range ds {
		switch d.Kind {
		case proto.DeliverBulkStart:
			inBulk = true
			// A newer bulk supersedes one in progress: the peer abandoned
			// that one (it gave up on its backlog) and sends everything
			// again after this start.
			if p.bulkSeen != nil {
				e.stats.bulkRetries.Add(1)
				e.log.Info("the peer began its copy again", "peer", p.name(), "bulk", d.BulkID, "received", len(p.bulkSeen))
			}
			p.bulkSeen, p.bulkID, p.bulkExpected = map[ct.Key]bool{}, d.BulkID, int(d.Entries)
			if d.Unchecked && !p.uncheckedLogged {
				p.uncheckedLogged = true
				e.log.Warn("the peer runs an older ctha: its copies do not say which run of this node they are for, so a stale one is taken as current (upgrade it)")
			}
		case proto.DeliverBulkEnd:
			// The end of a superseded bulk is not the end of the copy:
			// what was sent before the newer start comes again after it.
			if p.bulkSeen != nil && d.BulkID == p.bulkID {
				for f := range e.external.heldBy(p.bit) {
					if k := f.Key(); !p.bulkSeen[k] && e.external.release(k, p.bit) {
						if e.mirror(k) {
							ops = append(ops, flowOp{kernel.Delete, f})
						}
					}
				}
				e.pruneExpects(p.bulkSeen, &exps)
				p.bulkReceived = len(p.bulkSeen)
				p.bulkSeen, p.bulkComplete, p.bulkAsked = nil, true, time.Time{}
				p.copies++
				e.stats.bulksReceived.Add(1)
				e.log.Info("complete copy from the peer received", "peer", p.name(), "entries", e.external.held(p.bit),
					"received", p.bulkReceived, "expected", p.bulkExpected, "bulk", d.BulkID)
			}
		case proto.DeliverRecords:
			for b := d.Records; len(b) > 0; {
				r, rest, err := wire.ParseRecord(b)
				if err != nil {
					e.stats.drop("bad_record")
					break
				}
				b = rest
				k := r.Flow.Key()
				if r.Expect != nil {
					k = r.Expect.Key()
				}
				switch r.Kind {
				case wire.KindUpdate:
					if e.cfg.Topology == Multiprimary {
						if op, ok := e.mpUpdate(&r.Flow, now, p.bit); ok {
							ops = append(ops, op)
						}
						break
					}
					if e.role != proto.RoleMaster {
						// The master's state of a flow this node forwarded
						// while it was master: the master owns it now, and
						// its state (window, timeout) replaces the stale one.
						e.internal.del(k)
					}
					e.external.put(&r.Flow, now, p.bit)
					if e.mirror(k) {
						ops = append(ops, flowOp{kernel.Create, r.Flow})
					}
				case wire.KindDestroy:
					if e.cfg.Topology == Multiprimary {
						if op, ok := e.mpDestroy(k, p.bit); ok {
							ops = append(ops, op)
						}
						break
					}
					if x, ok := e.external.del(k); ok {
						if e.mirror(k) {
							ops = append(ops, flowOp{kernel.Delete, x})
						}
					}
				case wire.KindExpect, wire.KindExpectDestroy:
					e.applyExpect(&r, &exps) // expect.go
				case wire.KindWriteAck:
					acks = append(acks, r.Token)
					continue
				default:
					continue // a newer peer's record kind
				}
				e.stats.records.Add(1)
				if e.bg != nil {
					e.bg.dirty[k] = true
				}
				if p.bulkSeen != nil {
					p.bulkSeen[k] = true
				}
			}
		}
	}
	e.planExpects(&exps, masters(ops))
	j := writeJob{flows: ops, exps: exps, bulk: inBulk}
	if len(acks) > 0 {
		j.acks, j.ackPeer = acks, p
		if e.writeInline(ctx, j) {
			return
		}
	}
	e.queueWrite(j)
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func sameButTimeout(a, b *ct.Flow) bool {
	x, y := *a, *b
	x.Timeout, y.Timeout = 0, 0
	return x.Equal(&y)
}
