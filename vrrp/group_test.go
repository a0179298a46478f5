package vrrp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ctha/ctha/vrrp/packet"
)

// fakeConn records what an instance sends.
type fakeConn struct {
	src  netip.Addr
	sent []packet.Advert
}

func (f *fakeConn) ReadPacket([]byte) (PacketIn, error) { return PacketIn{}, net.ErrClosed }
func (f *fakeConn) Source() netip.Addr                  { return f.src }
func (f *fakeConn) Close() error                        { return nil }
func (f *fakeConn) WritePacket(b []byte, dst netip.Addr) error {
	ad, err := packet.Parse(b, f.src, dst, false)
	if err != nil {
		return err
	}
	f.sent = append(f.sent, ad)
	return nil
}

// lastPriority is the priority of the last advert sent, or -1.
func (f *fakeConn) lastPriority() int {
	if len(f.sent) == 0 {
		return -1
	}
	return int(f.sent[len(f.sent)-1].Priority)
}

// fakeVIPs records what is done to an instance's addresses.
type fakeVIPs struct {
	up                   bool
	ups, downs, announce int
	retired              []netip.Prefix // what Retire kept; nil until it ran
}

func (f *fakeVIPs) Up() (time.Time, error)               { f.up = true; f.ups++; return time.Now(), nil }
func (f *fakeVIPs) Down() error                          { f.up = false; f.downs++; return nil }
func (f *fakeVIPs) Announce() error                      { f.announce++; return nil }
func (f *fakeVIPs) Present() ([]netip.Prefix, error)     { return nil, errors.New("not a kernel") }
func (f *fakeVIPs) RemoveStale() ([]netip.Prefix, error) { return nil, nil }
func (f *fakeVIPs) Close() error                         { return nil }
func (f *fakeVIPs) Retire(next Instance) error           { f.retired = next.allVIPs(); return nil }

// fakeHooks blocks BeforeMaster until released or cancelled.
type fakeHooks struct {
	started     chan struct{}
	release     chan struct{}
	cancelled   chan struct{}
	transitions []State
}

func newFakeHooks() *fakeHooks {
	return &fakeHooks{started: make(chan struct{}, 4), release: make(chan struct{}), cancelled: make(chan struct{}, 4)}
}

func (h *fakeHooks) BeforeMaster(ctx context.Context, _ string) error {
	h.started <- struct{}{}
	select {
	case <-h.release:
		return nil
	case <-ctx.Done():
		h.cancelled <- struct{}{}
		return ctx.Err()
	}
}

func (h *fakeHooks) Transitioned(_ string, _, to State, _ Reason) {
	h.transitions = append(h.transitions, to)
}

type testGroup struct {
	*Group
	clock time.Time
	conns []*fakeConn
	vips  []*fakeVIPs
}

// newTestGroup makes a started group of instances "lan" and "wan" at
// priority prio, advert 1s, with no goroutine running: the test drives it.
func newTestGroup(t *testing.T, prio uint8, hooks Hooks) *testGroup {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	tg := &testGroup{clock: t0}
	g := &Group{
		name: "fw", log: discardLog, hooks: hooks, ctx: ctx,
		hookDone: make(chan hookResult, 4), state: Init,
	}
	g.now = func() time.Time { return tg.clock }
	for i, name := range []string{"lan", "wan"} {
		c := &fakeConn{src: netip.AddrFrom4([4]byte{10, 10, byte(i + 1), 2})}
		v := &fakeVIPs{}
		in := Instance{Name: name, VRID: uint8(51 + i), Priority: prio, Version: 3, Family: IPv4,
			AdvertInterval: time.Second, Preempt: true,
			VIPs: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 10, byte(i + 1), 1}), 24)}}
		mb := &member{name: in.Name, cfg: in, conn: c, vips: v, stats: &counters{}, log: discardLog,
			m:        Machine{Params: Params{Version: 3, Priority: prio, AdvertInterval: time.Second, Preempt: true, Primary: c.src}},
			trackers: []*tracked{{name: linkTracker(name), up: true}}}
		mb.recv.Store(&receiver{vips: []netip.Addr{in.VIPs[0].Addr()}})
		g.members = append(g.members, mb)
		tg.conns, tg.vips = append(tg.conns, c), append(tg.vips, v)
	}
	tg.Group = g
	g.dispatchAll(Event{Kind: EvStartup})
	g.drain()
	return tg
}

