package ctsync_test

// Two multiprimary engines in one process, over package sim's tables and
// network, on testing/synctest's fake clock: the rules of multiprimary.go
// as the nodes live them (a dead node's flows adopted by the node its
// traffic moves to, idle ones left to expire, a rejoining node given them
// back).

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ctha/ctha/ctsync"
	"github.com/ctha/ctha/ctsync/auth"
	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/internal/sim"
)

type mpNode struct {
	name  string
	addr  netip.Addr
	peers []netip.Addr
	dir   string
	table *sim.Table
	host  *sim.Host
	eng   *ctsync.Engine
	stop  context.CancelFunc
	wg    sync.WaitGroup
}

func (n *mpNode) start(t *testing.T, nw *sim.Net, key auth.Key) {
	t.Helper()
	c := ctsync.Config{Topology: ctsync.Multiprimary, NodeName: n.name, Key: key, StartupSyncTimeout: 30 * time.Second,
		Links: []ctsync.Link{{Name: "sync0", Interface: "sync", Local: n.addr, Peers: n.peers, Port: 3780}}}
	eng, err := ctsync.New(c, ctsync.Options{Log: slog.New(slog.DiscardHandler), StateDir: n.dir,
		Kernel: n.table, Listen: nw.Listener(n.host), Host: n.host, RuntimeTimers: true})
	if err != nil {
		t.Fatalf("%s: %v", n.name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.eng, n.stop = eng, cancel
	n.wg.Go(func() { eng.Run(ctx) })
}

func (n *mpNode) halt() {
	n.stop()
	n.wg.Wait()
	n.eng = nil
}

// newMPNode returns node fw<id> of a multiprimary cluster, with sync
// address 10.255.0.<id>, and its peers.
func newMPNode(t testing.TB, id int, peers ...int) *mpNode {
	n := &mpNode{name: fmt.Sprintf("fw%d", id), addr: netip.AddrFrom4([4]byte{10, 255, 0, byte(id)}),
		dir: t.TempDir(), table: sim.NewTable(), host: sim.NewHost("sync")}
	for _, p := range peers {
		n.peers = append(n.peers, netip.AddrFrom4([4]byte{10, 255, 0, byte(p)}))
	}
	return n
}

func mpFlow(proto uint8, port uint16, timeout uint32) ct.Flow {
	o := ct.NewTuple(proto, netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("203.0.113.10"), port, 443)
	f := ct.Flow{Orig: o, Reply: o.Reverse(), Status: ct.StatusConfirmed | ct.StatusSeenReply | ct.StatusAssured,
		Timeout: timeout}
	if proto == ct.ProtoTCP {
		f.TCP.State = ct.TCPEstablished
	}
	return f
}

// TestMultiprimaryPair: each node's flows reach the other's kernel; a
// flow's newer state from either node counts. When fw1 dies, fw2 adopts
// the flows whose traffic moves to it, keeps them alive by that traffic,
// and lets the dead node's idle ones expire by their own timeouts; fw1,
// back with an empty table, gets the adopted flows and the idle
// long-lived ones in fw2's copy.
func TestMultiprimaryPair(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := sim.NewNet(1)
		var key auth.Key
		key[0] = 7
		a, b := newMPNode(t, 1, 2), newMPNode(t, 2, 1)
		a.start(t, nw, key)
		b.start(t, nw, key)
		defer func() {
			for _, n := range []*mpNode{a, b} {
				if n.eng != nil {
					n.halt()
				}
			}
		}()
		waitUntil(t, "both peers up", time.Minute, func() bool { return a.eng.Status().PeerUp && b.eng.Status().PeerUp })

		tcpA := mpFlow(ct.ProtoTCP, 1001, 432000) // fw1's, moves to fw2 when fw1 dies
		udpA := mpFlow(ct.ProtoUDP, 1002, 120)    // fw1's, moves to fw2 when fw1 dies
		idleA := mpFlow(ct.ProtoUDP, 1003, 120)   // fw1's, nobody forwards it once fw1 is dead
		tcpB := mpFlow(ct.ProtoTCP, 2001, 432000) // fw2's own
		// fw1's, idle from fw1's death until it is back: an SSH session
		// whose client is away.
		sshA := mpFlow(ct.ProtoTCP, 1004, 432000)
		for _, f := range []ct.Flow{tcpA, udpA, idleA, sshA} {
			a.table.Add(f)
		}
		b.table.Add(tcpB)
		has := func(tb *sim.Table, fs ...ct.Flow) bool {
			for _, f := range fs {
				if _, ok := tb.Get(f.Key()); !ok {
					return false
				}
			}
			return true
		}
		waitUntil(t, "each node's flows in the other's kernel", time.Minute, func() bool {
			return has(b.table, tcpA, udpA, idleA) && has(a.table, tcpB)
		})
		waitUntil(t, "fw2 knows fw1 by name", time.Minute, func() bool {
			st := b.eng.Status()
			return len(st.Peers) == 1 && st.Peers[0].Node == "fw1"
		})
		st := b.eng.Status()
		if st.Topology != ctsync.Multiprimary || len(st.Peers) != 1 || st.Peers[0].Node != "fw1" || !st.Peers[0].Up {
			t.Fatalf("fw2's status: topology %v, peers %+v", st.Topology, st.Peers)
		}

		// Either node's newer state counts: fw2's FIN_WAIT of fw1's flow.
		fin := tcpA
		fin.TCP.State = ct.TCPFinWait
		b.table.Add(fin)
		waitUntil(t, "fw2's newer state in fw1's kernel", time.Minute, func() bool {
			e, _ := a.table.Get(tcpA.Key())
			return e.Flow.TCP.State == ct.TCPFinWait
		})
		a.table.Add(tcpA) // back to ESTABLISHED on fw1: behind fw2's, not written there
		time.Sleep(2 * time.Second)
		if e, _ := b.table.Get(tcpA.Key()); e.Flow.TCP.State != ct.TCPFinWait {
			t.Errorf("fw1's older state replaced fw2's FIN_WAIT: %d", e.Flow.TCP.State)
		}

		// Five minutes with fw1 forwarding its UDP flows: fw2 keeps them
		// alive (120 s timeouts) while fw1 holds them.
		for range 300 {
			a.table.Forward([]ct.Key{udpA.Key(), idleA.Key()})
			time.Sleep(time.Second)
		}
		if !has(b.table, udpA, idleA) {
			t.Fatal("fw2 let fw1's live UDP flows expire")
		}

		// fw1 dies; its traffic on udpA and tcpA moves to fw2.
		a.halt()
		nw.Isolate(a.addr, true)
		for range 180 {
			b.table.Forward([]ct.Key{udpA.Key(), tcpA.Key()})
			time.Sleep(time.Second)
		}
		if !has(b.table, udpA, tcpA, tcpB) {
			t.Fatal("fw2 lost flows it forwards after fw1's death")
		}
		if has(b.table, idleA) {
			t.Error("the dead node's idle flow is still in fw2's kernel after its timeout")
		}
		if n := b.eng.Stats(context.Background()).Adopted; n == 0 {
			t.Error("fw2 adopted none of the flows it forwards")
		}

		// fw1 comes back with an empty table: fw2's copy holds what fw2
		// adopted.
		a.table.Clear()
		nw.Isolate(a.addr, false)
		a.start(t, nw, key)
		waitUntil(t, "fw1's copy from fw2 complete", time.Minute, func() bool { return a.eng.Status().BulkComplete })
		waitUntil(t, "the adopted flows in fw1's kernel", time.Minute, func() bool { return has(a.table, udpA, tcpA, tcpB, sshA) })
		time.Sleep(time.Minute) // fw1's empty copy has come and gone
		if !has(b.table, sshA) || !has(a.table, sshA) {
			t.Error("the dead node's idle long-lived flow was lost when it came back")
		}
		if has(a.table, idleA) {
			t.Error("the expired idle flow came back")
		}
	})
}

