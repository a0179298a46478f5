package vrrp

import (
	"context"
	"errors"
	"fmt"
	"github.com/ctha/ctha/internal/linkwatch"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"
)

// Options are the seams and hooks of a Runner.
type Options struct {
	Log *slog.Logger
	// Hooks returns a sync group's hooks, or nil for none.
	Hooks func(group string) Hooks
	// InstanceHooks returns the hooks that hear the moves of a sync
	// group's instances, or of a lone instance (lone: group is the
	// instance's name); nil for none.
	InstanceHooks func(group string, lone bool) InstanceHooks
	// NewVIPs makes an instance's virtual-address manager (NewAddrVIPs
	// by default).
	NewVIPs func(in Instance, log *slog.Logger) (VIPs, error)
	// OnChange is called after a group or instance changed state; it must
	// not block.
	OnChange func()
	// OnVIPsRestored is called, on the group's goroutine, after virtual
	// IPs removed under a master by someone else were put back (vips:
	// those that were missing); it must not block.
	OnVIPsRestored func(instance string, vips []string)
	// DeferPreemption names the sync groups that start with preemption
	// deferred (until SetDeferred lifts it).
	DeferPreemption []string

	// The seams, for tests in one process.
	//
	// Dial opens an instance's VRRP connection (a raw socket on its
	// interface by default).
	Dial func(in Instance) (Conn, error)
	// Host is what the Runner watches of the kernel's links and
	// addresses (rtnetlink by default).
	Host linkwatch.Host
	// RuntimeTimers: the groups time their adverts with the Go runtime's
	// timers rather than a timerfd (up to a millisecond later; a fake
	// clock, such as testing/synctest's, needs them).
	RuntimeTimers bool
}

// Runner runs every VRRP instance of a configuration.
type Runner struct {
	groups  []*Group
	scripts []TrackScript
	links   []string // tracked interfaces
	log     *slog.Logger
	box     statusBox
	order   []string // instance names in configuration order
	wg      sync.WaitGroup
	conf    Config // as running; Reload replaces it
	opts    Options
	rt      *realtime
}

// New opens the sockets and virtual-address managers of every instance of
// c. Instances outside any sync group run as groups of one.
func New(c Config, opts Options) (*Runner, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Dial == nil {
		opts.Dial = dialInstance
	}
	if opts.Host == nil {
		opts.Host = linkwatch.Kernel
	}
	if opts.NewVIPs == nil {
		opts.NewVIPs = NewAddrVIPs
	}
	r := &Runner{
		scripts: c.TrackScripts,
		log:     opts.Log,
		conf:    c,
		opts:    opts,
		box:     statusBox{groups: map[string]GroupStatus{}, instances: map[string]InstanceStatus{}},
		rt:      newRealtime(c.RealtimePriority, opts.Log),
	}
	grouped := map[string]bool{}
	for _, sg := range c.SyncGroups {
		var ins []Instance
		for _, name := range sg.Instances {
			for _, in := range c.Instances {
				if in.Name == name {
					ins = append(ins, in)
				}
			}
			grouped[name] = true
		}
		if err := r.addGroup(sg.Name, false, ins, c, opts); err != nil {
			r.Close()
			return nil, err
		}
	}
	for _, in := range c.Instances {
		r.order = append(r.order, in.Name)
		if !grouped[in.Name] {
			if err := r.addGroup(in.Name, true, []Instance{in}, c, opts); err != nil {
				r.Close()
				return nil, err
			}
		}
	}
	r.initLinks()
	r.initFiles()
	r.initProcesses()
	return r, nil
}

func dialInstance(in Instance) (Conn, error) {
	ifi, err := net.InterfaceByName(in.Interface)
	if err != nil {
		return nil, fmt.Errorf("instance %s: interface %s: %w", in.Name, in.Interface, err)
	}
	return dialConn(ifi, in.Family == IPv6, len(in.UnicastPeers) == 0, in.Auth.Type == AuthAH)
}

