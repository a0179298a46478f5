package ctsync_test

// Two engines with protocol = "conntrackd" in one process, over package
// sim's tables and network, on testing/synctest's fake clock: each one
// speaks conntrackd's FTFW (package ctdwire) to the other, as it would to
// a real conntrackd (integration's TestConntrackdProtocol runs one).

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ctha/ctha/ctsync"
	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/internal/sim"
)

type ctdNode struct {
	name       string
	addr, peer netip.Addr
	dir        string
	table      *sim.Table
	host       *sim.Host
	eng        *ctsync.Engine
	stop       context.CancelFunc
	wg         sync.WaitGroup
}

func newCtdNode(t *testing.T, id, peer byte) *ctdNode {
	return &ctdNode{name: "fw" + string('0'+id), addr: netip.AddrFrom4([4]byte{10, 255, 0, id}),
		peer: netip.AddrFrom4([4]byte{10, 255, 0, peer}), dir: t.TempDir(), table: sim.NewTable(), host: sim.NewHost("sync")}
}

func (n *ctdNode) start(t *testing.T, nw *sim.Net, role ctsync.Role) {
	t.Helper()
	// No key: conntrackd's protocol has none.
	c := ctsync.Config{Protocol: ctsync.ProtocolConntrackd, NodeName: n.name, StartupSyncTimeout: 30 * time.Second,
		Links: []ctsync.Link{{Name: "sync0", Interface: "sync", Local: n.addr, Peers: []netip.Addr{n.peer}, Port: 3780}}}
	eng, err := ctsync.New(c, ctsync.Options{Log: slog.New(slog.DiscardHandler), StateDir: n.dir,
		Kernel: n.table, Listen: nw.Listener(n.host), Host: n.host, RuntimeTimers: true})
	if err != nil {
		t.Fatalf("%s: %v", n.name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.eng, n.stop = eng, cancel
	n.wg.Go(func() { eng.Run(ctx) })
	if err := eng.SetRole(context.Background(), role); err != nil {
		t.Fatal(err)
	}
}

func (n *ctdNode) halt() {
	n.stop()
	n.wg.Wait()
	n.eng = nil
}

// TestConntrackdProtocolPair: fw1 (master) and fw2 (backup) replicate
// both ways with conntrackd's protocol: flows and their end reach the
// other's kernel (direct cache), each holds the other's complete copy
// once the peer has been quiet, a restarted fw2 gets fw1's whole table
// unasked and asks for fw1's (its HELLO), and `sync request` / `sync
// bulk` work.
func TestConntrackdProtocolPair(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := sim.NewNet(1)
		a, b := newCtdNode(t, 1, 2), newCtdNode(t, 2, 1)
		a.start(t, nw, ctsync.RoleMaster)
		b.start(t, nw, ctsync.RoleBackup)
		defer func() {
			for _, n := range []*ctdNode{a, b} {
				if n.eng != nil {
					n.halt()
				}
			}
		}()
		waitUntil(t, "both peers up", time.Minute, func() bool { return a.eng.Status().PeerUp && b.eng.Status().PeerUp })
		waitUntil(t, "both copies complete (quiet period)", time.Minute, func() bool {
			return a.eng.Status().BulkComplete && b.eng.Status().BulkComplete
		})

		fa1, fa2 := mpFlow(ct.ProtoTCP, 1001, 432000), mpFlow(ct.ProtoUDP, 1002, 120)
		fb := mpFlow(ct.ProtoTCP, 2001, 432000)
		a.table.Add(fa1)
		a.table.Add(fa2)
		b.table.Add(fb)
		has := func(tb *sim.Table, fs ...ct.Flow) bool {
			for _, f := range fs {
				if _, ok := tb.Get(f.Key()); !ok {
					return false
				}
			}
			return true
		}
		waitUntil(t, "each node's flows in the other's kernel", time.Minute, func() bool {
			return has(b.table, fa1, fa2) && has(a.table, fb)
		})
		st := b.eng.Status()
		if st.External != 2 || len(st.Peers) != 1 || st.Peers[0].Entries != 2 || !st.Peers[0].Up {
			t.Fatalf("fw2's status: external %d, peers %+v", st.External, st.Peers)
		}
		if e, _ := b.table.Get(fa1.Key()); e.Flow.TCP.State != ct.TCPEstablished {
			t.Errorf("fw1's flow in fw2's kernel: %v", e.Flow)
		}

		// A flow's end.
		a.table.Remove(fa2.Key())
		waitUntil(t, "fw1's ended flow gone from fw2's kernel", time.Minute, func() bool {
			return !has(b.table, fa2) && b.eng.Status().External == 1
		})

		// fw2 restarts with an empty table: fw1 sends its table unasked
		// (fw2 says HELLO), and fw2 asks for it (RESYNC) on first contact.
		b.halt()
		b.table = sim.NewTable()
		b.start(t, nw, ctsync.RoleBackup)
		waitUntil(t, "fw1's flow in the restarted fw2's kernel, its copy complete", time.Minute, func() bool {
			return has(b.table, fa1) && b.eng.Status().BulkComplete
		})
		if st := b.eng.Status(); st.External != 1 || st.Peers[0].BulkReceived != 1 {
			t.Errorf("restarted fw2: external %d, bulk received %d, want 1 and 1", st.External, st.Peers[0].BulkReceived)
		}
		// fw2 forgot fb (its table was emptied); fw1 still mirrors it until
		// it asks fw2 for a copy: the request's copy lacks it, and its
		// completion drops it.
		before := a.eng.Status().Peers[0].Copies
		if err := a.eng.Request(context.Background()); err != nil {
			t.Fatal(err)
		}
		if a.eng.Status().BulkComplete {
			t.Error("fw1's copy complete at once after its request")
		}
		waitUntil(t, "fw1's requested copy complete, without fw2's forgotten flow", time.Minute, func() bool {
			st := a.eng.Status()
			return st.BulkComplete && st.Peers[0].Copies > before && st.External == 0 && !has(a.table, fb)
		})

		// `sync bulk`: fw2 has a flow of its own again, sent with its table.
		fb2 := mpFlow(ct.ProtoUDP, 2002, 120)
		b.table.Add(fb2)
		waitUntil(t, "fw2's new flow at fw1", time.Minute, func() bool { return has(a.table, fb2) })
		sent := b.eng.Stats(context.Background()).BulksSent
		if err := b.eng.Bulk(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := b.eng.Stats(context.Background()).BulksSent; got != sent+1 {
			t.Errorf("bulks sent %d after sync bulk, want %d", got, sent+1)
		}
		if s := a.eng.Stats(context.Background()); s.Protocol.Delivered == 0 || s.DatagramsIn == 0 {
			t.Errorf("fw1's protocol counters: %+v", s.Protocol)
		}
	})
}

// TestConntrackdProtocolPeerSilent: a copy asked for while the peer is
// cut off does not complete on silence (which would drop every flow held
// of it): it is abandoned, and asked for again once the peer is back.
// fw2 is the master here, fw1 the backup that mirrors its flows.
func TestConntrackdProtocolPeerSilent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := sim.NewNet(1)
		a, b := newCtdNode(t, 1, 2), newCtdNode(t, 2, 1)
		a.start(t, nw, ctsync.RoleBackup)
		b.start(t, nw, ctsync.RoleMaster)
		defer a.halt()
		defer b.halt()
		fb := mpFlow(ct.ProtoTCP, 2001, 432000)
		b.table.Add(fb)
		waitUntil(t, "fw2's flow at fw1, its copy complete", time.Minute, func() bool {
			st := a.eng.Status()
			return st.PeerUp && st.BulkComplete && st.External == 1
		})

		nw.Isolate(b.addr, true)
		if err := a.eng.Request(context.Background()); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "fw2 down at fw1", time.Minute, func() bool { return !a.eng.Status().PeerUp })
		time.Sleep(10 * time.Second) // several quiet periods
		if st := a.eng.Status(); st.BulkComplete || st.External != 1 {
			t.Fatalf("peer cut off: bulk complete %v, external %d; want false, 1", st.BulkComplete, st.External)
		}
		if _, ok := a.table.Get(fb.Key()); !ok {
			t.Fatal("fw2's flow dropped from fw1's kernel while fw2 was cut off")
		}

		nw.Isolate(b.addr, false)
		waitUntil(t, "fw2's copy complete again once it is back", time.Minute, func() bool {
			st := a.eng.Status()
			return st.PeerUp && st.BulkComplete && st.External == 1
		})
	})
}
