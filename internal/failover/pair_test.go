package failover

// Two ctha nodes in one process: the real VRRP runners, sync engines and
// choreography, over the simulated world of package sim (a LAN, the sync
// network, two conntrack tables), on testing/synctest's fake clock.
// Every scenario checks the product's two promises: a node that takes the
// virtual IPs holds every flow the pair had at that moment, and once
// things settle exactly one node holds them.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync"
	"github.com/ctha/ctha/ctsync/auth"
	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/internal/sim"
	"github.com/ctha/ctha/vrrp"
)

const (
	simGroup  = "fw"
	simAdvert = 100 * time.Millisecond
	// simSettle is long enough for any takeover to be over: the
	// Master_Down interval (3 adverts and the skew) and then some.
	simSettle = 2 * time.Second
)

var simVIP = netip.MustParsePrefix("10.10.1.1/24")

// simPair is the two nodes and their world.
type simPair struct {
	t     *testing.T
	log   *slog.Logger
	seg   *sim.Segment
	net   *sim.Net
	addrs *sim.Addresses
	key   auth.Key
	nodes [2]*simNode

	mu    sync.Mutex
	flows map[ct.Key]bool // every flow the pair forwards now
	keys  []ct.Key        // flows' keys, in creation order
	// lastFwd is where and when each flow's packets last passed.
	lastFwd map[ct.Key]simForward
	nextID  uint16
	// takeovers records each node's VIPs going up, with what its table
	// lacked then of the pair's flows.
	takeovers []simTakeover
}

type simTakeover struct {
	node    string
	missing int
	// stale counts the flows whose entry would drop their next packet as
	// INVALID: one the node's own kernel made (a strict TCP window) that
	// has not seen the flow's packets since they went through the peer.
	stale int
}

type simForward struct {
	node string
	at   time.Time
}

// simOptions change a pair's configuration.
type simOptions struct {
	external      bool          // cache = "external"
	commitTimeout time.Duration // external: longest the VIPs wait for the commit
	notify        Notify
	exec          func(ctx context.Context, argv, env []string, timeout time.Duration) (string, error)
}

// simNode is one node: its configuration, its kernel (table, links) and,
// while it runs, its daemon.
type simNode struct {
	p        *simPair
	name     string
	idx      int
	prio     uint8
	lan      netip.Addr // VRRP source
	syncAddr netip.Addr
	stateDir string
	table    *sim.Table
	host     *sim.Host
	opts     simOptions

	// While running:
	eng    *ctsync.Handle // as cmd/ctha holds it: replaced on a reload
	runner *vrrp.Runner
	group  *Group
	stop   context.CancelFunc // stops the election and the choreography
	stopS  context.CancelFunc // stops the engine
	vrrpWG sync.WaitGroup
	syncWG sync.WaitGroup
}

// testWriter sends a log to the test's output (shown when it fails or
// with -v).
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

func newSimPair(t *testing.T, o simOptions) *simPair {
	var out io.Writer = io.Discard
	if testing.Verbose() || os.Getenv("CTHA_SIM_LOG") != "" {
		out = testWriter{t}
	}
	key, err := auth.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{7}, 64)))
	if err != nil {
		t.Fatal(err)
	}
	p := &simPair{
		t: t, log: slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelInfo})),
		seg: sim.NewSegment(), net: sim.NewNet(1), addrs: sim.NewAddresses(), key: key,
		flows: map[ct.Key]bool{}, lastFwd: map[ct.Key]simForward{},
	}
	p.addrs.OnUp = p.onUp
	for i := range p.nodes {
		n := &simNode{p: p, name: fmt.Sprintf("fw%d", i+1), idx: i, prio: uint8(150 - 50*i),
			lan:      netip.AddrFrom4([4]byte{10, 10, 1, byte(2 + i)}),
			syncAddr: netip.AddrFrom4([4]byte{10, 10, 3, byte(1 + i)}),
			stateDir: t.TempDir(), table: sim.NewTable(), opts: o}
		n.host = sim.NewHost("lan", "sync")
		n.host.Addresses = []netip.Addr{n.lan, n.syncAddr}
		n.host.OnDelete = func(iface string) {
			if iface == "lan" { // the VIPs' interface
				p.addrs.Drop(n.name)
			}
		}
		p.nodes[i] = n
	}
	return p
}