func (tg *testGroup) at(d time.Duration) { tg.clock = t0.Add(d) }

func (tg *testGroup) advert(member int, from netip.Addr, prio uint8) {
	tg.dispatch(member, Event{Kind: EvAdvert, From: from, Priority: prio, Interval: time.Second})
	tg.drain()
}

func (tg *testGroup) timer() {
	tg.dispatchAll(Event{Kind: EvTimer})
	tg.drain()
}

func (tg *testGroup) states() [2]State {
	return [2]State{tg.members[0].m.State, tg.members[1].m.State}
}

func TestGroupMovesTogether(t *testing.T) {
	tg := newTestGroup(t, 100, nil)
	// Only lan hears a master; wan's Master_Down fires first and takes lan along.
	tg.at(2 * time.Second)
	tg.advert(0, peer, 150)
	tg.at(3700 * time.Millisecond)
	tg.timer()
	if got := tg.states(); got != [2]State{Master, Master} || tg.state != Master {
		t.Fatalf("states %v, group %v; want both MASTER", got, tg.state)
	}
	// The group's reason is the move that led it, not a follower's.
	if tg.reason != ReasonMasterDown {
		t.Errorf("group reason %v, want %v", tg.reason, ReasonMasterDown)
	}
	for i, v := range tg.vips {
		if !v.up || tg.conns[i].lastPriority() != 100 {
			t.Errorf("member %d: VIPs up %v, last advert priority %d", i, v.up, tg.conns[i].lastPriority())
		}
	}
	// A better master on wan sends the whole group back.
	tg.at(4 * time.Second)
	tg.advert(1, netip.MustParseAddr("10.10.2.3"), 200)
	if got := tg.states(); got != [2]State{Backup, Backup} || tg.state != Backup {
		t.Fatalf("states %v, group %v; want both BACKUP", got, tg.state)
	}
	for i, v := range tg.vips {
		if v.up {
			t.Errorf("member %d kept its VIPs", i)
		}
	}
}

// TestGroupReason: the group's transition carries the reason of the
// member's move that led it, whichever member that was, never the
// followers' "group" (notify commands get it as CTHA_REASON).
func TestGroupReason(t *testing.T) {
	for leader := range 2 {
		tg := newTestGroup(t, 100, nil)
		tg.at(2 * time.Second)
		tg.advert(1-leader, peer, 150) // the other member hears a master: the leader's Master_Down fires first
		tg.at(3700 * time.Millisecond)
		tg.timer()
		if tg.state != Master || tg.reason != ReasonMasterDown {
			t.Errorf("leader %d: group %v, reason %v; want MASTER, %v", leader, tg.state, tg.reason, ReasonMasterDown)
		}
	}
}

func TestGroupFault(t *testing.T) {
	tg := newTestGroup(t, 100, nil)
	tg.at(4 * time.Second)
	tg.timer()
	if tg.state != Master {
		t.Fatalf("setup: group %v", tg.state)
	}
	tg.applyTracker(trackUpdate{name: linkTracker("wan"), up: false})
	tg.drain()
	if got := tg.states(); got != [2]State{Fault, Fault} || tg.state != Fault {
		t.Fatalf("states %v, group %v; want both FAULT", got, tg.state)
	}
	for i, c := range tg.conns {
		if c.lastPriority() != 0 || tg.vips[i].up {
			t.Errorf("member %d: last advert priority %d (want 0), VIPs up %v", i, c.lastPriority(), tg.vips[i].up)
		}
	}
	tg.applyTracker(trackUpdate{name: linkTracker("wan"), up: true})
	tg.drain()
	if got := tg.states(); got != [2]State{Backup, Backup} {
		t.Fatalf("after recovery states %v, want both BACKUP", got)
	}
}

func TestGroupTrackerWeights(t *testing.T) {
	tg := newTestGroup(t, 150, nil)
	tg.members[0].trackers = append(tg.members[0].trackers, &tracked{name: scriptTracker("up"), weight: -60, up: true})
	tg.members[1].trackers = append(tg.members[1].trackers, &tracked{name: scriptTracker("bonus"), weight: 20, up: false})
	tg.at(4 * time.Second)
	tg.timer()
	tg.applyTracker(trackUpdate{name: scriptTracker("up"), up: false})
	tg.applyTracker(trackUpdate{name: scriptTracker("bonus"), up: true})
	tg.drain()
	if got := tg.members[0].m.EffPriority; got != 90 {
		t.Errorf("lan effective priority %d, want 150-60 = 90", got)
	}
	if got := tg.members[1].m.EffPriority; got != 170 {
		t.Errorf("wan effective priority %d, want 150+20 = 170", got)
	}
	if got := tg.conns[0].lastPriority(); got != 90 {
		t.Errorf("a master whose priority fell must advertise it at once; last advert %d", got)
	}
	if tg.state != Master {
		t.Errorf("a weight is not a fault: group %v", tg.state)
	}
}