// TestMultiprimaryPartition: while the sync link is cut both nodes go on
// forwarding their own flows, creating and ending some; when it heals the
// nodes converge to equal tables. A flow both changed meanwhile ends in
// the state furthest on.
func TestMultiprimaryPartition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := sim.NewNet(2)
		var key auth.Key
		key[0] = 9
		a, b := newMPNode(t, 1, 2), newMPNode(t, 2, 1)
		a.start(t, nw, key)
		b.start(t, nw, key)
		defer a.halt()
		defer b.halt()
		waitUntil(t, "both peers up", time.Minute, func() bool { return a.eng.Status().PeerUp && b.eng.Status().PeerUp })

		shared := mpFlow(ct.ProtoTCP, 1, 432000) // fw1's, then changed on both sides
		ends := mpFlow(ct.ProtoTCP, 2, 432000)   // fw1's, ends during the cut
		a.table.Add(shared)
		a.table.Add(ends)
		for i := range 50 {
			a.table.Add(mpFlow(ct.ProtoTCP, uint16(100+i), 432000))
			b.table.Add(mpFlow(ct.ProtoTCP, uint16(200+i), 432000))
		}
		waitUntil(t, "equal tables before the cut", time.Minute, func() bool { return sameTables(a.table, b.table) })

		nw.SetBoth(a.addr, b.addr, sim.Cond{Cut: true})
		waitUntil(t, "the peer down on both sides", time.Minute, func() bool { return !a.eng.Status().PeerUp && !b.eng.Status().PeerUp })
		a.table.Remove(ends.Key())
		for i := range 50 {
			a.table.Add(mpFlow(ct.ProtoTCP, uint16(300+i), 432000))
			b.table.Add(mpFlow(ct.ProtoUDP, uint16(400+i), 120))
		}
		fin := shared
		fin.TCP.State = ct.TCPFinWait
		b.table.Add(fin) // the flow's FIN through fw2
		time.Sleep(30 * time.Second)

		nw.SetBoth(a.addr, b.addr, sim.Cond{})
		healed := time.Now()
		waitUntil(t, "equal tables after the cut healed", 2*time.Minute, func() bool { return sameTables(a.table, b.table) })
		t.Logf("multiprimary partition (sim): tables equal %v after the link healed, %d flows", time.Since(healed), a.table.Len())
		for _, tb := range []*sim.Table{a.table, b.table} {
			if e, _ := tb.Get(shared.Key()); e.Flow.TCP.State != ct.TCPFinWait {
				t.Errorf("the flow both changed: state %d, want FIN_WAIT", e.Flow.TCP.State)
			}
			if _, ok := tb.Get(ends.Key()); ok {
				t.Error("the flow that ended during the cut is back")
			}
		}
		if n := a.table.Len(); n != 1+50+50+50+50 {
			t.Errorf("%d flows, want %d", n, 201)
		}
	})
}

