package vrrp

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ctha/ctha/vrrp/packet"
)

// Hooks connect a sync group's transitions to the rest of the daemon; the
// daemon wires the conntrack engine through them.
type Hooks interface {
	// BeforeMaster runs when the group is about to become master, before
	// any advert is sent or virtual IP added: it makes the node ready to
	// forward (the conntrack engine completes the kernel table). Adverts
	// keep being processed while it runs, and ctx is cancelled if a
	// better master appears. The takeover proceeds when it returns; an
	// error is logged.
	BeforeMaster(ctx context.Context, group string) error
	// Transitioned tells that the group moved (its virtual IPs already
	// have). It must not block.
	Transitioned(group string, from, to State, reason Reason)
}

// InstanceTransition is one instance's move.
type InstanceTransition struct {
	Instance string
	From, To State
	Reason   Reason
	Priority uint8 // the effective priority after the move
}

// InstanceHooks hear the moves of a group's instances (or of a lone
// instance).
type InstanceHooks interface {
	// InstancesTransitioned tells which instances moved in one step of
	// their group, in the order they moved (their virtual IPs already
	// have). groupMoves says the group moved in the same step and its
	// Transitioned comes right after this call (never for a lone
	// instance). The callee may keep
	// moves; it must not block.
	InstancesTransitioned(moves []InstanceTransition, groupMoves bool)
}

// VIPs is what an instance needs of its virtual addresses (addr.Manager).
type VIPs interface {
	// Up adds the addresses and sends the first gratuitous ARP / NA at once,
	// returning when that was written.
	Up() (time.Time, error)
	Down() error
	Announce() error
	// Present reports which of the instance's VIPs the kernel holds now.
	Present() ([]netip.Prefix, error)
	// RemoveStale removes the instance's addresses left by a crashed run
	// and says which it found.
	RemoveStale() ([]netip.Prefix, error)
	// Retire hands over to a replacement configured as next after a
	// reload: it stops the announcements, removes the addresses next does
	// not place on the same interface, and closes.
	Retire(next Instance) error
	Close() error
}

// member is one instance inside its group's goroutine.
type member struct {
	// name is the instance's name: it never changes, and unlike cfg
	// (replaced by a reload on the group's goroutine) other goroutines
	// may read it.
	name     string
	cfg      Instance
	m        Machine
	conn     Conn
	vips     VIPs
	recv     atomic.Pointer[receiver] // replaced on reload; read by the socket reader
	stats    *counters
	trackers []*tracked
	log      *slog.Logger
	// bound is the index of the interface conn and vips were opened on;
	// ifindex the interface's index now (the link watch's latest word).
	// They differ once the interface was deleted and created again: the
	// member is then FAULT until rebind has reopened both on the new one.
	bound, ifindex int
	// mismatch is the VIP list of the last advert that differed from
	// ours, so each difference is logged once.
	mismatch atomic.Value // string
	// prepared holds the adverts send built, one per destination.
	prepared []preparedAdvert
	// ah is the AH state of an instance with AuthAH, nil otherwise;
	// authLog limits the log of adverts that fail authentication.
	ah      *ahState
	authLog dropLog
	// masterAddr and masterStr: the current master, as status shows it.
	masterAddr netip.Addr
	masterStr  string
	// routesWarned is 1 + the transition count when restoring routes
	// last failed with a warning: one warning per state.
	routesWarned uint64
	// lastGARP is how long the last takeover took from the group's
	// Master_Down (or preemption) to this member's first GARP / NA.
	lastGARP time.Duration
	// The timing thread leaves a socket whose reads fail (other than
	// EAGAIN) unpolled until readPause, each failure in a row doubling
	// readBackoff: an error that stayed on it would make the thread spin,
	// at realtime priority too.
	readPause   time.Time
	readBackoff time.Duration
}

// tracked is a tracker's state as one member sees it.
type tracked struct {
	name   string
	weight int // 0: FAULT while down; >0 added while up; <0 added while down
	up     bool
	// reverse (track_file, track_process) negates the weight, and with
	// weight 0 makes up the FAULT state.
	reverse bool
	// file: a track_file's, whose value (not up) counts.
	file  bool
	value int
}

// effective returns the priority and fault the member's trackers give.
func (mb *member) effective(extra int) (uint8, bool) {
	adj, fault := extra, false
	for _, t := range mb.trackers {
		a, f := t.contribution()
		adj += a
		fault = fault || f
	}
	if mb.stale() {
		fault = true
	}
	if adj == 0 {
		return mb.cfg.Priority, fault
	}
	return uint8(min(max(int(mb.cfg.Priority)+adj, 1), 254)), fault
}