func TestTrackerClamp(t *testing.T) {
	mb := &member{cfg: Instance{Priority: 200}, trackers: []*tracked{{weight: 100, up: true}}}
	if p, _ := mb.effective(0); p != 254 {
		t.Errorf("priority %d, want clamped to 254", p)
	}
	mb = &member{cfg: Instance{Priority: 50}, trackers: []*tracked{{weight: -100, up: false}}}
	if p, _ := mb.effective(0); p != 1 {
		t.Errorf("priority %d, want clamped to 1", p)
	}
	mb = &member{cfg: Instance{Priority: 255}}
	if p, f := mb.effective(0); p != 255 || f {
		t.Errorf("owner priority %d fault %v, want 255 and no fault", p, f)
	}
}

// TestGroupHookBeforeVIPs: the takeover hook runs before any advert or
// VIP, adverts are processed while it runs, and a better master aborts it.
func TestGroupHookBeforeVIPs(t *testing.T) {
	h := newFakeHooks()
	tg := newTestGroup(t, 100, h)
	tg.at(4 * time.Second)
	tg.timer() // Master_Down on both
	<-h.started
	for i := range tg.members {
		if tg.vips[i].up || len(tg.conns[i].sent) != 0 {
			t.Fatalf("member %d moved before the hook finished: VIPs %v, %d adverts", i, tg.vips[i].up, len(tg.conns[i].sent))
		}
	}
	// The hook completes: now the adverts, then the VIPs.
	close(h.release)
	tg.hookFinished(<-tg.hookDone)
	tg.drain()
	if tg.state != Master || !tg.vips[0].up || !tg.vips[1].up {
		t.Fatalf("after the hook: group %v, VIPs %v %v", tg.state, tg.vips[0].up, tg.vips[1].up)
	}
	if got := h.transitions; len(got) == 0 || got[len(got)-1] != Master {
		t.Errorf("Transitioned calls %v, want the last to be MASTER", got)
	}
}

func TestGroupHookAbortedByBetterMaster(t *testing.T) {
	h := newFakeHooks()
	tg := newTestGroup(t, 100, h)
	tg.at(4 * time.Second)
	tg.timer()
	<-h.started
	tg.at(4100 * time.Millisecond)
	tg.advert(0, peer, 150) // a better master on lan while the hook runs
	select {
	case <-h.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the hook was not cancelled")
	}
	res := <-tg.hookDone
	if !errors.Is(res.err, context.Canceled) {
		t.Errorf("hook result %v, want context.Canceled", res.err)
	}
	tg.hookFinished(res) // a late result must not move the group
	tg.drain()
	if got := tg.states(); got != [2]State{Backup, Backup} || tg.vips[0].ups+tg.vips[1].ups != 0 {
		t.Fatalf("states %v, VIP ups %d/%d; want BACKUP and no VIPs", got, tg.vips[0].ups, tg.vips[1].ups)
	}
	// The aborted members re-armed Master_Down: a later takeover works.
	tg.at(9 * time.Second)
	tg.timer()
	<-h.started
}