// sameTables reports whether two tables hold the same flows in the same
// states (timeouts aside).
func sameTables(a, b *sim.Table) bool {
	fa, fb := a.Flows(), b.Flows()
	if len(fa) != len(fb) {
		return false
	}
	for k, f := range fa {
		g, ok := fb[k]
		if !ok || f.TCP.State != g.TCP.State || f.Status != g.Status {
			return false
		}
	}
	return true
}

// TestMultiprimaryThreeNodes: three nodes, each forwarding flows of its
// own: every kernel holds every flow. One dies; the flows whose traffic
// moves to each survivor are adopted there and survive in both
// survivors; a second dies, and the last one forwards everything. The
// first comes back with an empty table and gets one copy from each live
// peer before its copies are complete.
func TestMultiprimaryThreeNodes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := sim.NewNet(3)
		var key auth.Key
		key[0] = 11
		nodes := []*mpNode{newMPNode(t, 1, 2, 3), newMPNode(t, 2, 1, 3), newMPNode(t, 3, 1, 2)}
		for _, n := range nodes {
			n.start(t, nw, key)
		}
		defer func() {
			for _, n := range nodes {
				if n.eng != nil {
					n.halt()
				}
			}
		}()
		waitUntil(t, "every peer up everywhere", time.Minute, func() bool {
			for _, n := range nodes {
				if st := n.eng.Status(); !st.PeerUp || len(st.Peers) != 2 {
					return false
				}
			}
			return true
		})
		// Each node's flows: TCP, and UDP with a 120 s timeout that only
		// traffic or a refresh keeps alive.
		own := make([][]ct.Flow, 3)
		for i, n := range nodes {
			for j := range 20 {
				proto, timeout := uint8(ct.ProtoTCP), uint32(432000)
				if j%2 == 1 {
					proto, timeout = ct.ProtoUDP, 120
				}
				f := mpFlow(proto, uint16(1000*(i+1)+j), timeout)
				n.table.Add(f)
				own[i] = append(own[i], f)
			}
		}
		all := slices.Concat(own...)
		holds := func(n *mpNode, fs []ct.Flow) bool {
			for _, f := range fs {
				if _, ok := n.table.Get(f.Key()); !ok {
					return false
				}
			}
			return true
		}
		waitUntil(t, "every flow in every kernel", time.Minute, func() bool {
			return holds(nodes[0], all) && holds(nodes[1], all) && holds(nodes[2], all)
		})
		keys := func(fs []ct.Flow) []ct.Key {
			var ks []ct.Key
			for _, f := range fs {
				ks = append(ks, f.Key())
			}
			return ks
		}
		// fw1 dies: half its flows move to fw2, half to fw3; fw2's and
		// fw3's own go on. Three minutes: longer than the UDP timeouts.
		nodes[0].halt()
		nw.Isolate(nodes[0].addr, true)
		toB, toC := own[0][:10], own[0][10:]
		for range 180 {
			nodes[1].table.Forward(keys(slices.Concat(own[1], toB)))
			nodes[2].table.Forward(keys(slices.Concat(own[2], toC)))
			time.Sleep(time.Second)
		}
		survivors := slices.Concat(own[1], own[2], own[0])
		for _, n := range nodes[1:] {
			if !holds(n, survivors) {
				t.Fatalf("%s lost flows after fw1's death", n.name)
			}
		}
		// fw2 dies too: fw3 forwards everything.
		nodes[1].halt()
		nw.Isolate(nodes[1].addr, true)
		for range 180 {
			nodes[2].table.Forward(keys(all))
			time.Sleep(time.Second)
		}
		if !holds(nodes[2], all) {
			t.Fatal("fw3 lost flows after fw2's death")
		}
		if st := nodes[2].eng.Status(); st.PeerUp || st.Peers[0].Up || st.Peers[1].Up {
			t.Errorf("fw3 sees peers up: %+v", st.Peers)
		}
		// fw2 back first (an empty table), then fw1: each gets one copy
		// from each live peer.
		for _, i := range []int{1, 0} {
			n := nodes[i]
			n.table.Clear()
			nw.Isolate(n.addr, false)
			n.start(t, nw, key)
			waitUntil(t, n.name+"'s copies complete", time.Minute, func() bool { return n.eng.Status().BulkComplete })
			st := n.eng.Status()
			for _, p := range st.Peers {
				if p.Up && !p.BulkComplete {
					t.Errorf("%s: copies complete, but not %s's: %+v", n.name, p.Node, p)
				}
			}
			waitUntil(t, "every flow in "+n.name+"'s kernel", time.Minute, func() bool { return holds(n, all) })
			s := n.eng.Stats(context.Background())
			t.Logf("%s rejoined: %d bulk copies received, %d flows", n.name, s.BulksReceived, n.table.Len())
		}
		if s := nodes[0].eng.Stats(context.Background()); s.BulksReceived != 2 {
			t.Errorf("fw1 received %d copies, want one from each of its two peers", s.BulksReceived)
		}
	})
}