// stale reports whether the member's socket and addresses are on an
// interface that no longer exists.
func (mb *member) stale() bool { return mb.ifindex != 0 && mb.ifindex != mb.bound }

type inbound struct {
	member int
	ad     packet.Advert
	src    netip.Addr
	at     time.Time // when it was read
}

type trackUpdate struct {
	name  string
	up    bool
	index int // a link's interface index; 0: a script, or unknown
	value int // a track_file's value
}

type hookResult struct {
	id  int
	err error
}

type queued struct {
	member int
	ev     Event
	at     time.Time // when it happened; zero: when it is applied
}

// Group is a sync group (or a lone instance): members that fail over
// together. Its goroutine (run) and its timing thread (clock) share the
// fields below but ctl/in/track, each holding mu while it uses them; only
// the goroutine replaces a member's conn, vips or cfg.
type Group struct {
	mu            sync.Mutex
	clock         *clock      // nil with runtime timers
	fallback      *time.Timer // the runtime timer, when clock is nil
	name          string
	implicit      bool // a lone instance, not a configured sync_group
	members       []*member
	hooks         Hooks
	instHooks     InstanceHooks
	moves         []InstanceTransition // this step's, for instHooks
	log           *slog.Logger
	now           func() time.Time
	runtimeTimers bool // Options.RuntimeTimers

	in    chan inbound
	track chan trackUpdate
	addrs chan struct{} // the kernel's addresses changed: reconcileVIPs
	ctl   chan func()
	// routeKick asks the route checker (checkRoutes) for a check.
	routeKick chan struct{}
	hookDone  chan hookResult
	doneCh    chan struct{} // closed when run returns
	deferred  bool          // start with preemption deferred

	ctx        context.Context // run's
	queue      []queued
	acts       []Action         // drain's, reused
	status     []InstanceStatus // publishStatus's, reused
	state      State
	since      time.Time
	reason     Reason // of the member transition that moved the group last
	faulted    bool
	hookCancel context.CancelFunc
	hookID     int
	taking     bool      // a takeover is under way (hook running or go-ahead queued)
	takeoverAt time.Time // when the last takeover began
	hooksWG    sync.WaitGroup
	demotions  map[string]int // reason -> priority adjustment
	demote     int            // their sum
	demoted    string         // their reasons, for status
	publish    func(GroupStatus, []InstanceStatus)
	// reopen opens an instance's connection and addresses again, on its
	// interface as it is now; startReader reads a member's connection
	// (the Runner's).
	reopen      func(Instance, *slog.Logger) (Conn, VIPs, error)
	startReader func(i int, c Conn)
	onRestored  func(instance string, vips []string) // Options.OnVIPsRestored
}

// dispatch queues an event for a member; drain applies it.
func (g *Group) dispatch(i int, ev Event) { g.queue = append(g.queue, queued{member: i, ev: ev}) }

// dispatchAt queues an event that happened at a known time.
func (g *Group) dispatchAt(i int, ev Event, at time.Time) {
	g.queue = append(g.queue, queued{member: i, ev: ev, at: at})
}

// dispatchAll queues an event for every member.
func (g *Group) dispatchAll(ev Event) {
	for i := range g.members {
		g.dispatch(i, ev)
	}
}

// drain applies queued events, and those they cause, in order. The queue
// and the actions reuse their arrays: the timing path allocates nothing.
func (g *Group) drain() {
	for j := 0; j < len(g.queue); j++ {
		q := g.queue[j]
		mb := g.members[q.member]
		now := g.now()
		if !q.at.IsZero() && q.at.Before(now) {
			now = q.at
		}
		mb.m, g.acts = mb.m.step(q.ev, now, g.acts[:0])
		g.apply(q.member, g.acts)
	}
	g.queue = g.queue[:0]
	g.aggregate()
}