// TestGroupRebind: the lan interface is created again with a new index
// while master. The group is FAULT until lan is reopened on it; a reopen
// that fails (no address on the new interface yet) is tried again, and
// the group leaves FAULT only once it succeeded.
func TestGroupRebind(t *testing.T) {
	tg := newTestGroup(t, 100, nil)
	for i, mb := range tg.members {
		mb.cfg.Interface, mb.bound, mb.ifindex = mb.name, 2+i, 2+i
	}
	tg.at(4 * time.Second)
	tg.timer()
	if tg.state != Master {
		t.Fatalf("setup: group %v", tg.state)
	}
	notYet := errors.New("no IPv4 address on lan")
	var reopened *fakeConn
	tg.reopen = func(in Instance, _ *slog.Logger) (Conn, VIPs, error) {
		if notYet != nil {
			return nil, nil, notYet
		}
		reopened = &fakeConn{src: netip.MustParseAddr("10.10.1.9")}
		return reopened, &fakeVIPs{}, nil
	}
	var readers []Conn
	tg.startReader = func(_ int, c Conn) { readers = append(readers, c) }

	// The link watch reports lan with its new index (up at once).
	tg.applyTracker(trackUpdate{name: linkTracker("lan"), up: true, index: 7})
	tg.drain()
	if got := tg.states(); got != [2]State{Fault, Fault} || !tg.members[0].stale() {
		t.Fatalf("lan not reopened: states %v, want both FAULT", got)
	}
	if tg.vips[0].up || tg.vips[1].up {
		t.Error("VIPs still up while FAULT")
	}
	tg.retryStale()
	tg.drain()
	if got := tg.states(); got != [2]State{Fault, Fault} {
		t.Fatalf("a failed reopen let the group leave FAULT: %v", got)
	}

	notYet = nil
	tg.retryStale()
	tg.drain()
	if got := tg.states(); got != [2]State{Backup, Backup} {
		t.Fatalf("after the reopen states %v, want both BACKUP", got)
	}
	lan := tg.members[0]
	if lan.conn != reopened || lan.bound != 7 || lan.recv.Load().ifindex != 7 || lan.m.Primary != reopened.src {
		t.Errorf("lan not moved to its new interface: bound %d, receiver ifindex %d, primary %v",
			lan.bound, lan.recv.Load().ifindex, lan.m.Primary)
	}
	if len(readers) != 1 || readers[0] != reopened {
		t.Errorf("readers started %v, want one on the new connection", readers)
	}
	if tg.members[1].bound != 3 {
		t.Error("wan was reopened though its interface did not change")
	}
}

// recordingHooks records the instances' moves and the group's
// transitions in the order they are told.
type recordingHooks struct {
	calls []string
}

func (h *recordingHooks) BeforeMaster(context.Context, string) error { return nil }
func (h *recordingHooks) Transitioned(_ string, _, to State, _ Reason) {
	h.calls = append(h.calls, "group "+to.String())
}
func (h *recordingHooks) InstancesTransitioned(moves []InstanceTransition, groupMoves bool) {
	for _, m := range moves {
		h.calls = append(h.calls, fmt.Sprintf("%s %v->%v %v prio %d group moves %t", m.Instance, m.From, m.To, m.Reason, m.Priority, groupMoves))
	}
}

// TestInstanceMoves: each step of a group tells the instances' moves, in
// order, with their effective priority after the move, and then the
// group's transition.
func TestInstanceMoves(t *testing.T) {
	h := &recordingHooks{}
	tg := newTestGroup(t, 100, h)
	tg.instHooks = h
	tg.at(4 * time.Second)
	tg.timer() // Master_Down on both
	tg.hookFinished(<-tg.hookDone)
	tg.drain()
	tg.at(5 * time.Second)
	tg.dispatch(0, Event{Kind: EvPriority, Priority: 90}) // not a move
	tg.drain()
	tg.advert(1, netip.MustParseAddr("10.10.2.3"), 200)
	want := []string{
		"group BACKUP", // at startup, before instHooks was set
		"lan BACKUP->MASTER master-down prio 100 group moves true",
		"wan BACKUP->MASTER master-down prio 100 group moves true",
		"group MASTER",
		"wan MASTER->BACKUP higher-priority prio 100 group moves true",
		"lan MASTER->BACKUP group prio 90 group moves true",
		"group BACKUP",
	}
	if diff := cmp.Diff(want, h.calls); diff != "" {
		t.Errorf("hooks told (-want +got):\n%s", diff)
	}
}

// TestLoneInstanceMoves: a lone instance's moves never say a group
// transition follows: its group has no hooks.
func TestLoneInstanceMoves(t *testing.T) {
	h := &recordingHooks{}
	tg := newTestGroup(t, 100, nil)
	tg.instHooks = h
	tg.at(4 * time.Second)
	tg.timer()
	want := []string{
		"lan BACKUP->MASTER master-down prio 100 group moves false",
		"wan BACKUP->MASTER master-down prio 100 group moves false",
	}
	if diff := cmp.Diff(want, h.calls); diff != "" {
		t.Errorf("hooks told (-want +got):\n%s", diff)
	}
}