func waitUntil(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(limit); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("after %v: %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSlowDumpOffLoop: a dump of the kernel table that takes seconds (a
// large table) runs off the loop: the peers never lose each other
// meanwhile; and a flow that ends while the dump runs is not brought
// back by it.
func TestSlowDumpOffLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := sim.NewNet(4)
		var key auth.Key
		key[0] = 13
		a, b := newMPNode(t, 1, 2), newMPNode(t, 2, 1)
		for i := range 2000 {
			a.table.Add(mpFlow(ct.ProtoTCP, uint16(10000+i), 432000))
		}
		a.start(t, nw, key)
		b.start(t, nw, key)
		defer a.halt()
		defer b.halt()
		waitUntil(t, "fw1's flows in fw2's kernel", 2*time.Minute, func() bool { return b.table.Len() == 2000 })
		a.table.DumpDelay = 2500 * time.Microsecond // 5 s a dump
		ends := mpFlow(ct.ProtoTCP, 10007, 432000)
		// Six minutes: six dumps of fw1's table.
		dumps := a.eng.Stats(context.Background()).Resyncs
		var began time.Time
		removed, gone := false, false
		for i := range 3600 {
			if n := a.eng.Stats(context.Background()).Resyncs; began.IsZero() && n > dumps {
				began = time.Now() // a dump has just begun
			}
			if !began.IsZero() && !removed && time.Since(began) >= time.Second {
				a.table.Remove(ends.Key()) // listed by the dump under way
				removed = true
			}
			_, held := b.table.Get(ends.Key())
			switch {
			case removed && !held:
				gone = true
			case gone && held:
				t.Fatalf("after %v: the flow that ended during a dump is back in fw2's kernel", time.Duration(i)*100*time.Millisecond)
			}
			if !a.eng.Status().PeerUp || !b.eng.Status().PeerUp {
				t.Fatalf("after %v: a peer looked gone while fw1 dumped its table", time.Duration(i)*100*time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !gone {
			t.Errorf("the flow that ended during a dump (removed %v) never left fw2's kernel", removed)
		}
		if n := a.eng.Stats(context.Background()).Resyncs - dumps; n < 5 {
			t.Errorf("fw1 made %d dumps in six minutes, want one a minute", n)
		}
	})
}

// TestCopiesFromEveryLivePeer: a node that starts holds its copies
// complete only once every live peer's copy is, also when one peer is
// heard long after the other's copy came; a peer never heard within
// firstDumpAlone is taken as dead.
func TestCopiesFromEveryLivePeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := sim.NewNet(5)
		var key auth.Key
		key[0] = 17
		nodes := []*mpNode{newMPNode(t, 1, 2, 3), newMPNode(t, 2, 1, 3), newMPNode(t, 3, 1, 2)}
		for i, n := range nodes[1:] {
			n.table.Add(mpFlow(ct.ProtoTCP, uint16(100+i), 432000))
			n.start(t, nw, key)
		}
		defer func() {
			for _, n := range nodes {
				if n.eng != nil {
					n.halt()
				}
			}
		}()
		peer := func(n *mpNode, i int) ctsync.PeerStatus {
			if st := n.eng.Status(); len(st.Peers) > i {
				return st.Peers[i]
			}
			return ctsync.PeerStatus{} // not published yet
		}
		waitUntil(t, "fw2 and fw3 up", time.Minute, func() bool { return peer(nodes[1], 1).Up })
		// fw3 is heard by fw1 a second and a half after fw2.
		nw.Set(nodes[2].addr, nodes[0].addr, sim.Cond{Delay: 1500 * time.Millisecond})
		a := nodes[0]
		a.start(t, nw, key)
		start := time.Now()
		waitUntil(t, "fw2's copy", time.Minute, func() bool { return peer(a, 0).BulkComplete })
		if st := a.eng.Status(); st.BulkComplete {
			t.Fatalf("after %v: copies complete with fw2's alone: %+v", time.Since(start), st.Peers)
		}
		waitUntil(t, "both copies", time.Minute, func() bool { return a.eng.Status().BulkComplete })
		if st := a.eng.Status(); !st.Peers[0].BulkComplete || !st.Peers[1].BulkComplete {
			t.Errorf("copies complete without both: %+v", st.Peers)
		}
		t.Logf("both copies after %v", time.Since(start))

		// fw3 dead: fw1, restarted, waits for it firstDumpAlone at most.
		nodes[2].halt()
		nw.Isolate(nodes[2].addr, true)
		a.halt()
		time.Sleep(2 * time.Second) // what fw3 had in flight (1.5 s) has arrived
		a.start(t, nw, key)
		start = time.Now()
		waitUntil(t, "fw2's copy, fw3 dead", time.Minute, func() bool { return a.eng.Status().BulkComplete })
		if d := time.Since(start); d < 3*time.Second || d > 5*time.Second {
			t.Errorf("copies complete after %v with a dead peer, want about firstDumpAlone (3 s)", d)
		}
	})
}