func (g *Group) apply(i int, acts []Action) {
	mb := g.members[i]
	for _, a := range acts {
		switch a.Kind {
		case ActSend:
			g.send(mb, a.Priority)
		case ActWantMaster:
			g.wantMaster()
		case ActAbortTakeover:
			g.abortTakeover(i)
		case ActAddVIPs:
			first, err := mb.vips.Up()
			if err != nil {
				mb.stats.vipErrors.Add(1)
				mb.log.Error("adding virtual IPs failed", "err", err)
			} else if !g.takeoverAt.IsZero() {
				mb.lastGARP = first.Sub(g.takeoverAt)
			}
		case ActRemoveVIPs:
			if err := mb.vips.Down(); err != nil {
				mb.stats.vipErrors.Add(1)
				mb.log.Error("removing virtual IPs failed", "err", err)
			}
		case ActAnnounce:
			if err := mb.vips.Announce(); err != nil {
				mb.log.Warn("gratuitous ARP / NA failed", "err", err)
			}
		case ActTransition:
			if a.Reason != ReasonGroup {
				// The move that leads the group; its followers' come
				// after it in the same drain (dispatchOthers).
				g.reason = a.Reason
			}
			mb.stats.transitions.Add(1)
			mb.log.Info("transition", "from", a.From, "to", a.To, "reason", a.Reason,
				"priority", mb.m.EffPriority, "master", addrOrNone(mb.m.Master))
			if g.instHooks != nil {
				g.moves = append(g.moves, InstanceTransition{Instance: mb.name, From: a.From, To: a.To,
					Reason: a.Reason, Priority: mb.m.EffPriority})
			}
			if a.From == Master && a.To == Backup && a.Reason == ReasonHigherPriority {
				g.dispatchOthers(i, Event{Kind: EvGoBackup})
			}
		}
	}
}

func (g *Group) dispatchOthers(i int, ev Event) {
	for j := range g.members {
		if j != i {
			g.dispatch(j, ev)
		}
	}
}

// send sends one advert per destination (the v3 IPv4 checksum covers the
// destination). Each destination's packet is built once and sent as it is
// until what it says changes (priority, source, the VIP list or interval
// after a reload): a master's periodic adverts allocate nothing.
func (g *Group) send(mb *member, prio uint8) {
	recv := mb.recv.Load()
	src := mb.conn.Source()
	n := max(len(mb.cfg.UnicastPeers), 1)
	if len(mb.prepared) != n {
		mb.prepared = make([]preparedAdvert, n)
	}
	// With AH every advert differs (its ID, sequence number and ICV):
	// one sequence number per round, as keepalived counts.
	var ip packet.IPv4
	var seq uint32
	if mb.ah != nil {
		ip = packet.IPv4{TOS: tosNetworkControl, ID: mb.ah.nextID(), TTL: packet.TTL, Src: src}
		seq = mb.ah.nextSeq()
	}
	for j := range n {
		dst := packet.Group4
		switch {
		case len(mb.cfg.UnicastPeers) > 0:
			dst = mb.cfg.UnicastPeers[j]
		case mb.cfg.Family == IPv6:
			dst = packet.Group6
		}
		p := &mb.prepared[j]
		key := advertKey{prio: prio, src: src, dst: dst, recv: recv, version: mb.cfg.Version, vrid: mb.cfg.VRID, interval: mb.cfg.AdvertInterval}
		var err error
		if mb.ah != nil {
			ad := packet.Advert{Version: key.version, VRID: key.vrid, Priority: prio, Interval: key.interval, Addrs: recv.vips}
			ip.Dst = dst
			if p.b, err = mb.ah.seal.Append(p.b[:0], ip, seq, &ad, len(mb.cfg.UnicastPeers) > 0); err != nil {
				p.b = nil
			}
		} else if p.key != key || p.b == nil {
			ad := packet.Advert{Version: key.version, VRID: key.vrid, Priority: prio, Interval: key.interval, Addrs: recv.vips}
			if recv.auth.Type == AuthPass {
				ad.AuthType, ad.AuthData = packet.AuthPass, recv.auth.Password
			}
			if p.b, err = ad.Append(p.b[:0], src, dst); err != nil {
				p.b = nil
			} else {
				p.key = key
			}
		}
		if err == nil {
			err = mb.conn.WritePacket(p.b, dst)
		}
		if err != nil {
			mb.stats.sendErrors.Add(1)
			mb.log.Warn("sending advert failed", "peer", dst, "err", err)
			continue
		}
		mb.stats.advertsSent.Add(1)
	}
}

// preparedAdvert is an advert built for one destination, and what it was
// built from.
type preparedAdvert struct {
	key advertKey
	b   []byte
}

type advertKey struct {
	prio, vrid uint8
	version    int
	src, dst   netip.Addr
	recv       *receiver // the VIP list; replaced on reload
	interval   time.Duration
}