// onUp runs when a node adds the VIPs: what does its table lack of the
// pair's flows, or hold too stale to forward them?
func (p *simPair) onUp(node, _ string) {
	n := p.node(node)
	p.mu.Lock()
	defer p.mu.Unlock()
	tk := simTakeover{node: node}
	for _, k := range p.keys {
		e, ok := n.table.Get(k)
		last := p.lastFwd[k]
		switch {
		case !ok:
			tk.missing++
		case !e.Liberal && last.node != node && e.Seen.Before(last.at):
			tk.stale++
		}
	}
	p.takeovers = append(p.takeovers, tk)
}

// forward passes a packet of every flow through the node that holds the
// VIP, if exactly one does.
func (p *simPair) forward() {
	h := p.addrs.Holders(simVIP)
	if len(h) != 1 {
		return
	}
	n := p.node(h[0])
	p.mu.Lock()
	defer p.mu.Unlock()
	n.table.Forward(p.keys)
	now := time.Now()
	for _, k := range p.keys {
		p.lastFwd[k] = simForward{node: n.name, at: now}
	}
}

func (p *simPair) node(name string) *simNode {
	for _, n := range p.nodes {
		if n.name == name {
			return n
		}
	}
	panic("no node " + name)
}

// vrrpConfig and syncConfig are a node's configuration.
func (n *simNode) vrrpConfig() vrrp.Config {
	return vrrp.Config{
		Instances: []vrrp.Instance{{Name: "lan", Interface: "lan", VRID: 51, Priority: n.prio, Version: 3,
			Family: vrrp.IPv4, AdvertInterval: simAdvert, Preempt: true, VIPs: []netip.Prefix{simVIP}}},
		SyncGroups: []vrrp.SyncGroup{{Name: simGroup, Instances: []string{"lan"}, Conntrack: true}},
	}
}

func (n *simNode) syncConfig() ctsync.Config {
	c := ctsync.Config{Key: n.p.key, StartupSyncTimeout: 30 * time.Second,
		Links: []ctsync.Link{{Name: "sync0", Interface: "sync", Local: n.syncAddr,
			Peers: []netip.Addr{n.p.nodes[1-n.idx].syncAddr}, Port: 3780}}}
	if n.opts.external {
		c.Cache = ctsync.External
	}
	return c
}

// start runs the node's daemon, wired as cmd/ctha wires it.
func (n *simNode) start() {
	t := n.p.t
	t.Helper()
	log := n.p.log.With("node", n.name)
	eng, err := ctsync.NewHandle(n.syncConfig(), ctsync.Options{Log: log, StateDir: n.stateDir,
		VIPs: []netip.Addr{simVIP.Addr()}, Kernel: n.table, Listen: n.p.net.Listener(n.host), Host: n.host,
		RuntimeTimers: true})
	if err != nil {
		t.Fatalf("%s: %v", n.name, err)
	}
	fc := Config{Group: simGroup, Instances: []string{"lan"}, Notify: n.opts.notify,
		External: n.opts.external, CommitTimeout: n.opts.commitTimeout, PurgeDelay: time.Minute,
		StartupSyncTimeout: 30 * time.Second}
	if fc.CommitTimeout == 0 {
		fc.CommitTimeout = 15 * time.Second
	}
	g := NewConntrack(log, fc, eng)
	if n.opts.exec != nil {
		g.notes.exec = n.opts.exec
	}
	r, err := vrrp.New(n.vrrpConfig(), vrrp.Options{
		Log: log, Hooks: func(string) vrrp.Hooks { return g }, DeferPreemption: []string{simGroup},
		NewVIPs: n.p.addrs.Manager(n.name), Dial: n.p.seg.Dialer(n.host, map[string]netip.Addr{"lan": n.lan}),
		Host: n.host, RuntimeTimers: true,
	})
	if err != nil {
		t.Fatalf("%s: %v", n.name, err)
	}
	n.eng, n.group, n.runner = eng, g, r
	sctx, stopS := context.WithCancel(context.Background())
	vctx, stop := context.WithCancel(context.Background())
	n.stop, n.stopS = stop, stopS
	n.syncWG.Go(func() { eng.Run(sctx) })
	n.vrrpWG.Go(func() { g.Run(vctx, r) })
	n.vrrpWG.Go(func() { r.Run(vctx) })
}

// halt stops the daemon as SIGTERM does: a master drains and resigns.
func (n *simNode) halt() {
	n.group.DrainBeforeStop(n.runner)
	n.stop()
	n.vrrpWG.Wait()
	n.stopS()
	n.syncWG.Wait()
	n.eng, n.runner, n.group = nil, nil, nil
}