// TestDumpInSlices: a periodic dump larger than a slice of the loop
// (mergeSlice) is applied over several turns, and whole; between the
// dumps (one a minute), the mirror check keeps the peer's short-lived
// flows alive. After 150 s each node still holds every flow of its own
// (none taken for gone) and the peer's 30-s ones, which only the checks
// (every 10 s) refresh in time. The flows' ports are 16 bits wide, so
// 5000 of each node's: more than a slice of a merge (mergeSlice) and of
// the check's scan (checkScanSlice).
func TestDumpInSlices(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := sim.NewNet(4)
		var key auth.Key
		key[0] = 11
		a, b := newMPNode(t, 1, 2), newMPNode(t, 2, 1)
		a.start(t, nw, key)
		b.start(t, nw, key)
		defer a.halt()
		defer b.halt()
		waitUntil(t, "both peers up", time.Minute, func() bool { return a.eng.Status().PeerUp && b.eng.Status().PeerUp })
		var udp []ct.Key
		for i := range 5000 {
			a.table.Add(mpFlow(ct.ProtoTCP, uint16(1+i), 432000))
			f := mpFlow(ct.ProtoUDP, uint16(1+i), 30)
			f.Orig.Src[15]++ // another client
			f.Reply = f.Orig.Reverse()
			b.table.Add(f)
			udp = append(udp, f.Key())
		}
		waitUntil(t, "each node's flows in the other's kernel", time.Minute, func() bool {
			return a.table.Len() == 10000 && b.table.Len() == 10000
		})
		for range 150 {
			b.table.Forward(udp) // fw2's traffic keeps its UDP flows alive
			time.Sleep(time.Second)
		}
		if n := a.table.Len(); n != 10000 {
			t.Errorf("fw1 holds %d flows after 150 s, want 10000 (its 5000 and fw2's 5000 refreshed)", n)
		}
		if s := a.eng.Status(); s.Internal != 5000 || s.External != 5000 {
			t.Errorf("fw1's caches: %d own, %d of the peer; want 5000 and 5000", s.Internal, s.External)
		}
		st := a.eng.Stats(context.Background())
		if st.Resyncs < 2 || st.Resyncs > 4 {
			t.Errorf("%d dumps in 150 s, want one a minute", st.Resyncs)
		}
		if st.Refreshed < 3*5000 {
			t.Errorf("fw2's flows refreshed %d times in 150 s, want at least 3 times each", st.Refreshed)
		}
	})
}