func (r *Runner) addGroup(name string, implicit bool, ins []Instance, c Config, opts Options) error {
	g := &Group{
		name:          name,
		implicit:      implicit,
		log:           opts.Log.With("group", name),
		runtimeTimers: opts.RuntimeTimers,
		now:           time.Now,
		in:            make(chan inbound, 64),
		track:         make(chan trackUpdate, 16),
		addrs:         make(chan struct{}, 1),
		ctl:           make(chan func()),
		routeKick:     make(chan struct{}, 1),
		hookDone:      make(chan hookResult),
		doneCh:        make(chan struct{}),
		state:         Init,
		demotions:     map[string]int{},
		deferred:      slices.Contains(opts.DeferPreemption, name),
		onRestored:    opts.OnVIPsRestored,
	}
	if implicit {
		g.log = opts.Log
	}
	if opts.Hooks != nil && !implicit {
		g.hooks = opts.Hooks(name)
	}
	if opts.InstanceHooks != nil {
		g.instHooks = opts.InstanceHooks(name, implicit)
	}
	g.reopen = func(in Instance, log *slog.Logger) (Conn, VIPs, error) {
		cn, err := opts.Dial(in)
		if err != nil {
			return nil, nil, err
		}
		vips, err := opts.NewVIPs(in, log)
		if err != nil {
			cn.Close()
			return nil, nil, err
		}
		return cn, vips, nil
	}
	if !opts.RuntimeTimers {
		var err error
		if g.clock, err = newClock(g, r.rt); err != nil {
			return err
		}
	}
	// Readers started by a rebind are waited for too: Run waits for
	// r.wg only after every group's goroutine has ended. A socket the
	// timing thread polls needs none: it is told to look again.
	g.startReader = func(i int, cn Conn) {
		if _, ok := cn.(pollConn); ok && g.clock != nil {
			g.clock.poke()
			return
		}
		r.wg.Go(func() { r.read(g, i, cn) })
	}
	g.publish = func(gs GroupStatus, is []InstanceStatus) {
		if r.box.set(gs, g.implicit, is) && opts.OnChange != nil {
			opts.OnChange()
		}
	}
	r.groups = append(r.groups, g) // before errors, so Close releases what was made
	for _, in := range ins {
		log := g.log.With("instance", in.Name, "vrid", in.VRID, "iface", in.Interface)
		cn, err := opts.Dial(in)
		if err != nil {
			return err
		}
		mb := &member{name: in.Name, cfg: in, conn: cn, stats: &counters{}, log: log}
		if in.Auth.Type == AuthAH {
			mb.ah = newAHState(in.Auth.Password)
		}
		g.members = append(g.members, mb)
		if mb.vips, err = opts.NewVIPs(in, log); err != nil {
			return fmt.Errorf("instance %s: %w", in.Name, err)
		}
		mb.m = Machine{Params: Params{
			Version: in.Version, Priority: in.Priority, AdvertInterval: in.AdvertInterval,
			Preempt: in.Preempt, PreemptDelay: in.PreemptDelay, Primary: cn.Source(),
		}}
		mb.bound = r.ifindexOf(in.Interface)
		mb.recv.Store(&receiver{
			version: in.Version, vrid: in.VRID, interval: in.AdvertInterval,
			ifindex: mb.bound, own: cn.Source(), unicastPeers: in.UnicastPeers,
			skipChecksum: in.Family == IPv6, vips: vipAddrs(in.AdvertVIPs()),
			auth: in.Auth, ah: mb.ah,
		})
		mb.trackers = append(mb.trackers, &tracked{name: linkTracker(in.Interface), up: true})
		r.links = appendUnique(r.links, in.Interface)
		for _, t := range in.TrackInterface {
			mb.trackers = append(mb.trackers, &tracked{name: linkTracker(t.Name), weight: t.Weight, up: true})
			r.links = appendUnique(r.links, t.Name)
		}
		for _, name := range in.TrackScripts {
			for _, s := range c.TrackScripts {
				if s.Name == name {
					mb.trackers = append(mb.trackers, &tracked{name: scriptTracker(name), weight: s.Weight, up: true})
				}
			}
		}
		mb.trackers = append(mb.trackers, extraTrackers(in)...)
	}
	return nil
}

func (r *Runner) ifindexOf(name string) int {
	if l, err := r.opts.Host.Link(name); err == nil {
		return l.Index
	}
	return 0
}