// crash kills the node: nothing it would still send leaves it (no
// priority-0 advert, no last sync message). Its kernel table stays, as
// after a process crash; clear it for a reboot.
func (n *simNode) crash() {
	n.p.seg.Cut(true, n.lan)
	n.p.net.Isolate(n.syncAddr, true)
	n.stop()
	n.vrrpWG.Wait()
	n.stopS()
	n.syncWG.Wait()
	n.eng, n.runner, n.group = nil, nil, nil
	n.p.seg.Cut(false, n.lan)
	n.p.net.Isolate(n.syncAddr, false)
}

// state is the node's group state (INIT when it is not running).
func (n *simNode) state() vrrp.State {
	if n.runner == nil {
		return vrrp.Init
	}
	s, _ := n.runner.GroupState(simGroup)
	return s
}

// traffic starts count new flows through the master's table (and forgets
// nothing: flows live until the test ends).
func (p *simPair) traffic(master *simNode, count int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range count {
		p.nextID++
		o := ct.NewTuple(ct.ProtoTCP, netip.AddrFrom4([4]byte{198, 51, 100, byte(p.nextID >> 8)}),
			netip.AddrFrom4([4]byte{203, 0, 113, 10}), 10000+p.nextID, 443)
		f := ct.Flow{Orig: o, Reply: o.Reverse(), Status: ct.StatusConfirmed | ct.StatusSeenReply | ct.StatusAssured,
			Timeout: 432000, TCP: ct.TCPInfo{State: ct.TCPEstablished}}
		master.table.Add(f)
		p.flows[f.Key()] = true
		p.keys = append(p.keys, f.Key())
		p.lastFwd[f.Key()] = simForward{node: master.name, at: time.Now()}
	}
}

// settle lets the pair run for d on the fake clock, with traffic.
func (p *simPair) settle(d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); {
		p.forward()
		time.Sleep(min(50*time.Millisecond, time.Until(end)))
	}
}

// waitFor runs the clock until cond holds, at most limit.
func (p *simPair) waitFor(what string, limit time.Duration, cond func() bool) {
	p.t.Helper()
	for end := time.Now().Add(limit); !cond(); {
		if time.Now().After(end) {
			p.t.Fatalf("after %v: %s", limit, what)
		}
		p.forward()
		time.Sleep(10 * time.Millisecond)
	}
}

// holders returns who holds the VIP.
func (p *simPair) holders() []string {
	h := p.addrs.Holders(simVIP)
	slices.Sort(h)
	return h
}

// checkOneHolder asserts that exactly node holds the VIP.
func (p *simPair) checkOneHolder(node string) {
	p.t.Helper()
	if h := p.holders(); !slices.Equal(h, []string{node}) {
		p.t.Fatalf("VIP holders %v, want only %s (states %v %v)", h, node, p.nodes[0].state(), p.nodes[1].state())
	}
}

// checkTakeovers asserts that every takeover so far found a complete
// table, and that there were want of them.
func (p *simPair) checkTakeovers(want ...string) {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	var got []string
	for _, tk := range p.takeovers {
		got = append(got, tk.node)
		if tk.missing > 0 {
			p.t.Errorf("%s took the VIPs lacking %d of the pair's %d flows", tk.node, tk.missing, len(p.flows))
		}
		if tk.stale > 0 {
			p.t.Errorf("%s took the VIPs with %d of the pair's %d flows in a stale entry of its own (their packets INVALID)", tk.node, tk.stale, len(p.flows))
		}
	}
	if !slices.Equal(got, want) {
		p.t.Errorf("takeovers %v, want %v", got, want)
	}
}

// checkRoles asserts that each running node's tables tell the peer the
// role its election is in (the bug of a node VRRP BACKUP whose engine
// still said MASTER).
func (p *simPair) checkRoles() {
	p.t.Helper()
	for _, n := range p.nodes {
		peer := p.nodes[1-n.idx]
		if n.eng == nil || peer.eng == nil {
			continue
		}
		want := ctsync.RoleBackup
		if n.state() == vrrp.Master {
			want = ctsync.RoleMaster
		}
		if got := peer.eng.Status().PeerRole; got != want {
			p.t.Errorf("%s is %v, but its engine tells %s %v", n.name, n.state(), peer.name, got)
		}
		if st := n.eng.Status(); st.SplitBrain {
			p.t.Errorf("%s reports a split brain", n.name)
		}
	}
}

// stopAll stops every running node.
func (p *simPair) stopAll() {
	for _, n := range p.nodes {
		if n.eng != nil {
			n.halt()
		}
	}
}