// TestSetVIPs: a flow to an address of this node is its own and not
// replicated, until a reload makes that address a VIP (Engine.SetVIPs):
// then flows to it are the pair's, and the peer gets them.
func TestSetVIPs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := sim.NewNet(5)
		var key auth.Key
		key[0] = 12
		vip := netip.MustParseAddr("203.0.113.10") // mpFlow's server
		a, b := newMPNode(t, 1, 2), newMPNode(t, 2, 1)
		a.host.Addresses = []netip.Addr{vip}
		a.start(t, nw, key)
		b.start(t, nw, key)
		defer a.halt()
		defer b.halt()
		waitUntil(t, "both peers up", time.Minute, func() bool { return a.eng.Status().PeerUp && b.eng.Status().PeerUp })
		before := mpFlow(ct.ProtoTCP, 1, 432000)
		a.table.Add(before)
		time.Sleep(5 * time.Second)
		if _, ok := b.table.Get(before.Key()); ok {
			t.Fatal("a flow to fw1's own address was replicated")
		}
		if err := a.eng.SetVIPs(context.Background(), []netip.Addr{vip}); err != nil {
			t.Fatal(err)
		}
		after := mpFlow(ct.ProtoTCP, 2, 432000)
		a.table.Add(after)
		waitUntil(t, "the flow to the new VIP in fw2's kernel", time.Minute, func() bool {
			_, ok := b.table.Get(after.Key())
			return ok
		})
	})
}
