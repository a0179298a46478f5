package ctsync

import (
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
)

func tcpState(port uint16, state uint8) ct.Flow {
	f := testFlow(port)
	f.TCP.State, f.Timeout, f.Status = state, 432000, ct.StatusSeenReply|ct.StatusAssured
	return f
}

func udpFlow(port uint16, status uint32, timeout uint32) ct.Flow {
	f := testFlow(port)
	f.Orig.Proto, f.Reply.Proto = ct.ProtoUDP, ct.ProtoUDP
	f.Status, f.Timeout = status, timeout
	return f
}

// TestProgress: a TCP state orders by how far the connection went
// (SYN_SENT2 with SYN_SENT, FIN_WAIT with CLOSE_WAIT); otherwise the
// SEEN_REPLY and ASSURED bits, which are only ever set, decide.
func TestProgress(t *testing.T) {
	const seen, assured = ct.StatusSeenReply, ct.StatusAssured
	for _, tc := range []struct {
		name string
		a, b ct.Flow
		want int
	}{
		{"syn_sent to established", tcpState(1, ct.TCPSynSent), tcpState(1, ct.TCPEstablished), 1},
		{"established to syn_recv", tcpState(1, ct.TCPEstablished), tcpState(1, ct.TCPSynRecv), -1},
		{"established to fin_wait", tcpState(1, ct.TCPEstablished), tcpState(1, ct.TCPFinWait), 1},
		{"time_wait to close", tcpState(1, ct.TCPTimeWait), tcpState(1, ct.TCPClose), 1},
		{"close to established", tcpState(1, ct.TCPClose), tcpState(1, ct.TCPEstablished), -1},
		{"close to syn_sent: the tuple reopened", tcpState(1, ct.TCPClose), tcpState(1, ct.TCPSynSent), 1},
		{"time_wait to syn_sent: the tuple reopened", tcpState(1, ct.TCPTimeWait), tcpState(1, ct.TCPSynSent), 1},
		{"syn_sent to close: refused", tcpState(1, ct.TCPSynSent), tcpState(1, ct.TCPClose), 1},
		{"fin_wait to syn_sent: not a reopen", tcpState(1, ct.TCPFinWait), tcpState(1, ct.TCPSynSent), -1},
		{"fin_wait and close_wait", tcpState(1, ct.TCPFinWait), tcpState(1, ct.TCPCloseWait), 0},
		{"syn_sent and syn_sent2", tcpState(1, ct.TCPSynSent), tcpState(1, ct.TCPSynSent2), 0},
		{"same state", tcpState(1, ct.TCPEstablished), tcpState(1, ct.TCPEstablished), 0},
		{"udp reply seen", udpFlow(1, 0, 30), udpFlow(1, seen, 30), 1},
		{"udp assured to unreplied", udpFlow(1, seen|assured, 120), udpFlow(1, 0, 30), -1},
		{"udp same bits", udpFlow(1, seen, 30), udpFlow(1, seen, 29), 0},
		{"udp bits apart", udpFlow(1, seen, 30), udpFlow(1, assured, 30), 0},
	} {
		if got := progress(&tc.a, &tc.b); got != tc.want {
			t.Errorf("%s: progress = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestMultiprimaryMerge: a peer's update of a flow this node does not
// forward is mirrored; of one it forwards, written in place only when
// ahead (never a replacement), counted when behind; a peer's destroy
// deletes only a mirror.
func TestMultiprimaryMerge(t *testing.T) {
	e := &Engine{cfg: Config{Cache: Direct, Topology: Multiprimary}}
	now := time.Now().UnixNano()

	mirror := tcpState(1, ct.TCPEstablished)
	if op, ok := e.mpUpdate(&mirror, now, 1); !ok || op.op != kernel.Create {
		t.Errorf("a peer's new flow: %v %v, want a create", op.op, ok)
	}
	own := tcpState(2, ct.TCPEstablished)
	e.internal.put(&own)
	for _, tc := range []struct {
		name  string
		state uint8
		op    kernel.Op // 0: nothing written
		stale uint64
	}{
		{"same state", ct.TCPEstablished, 0, 0},
		{"behind", ct.TCPSynRecv, 0, 1},
		{"ahead", ct.TCPFinWait, kernel.Update, 1},
		{"behind the newer state", ct.TCPEstablished, 0, 2},
	} {
		f := tcpState(2, tc.state)
		op, ok := e.mpUpdate(&f, now, 1)
		if ok != (tc.op != 0) || ok && op.op != tc.op {
			t.Errorf("%s: write %v %v, want %v", tc.name, op.op, ok, tc.op)
		}
		if got := e.stats.staleUpdates.Load(); got != tc.stale {
			t.Errorf("%s: stale updates %d, want %d", tc.name, got, tc.stale)
		}
	}
	if f, _ := e.internal.get(own.Key()); f.TCP.State != ct.TCPFinWait {
		t.Errorf("own state after the peer's newer one: %d, want FIN_WAIT", f.TCP.State)
	}

	if op, ok := e.mpDestroy(mirror.Key(), 1); !ok || op.op != kernel.Delete {
		t.Errorf("the peer's destroy of a mirror: %v %v, want a delete", op.op, ok)
	}
	if _, ok := e.mpDestroy(own.Key(), 1); ok {
		t.Error("the peer's destroy of a flow this node forwards deleted it")
	}
	if e.external.has(own.Key()) || e.external.has(mirror.Key()) {
		t.Error("destroyed flows still in the external cache")
	}
	if _, ok := e.mpDestroy(mirror.Key(), 1); ok {
		t.Error("a second destroy wrote again")
	}
}

// TestMultiprimaryMergeThreeNodes: with two peers, a mirror is deleted
// once neither holds it; a state behind the other peer's is not written
// (their updates need not arrive in order); each peer's count follows.
func TestMultiprimaryMergeThreeNodes(t *testing.T) {
	e := &Engine{cfg: Config{Cache: Direct, Topology: Multiprimary}}
	now := time.Now().UnixNano()
	const b, c = 1, 2 // the peers' bits
	f := tcpState(1, ct.TCPEstablished)
	if _, ok := e.mpUpdate(&f, now, b); !ok {
		t.Fatal("the first peer's flow was not written")
	}
	fin := tcpState(1, ct.TCPFinWait)
	if op, ok := e.mpUpdate(&fin, now, c); !ok || op.op != kernel.Create {
		t.Errorf("the second peer's newer state: %v %v, want a create", op.op, ok)
	}
	if _, ok := e.mpUpdate(&f, now, b); ok || e.stats.staleUpdates.Load() != 1 {
		t.Errorf("the first peer's older state was written (stale updates %d)", e.stats.staleUpdates.Load())
	}
	if got, _ := e.external.get(f.Key()); got.TCP.State != ct.TCPFinWait {
		t.Errorf("the mirror's state went back to %d", got.TCP.State)
	}
	if e.external.held(b) != 1 || e.external.held(c) != 1 {
		t.Errorf("held by the peers: %d, %d; want 1, 1", e.external.held(b), e.external.held(c))
	}
	if _, ok := e.mpDestroy(f.Key(), b); ok {
		t.Error("one peer's destroy deleted a mirror the other still holds")
	}
	if e.external.held(b) != 0 || e.external.held(c) != 1 {
		t.Errorf("after the first destroy: held %d, %d; want 0, 1", e.external.held(b), e.external.held(c))
	}
	if op, ok := e.mpDestroy(f.Key(), c); !ok || op.op != kernel.Delete {
		t.Errorf("the last holder's destroy: %v %v, want a delete", op.op, ok)
	}
	if e.external.len() != 0 || e.external.held(c) != 0 {
		t.Errorf("after the last destroy: %d flows, held %d", e.external.len(), e.external.held(c))
	}
}

// TestMultiprimaryDumped: a mirror whose timeout in the kernel is longer
// than written (less the time since) was refreshed by this node's
// traffic: adopted. One that is not is written again while the peer is up
// and its timeout is short, never while the peer is down.
func TestMultiprimaryDumped(t *testing.T) {
	e := &Engine{cfg: Config{Cache: Direct, Topology: Multiprimary}}
	start := time.Unix(1_000_000, 0)
	peer := udpFlow(1, ct.StatusSeenReply|ct.StatusAssured, 120)
	e.external.put(&peer, start.UnixNano(), 1)
	long := tcpState(2, ct.TCPEstablished)
	e.external.put(&long, start.UnixNano(), 1)

	now := start.Add(10 * time.Second)
	at := func(f ct.Flow, timeout uint32) *ct.Flow { f.Timeout = timeout; return &f }
	for _, tc := range []struct {
		name                 string
		kernel               *ct.Flow
		peerUp               bool
		wantAdopt, wantWrite bool
	}{
		{"idle here, peer up", at(peer, 110), true, false, true},
		{"idle here, peer down", at(peer, 110), false, false, false},
		{"within the slack", at(peer, 110+adoptSlack), true, false, true},
		{"refreshed here", at(peer, 118), true, true, false},
		{"refreshed here, peer down", at(peer, 120), false, true, false},
		{"long timeout idle", at(long, 432000-10), true, false, false},
		{"long timeout refreshed", at(long, 432000), true, true, false},
	} {
		var up uint8
		if tc.peerUp {
			up = 1
		}
		adopted, again, _ := e.mpDumped(tc.kernel, now, up|4) // another peer is up, not a holder
		if adopted != tc.wantAdopt || again != tc.wantWrite {
			t.Errorf("%s: adopted %v, written again %v; want %v, %v", tc.name, adopted, again, tc.wantAdopt, tc.wantWrite)
		}
	}
	other := udpFlow(3, 0, 30)
	if adopted, again, _ := e.mpDumped(&other, now, 1); adopted || again {
		t.Error("a flow the peer does not hold was classified as a mirror")
	}
}

// TestNodeMessage: a probe's NODE message carries the node's name and the
// groups it is master of, behind the link probe; names are cut at
// maxNameLen; a truncated message is not taken.
func TestNodeMessage(t *testing.T) {
	long := strings.Repeat("x", 100)
	p := appendNode(appendProbe(nil, 1, true), "fw1", []string{"b", "a", long}, PortRange{20000, 29999})
	ni, ok := parseNode(p)
	if !ok || ni.name != "fw1" || !slices.Equal(ni.masterOf, []string{"a", "b", long[:maxNameLen]}) ||
		ni.snat != (PortRange{20000, 29999}) {
		t.Fatalf("parsed %+v %v", ni, ok)
	}
	// An older version's message ends after the groups: no range.
	old := p[:len(p)-4]
	old[len(appendProbe(nil, 1, true))+1] -= 4 // the body's length
	if ni, ok := parseNode(old); !ok || !ni.snat.IsZero() || ni.name != "fw1" {
		t.Errorf("without a port range: %+v %v", ni, ok)
	}
	if flags, ok := parseProbe(p); !ok || flags != probeHears {
		t.Errorf("the link probe before it: %x %v", flags, ok)
	}
	p = appendNode(appendProbe(nil, 1, true), "fw1", []string{"b", "a", long}, PortRange{})
	for n := len(p) - 5; n > len(appendProbe(nil, 1, true)); n-- {
		if _, ok := parseNode(p[:n]); ok {
			t.Fatalf("a NODE message cut at %d of %d bytes parsed", n, len(p))
		}
	}
	if _, ok := parseNode(appendProbe(nil, 0, false)); ok {
		t.Error("a probe without a NODE message gave one")
	}
}

// TestSplitGroups: a group this node is master of and a peer claims too
// is a split brain once both claims last splitGrace, and only while that
// peer is up.
func TestSplitGroups(t *testing.T) {
	b, c := &peer{bit: 1}, &peer{bit: 2}
	b.node.masterOf, c.node.masterOf = []string{"b"}, []string{"c"}
	e := &Engine{masterOf: map[string]bool{"a": true, "b": true, "c": true}, splitSince: map[string]time.Time{},
		peers: []*peer{b, c}}
	now := time.Unix(1000, 0)
	if got := e.splitGroups(now, 3); len(got) != 0 {
		t.Errorf("at once: %v", got)
	}
	if got := e.splitGroups(now.Add(splitGrace), 3); !slices.Equal(got, []string{"b", "c"}) {
		t.Errorf("after splitGrace: %v, want [b c]", got)
	}
	if got := e.splitGroups(now.Add(splitGrace+time.Second), 1); !slices.Equal(got, []string{"b"}) {
		t.Errorf("the second peer down: %v, want [b]", got)
	}
	if got := e.splitGroups(now.Add(splitGrace+2*time.Second), 3); !slices.Equal(got, []string{"b"}) {
		t.Errorf("the second peer back: its claim begins again: %v, want [b]", got)
	}
	delete(e.masterOf, "b")
	if got := e.splitGroups(now.Add(time.Hour), 0); len(got) != 0 || len(e.splitSince) != 0 {
		t.Errorf("no longer master, peers down: %v, since %v", got, e.splitSince)
	}
}

// TestPortRange: the SNAT port ranges' overlap, and a zero range's.
func TestPortRange(t *testing.T) {
	a := PortRange{20000, 29999}
	for _, tc := range []struct {
		o    PortRange
		want bool
	}{
		{PortRange{30000, 39999}, false},
		{PortRange{29999, 30000}, true},
		{PortRange{10000, 20000}, true},
		{PortRange{21000, 22000}, true},
		{PortRange{}, false},
	} {
		if got := a.Overlaps(tc.o); got != tc.want || tc.o.Overlaps(a) != tc.want {
			t.Errorf("%v and %v overlap: %v, want %v", a, tc.o, got, tc.want)
		}
	}
	if !a.Contains(20000) || !a.Contains(29999) || a.Contains(30000) || a.String() != "20000-29999" {
		t.Errorf("%v: contains or string wrong", a)
	}
}

// TestJittered: the intervals between dumps spread over reconcileEvery
// ± 20 %, so that nodes started together drift out of step.
func TestJittered(t *testing.T) {
	lo, hi := time.Duration(1<<62), time.Duration(0)
	for range 1000 {
		d := jittered(10 * time.Second)
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo < 8*time.Second || hi > 12*time.Second {
		t.Errorf("intervals from %v to %v, want within 8-12 s", lo, hi)
	}
	if lo > 8500*time.Millisecond || hi < 11500*time.Millisecond {
		t.Errorf("intervals from %v to %v: not spread over 8-12 s", lo, hi)
	}
}

// TestApplyCheck: a mirror check's answer is applied to the mirrors as a
// dump's would be (one refreshed by this node's traffic is adopted), but
// not to a mirror the peer changed after the check began, nor to a flow
// that became this node's own meanwhile; a check made stale by a dump applies
// nothing, and its last answer ends it.
func TestApplyCheck(t *testing.T) {
	e := &Engine{cfg: Config{Cache: Direct, Topology: Multiprimary}, log: slog.New(slog.DiscardHandler), flt: newFilter(Filter{})}
	start := time.Unix(1_000_000, 0)
	lookup := start.Add(10 * time.Second)
	mirror := func(port uint16, timeout uint32, written time.Time) ct.Flow {
		f := udpFlow(port, ct.StatusSeenReply|ct.StatusAssured, timeout)
		e.external.put(&f, written.UnixNano(), 1)
		f.Timeout = 120 // in the kernel at the lookup: refreshed by this node's traffic
		return f
	}
	idle, own := mirror(1, 120, start), mirror(3, 120, start)
	// The peer's newer state, written after the check began, has a
	// shorter timeout (say, a TCP flow that closed): the lookup's looks
	// refreshed.
	changed := mirror(2, 30, lookup.Add(-time.Second))
	ownNow := own
	ownNow.Mark = 7 // this node's own since the lookup, and changed
	e.internal.put(&ownNow)
	apply := func(stale bool, flows ...ct.Flow) {
		e.check.run = &checkRun{began: lookup.Add(-2 * time.Second), stale: stale}
		e.applyCheck(checkBatch{at: lookup, flows: flows, done: true})
		if e.check.run != nil {
			t.Error("the check's last answer did not end it")
		}
	}
	apply(true, idle)
	if e.internal.has(idle.Key()) {
		t.Error("a stale check's answer was applied")
	}
	apply(false, idle, changed, own)
	if !e.internal.has(idle.Key()) {
		t.Error("a mirror refreshed by this node's traffic was not adopted")
	}
	if e.internal.has(changed.Key()) {
		t.Error("a mirror the peer changed after the check began was adopted from the lookup's older state")
	}
	if f, _ := e.internal.get(own.Key()); f.Mark != 7 {
		t.Errorf("a flow of this node's own since the lookup was taken from the lookup (mark %d, want 7)", f.Mark)
	}
	if n := e.stats.adopted.Load(); n != 1 {
		t.Errorf("%d adopted, want 1", n)
	}
}