func appendUnique(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

// Run runs the election until ctx is done, then resigns (priority-0
// adverts from masters), removes the virtual IPs and closes everything.
func (r *Runner) Run(ctx context.Context) {
	for _, g := range r.groups {
		for _, mb := range g.members {
			// Addresses left by a crashed run go before the election.
			removed, err := mb.vips.RemoveStale()
			if err != nil {
				mb.log.Warn("removing stale virtual IPs failed", "err", err)
			} else if len(removed) > 0 {
				mb.log.Warn("removed virtual IPs left by an earlier run", "vips", removed)
			}
		}
	}
	trackCtx, stopTrackers := context.WithCancel(ctx)
	defer stopTrackers()
	r.startTrackers(trackCtx)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.watchAddrs(trackCtx)
	}()
	r.wg.Go(func() { r.watchRouteChanges(trackCtx) })

	var groups sync.WaitGroup
	for _, g := range r.groups {
		for i, mb := range g.members {
			g.startReader(i, mb.conn)
		}
		groups.Add(1)
		go func() {
			defer groups.Done()
			g.run(ctx)
		}()
	}
	groups.Wait()
	stopTrackers()
	r.Close() // unblocks the readers
	r.wg.Wait()
}

// Close releases sockets and address managers. Run calls it; call it
// yourself only when Run was never called.
func (r *Runner) Close() error {
	var errs []error
	for _, g := range r.groups {
		if g.clock != nil { // closed already if Run started it
			g.clock.close()
		}
		for _, mb := range g.members {
			if mb.conn != nil {
				errs = append(errs, mb.conn.Close())
			}
			if mb.vips != nil {
				errs = append(errs, mb.vips.Close())
			}
		}
	}
	return errors.Join(errs...)
}

// maxPacket is the receive buffer's size: a VRRP packet is at most
// 16 + 255*16 bytes, far less with the IPv4 header.
const maxPacket = 4096

// read reads a member's socket that the timing thread does not (a fake's,
// or all of them with runtime timers) and hands valid adverts to the group.
func (r *Runner) read(g *Group, i int, conn Conn) {
	buf := make([]byte, maxPacket)
	for {
		p, err := conn.ReadPacket(buf)
		at := time.Now()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			g.members[i].log.Debug("vrrp read failed", "err", err)
			time.Sleep(10 * time.Millisecond) // a persistent error must not spin
			continue
		}
		in, ok := g.accept(i, p, at)
		if !ok {
			continue
		}
		select {
		case g.in <- in:
		case <-g.done():
			return
		}
	}
}

// accept runs the receive checks on a packet of member i, counts it and
// returns it as an advert for the group. It reads only what is safe
// without the group's lock (the receiver, the counters).
func (g *Group) accept(i int, p PacketIn, at time.Time) (inbound, bool) {
	mb := g.members[i]
	recv := mb.recv.Load()
	ad, drop, differs := recv.check(p)
	if drop != DropNone {
		mb.stats.drops[drop].Add(1)
		if drop == DropAuth || drop == DropSequence {
			mb.logAuthDrop(drop, p.Src, at)
		}
		return inbound{}, false
	}
	mb.stats.advertsReceived.Add(1)
	if differs {
		mb.stats.addrMismatch.Add(1)
		if s := fmt.Sprint(ad.Addrs); s != mb.mismatch.Load() {
			mb.mismatch.Store(s)
			mb.log.Warn("advert lists other virtual IPs than ours; check both configurations",
				"from", p.Src, "theirs", ad.Addrs, "ours", recv.vips)
		}
	}
	return inbound{member: i, ad: ad, src: p.Src, at: at}, true
}

// Realtime says what scheduling the timing threads run with.
func (r *Runner) Realtime() RealtimeStatus { return r.rt.Status() }

// Status returns the groups and instances in configuration order.
func (r *Runner) Status() ([]GroupStatus, []InstanceStatus) {
	r.box.mu.Lock()
	defer r.box.mu.Unlock()
	var gs []GroupStatus
	for _, g := range r.groups {
		if s, ok := r.box.groups[g.name]; ok {
			gs = append(gs, s)
		}
	}
	var is []InstanceStatus
	for _, name := range r.order {
		if s, ok := r.box.instances[name]; ok {
			is = append(is, s)
		}
	}
	return gs, is
}

// Stats returns every instance's counters in configuration order.
func (r *Runner) Stats() []InstanceStats {
	var out []InstanceStats
	for _, name := range r.order {
		for _, g := range r.groups {
			for _, mb := range g.members {
				if mb.name == name {
					s := mb.stats.snapshot()
					s.Instance = name
					if !g.implicit {
						s.Group = g.name
					}
					out = append(out, s)
				}
			}
		}
	}
	return out
}

func (r *Runner) broadcast(ctx context.Context, u trackUpdate) {
	for _, g := range r.groups {
		select {
		case g.track <- u:
		case <-ctx.Done():
			return
		case <-g.done():
		}
	}
}