// wantMaster starts the takeover: the hook first, then every member.
func (g *Group) wantMaster() {
	if g.taking {
		return // already under way
	}
	g.taking, g.takeoverAt = true, g.now()
	if g.hooks == nil {
		g.dispatchAll(Event{Kind: EvGoMaster})
		return
	}
	ctx, cancel := context.WithCancel(g.ctx)
	g.hookCancel = cancel
	g.hookID++
	id := g.hookID
	g.log.Info("taking over: preparing the node before the virtual IPs move")
	g.hooksWG.Add(1)
	go func() {
		defer g.hooksWG.Done()
		err := g.hooks.BeforeMaster(ctx, g.name)
		select {
		case g.hookDone <- hookResult{id, err}:
		case <-g.ctx.Done():
		}
	}()
}

func (g *Group) hookFinished(r hookResult) {
	if g.hookCancel == nil || r.id != g.hookID {
		return // aborted meanwhile
	}
	g.hookCancel()
	g.hookCancel = nil
	if r.err != nil {
		g.log.Error("preparing the takeover failed; taking over anyway", "err", r.err)
	}
	g.dispatchAll(Event{Kind: EvGoMaster})
}

// abortTakeover cancels a pending takeover: member i heard a better master.
func (g *Group) abortTakeover(i int) {
	g.taking = false
	if g.hookCancel != nil {
		g.hookCancel()
		g.hookCancel = nil
		g.log.Info("takeover aborted: a better master appeared", "instance", g.members[i].cfg.Name)
	}
	g.dispatchOthers(i, Event{Kind: EvGoBackup})
}

// applyTracker records a tracker's new state and moves the members.
func (g *Group) applyTracker(u trackUpdate) {
	changed := false
	for i, mb := range g.members {
		if u.index != 0 && u.name == linkTracker(mb.cfg.Interface) && u.index != mb.ifindex {
			mb.ifindex = u.index
			if mb.bound == 0 { // not known when it was opened: this one
				mb.bound = u.index
			}
			if mb.stale() {
				mb.log.Warn("VRRP interface created again: reopening the instance on it",
					"ifindex", u.index, "was", mb.bound)
				changed = true
				g.rebind(i)
			}
		}
		for _, t := range mb.trackers {
			if t.name == u.name && (t.up != u.up || t.value != u.value) {
				t.up, t.value, changed = u.up, u.value, true
				if t.file {
					mb.log.Info("tracker changed", "tracker", u.name, "value", u.value)
				} else {
					mb.log.Info("tracker changed", "tracker", u.name, "up", u.up)
				}
			}
		}
	}
	if changed {
		g.reevaluate()
	}
}

// reevaluate applies trackers and demotion to priorities and faults.
func (g *Group) reevaluate() {
	fault := false
	for i, mb := range g.members {
		prio, f := mb.effective(g.demote)
		fault = fault || f
		if prio != mb.m.EffPriority && mb.m.State != Init {
			g.dispatch(i, Event{Kind: EvPriority, Priority: prio})
		} else if mb.m.State == Init {
			mb.m.EffPriority = prio
		}
	}
	if fault != g.faulted {
		g.faulted = fault
		if fault {
			g.dispatchAll(Event{Kind: EvFault})
		} else {
			g.dispatchAll(Event{Kind: EvFaultCleared})
		}
	}
}

// aggregate derives the group's state from its members' and reports a
// change.
func (g *Group) aggregate() {
	st := Backup
	masters, inits := 0, 0
	for _, mb := range g.members {
		switch mb.m.State {
		case Fault:
			st = Fault
		case Master:
			masters++
		case Init:
			inits++
		}
	}
	switch {
	case st == Fault:
	case masters == len(g.members):
		st = Master
	case inits == len(g.members):
		st = Init
	}
	if st != Backup {
		g.taking = false // the takeover is over, one way or the other
	}
	if len(g.moves) > 0 {
		moves := g.moves
		g.moves = nil // the callee may keep them
		// A lone instance's group has no hooks: no Transitioned follows.
		g.instHooks.InstancesTransitioned(moves, st != g.state && g.hooks != nil)
	}
	if st != g.state {
		from := g.state
		g.state, g.since = st, g.now()
		if !g.implicit {
			g.log.Info("group transition", "from", from, "to", st, "reason", g.reason)
		}
		if g.hooks != nil {
			g.hooks.Transitioned(g.name, from, st, g.reason)
		}
	}
	g.publishStatus()
}

func addrOrNone(a netip.Addr) string {
	if !a.IsValid() {
		return "none"
	}
	return a.String()
}
