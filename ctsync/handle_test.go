package ctsync_test

// A primary-backup pair of Handles in one process, over package sim's
// tables and network, on testing/synctest's fake clock: what a reload of
// conntrack_sync (Handle.Replace) does to the replication.

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ctha/ctha/ctsync"
	"github.com/ctha/ctha/ctsync/auth"
	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/internal/sim"
)

// deleteCounter is a sim table that counts the flows deleted through it.
type deleteCounter struct {
	*sim.Table
	deletes *atomic.Int64
}

func (k deleteCounter) Dial() (ctsync.KernelConn, error) {
	c, err := k.Table.Dial()
	return countingConn{c, k.deletes}, err
}

type countingConn struct {
	ctsync.KernelConn
	deletes *atomic.Int64
}

func (c countingConn) Write(ctx context.Context, op kernel.Op, flows []ct.Flow, o kernel.WriteOptions) (kernel.WriteResult, error) {
	if op == kernel.Delete {
		c.deletes.Add(int64(len(flows)))
	}
	return c.KernelConn.Write(ctx, op, flows, o)
}

type pbNode struct {
	mp      bool // multiprimary
	ext     bool // the external cache
	name    string
	addr    netip.Addr
	peer    netip.Addr
	table   *sim.Table
	deletes atomic.Int64
	h       *ctsync.Handle
	stop    context.CancelFunc
	wg      sync.WaitGroup
}

func (n *pbNode) config(key auth.Key) ctsync.Config {
	c := ctsync.Config{NodeName: n.name, Key: key, StartupSyncTimeout: 30 * time.Second,
		Links: []ctsync.Link{{Name: "sync0", Interface: "sync", Local: n.addr, Peers: []netip.Addr{n.peer}, Port: 3780}}}
	if n.mp {
		c.Topology = ctsync.Multiprimary
	}
	if n.ext {
		c.Cache = ctsync.External
	}
	return c
}

func startPB(t *testing.T, nw *sim.Net, id, peer int, key auth.Key) *pbNode {
	return startNode(t, nw, id, peer, key, false)
}

func startNode(t *testing.T, nw *sim.Net, id, peer int, key auth.Key, mp bool) *pbNode {
	return startNodeCache(t, nw, id, peer, key, mp, false)
}

func startNodeCache(t *testing.T, nw *sim.Net, id, peer int, key auth.Key, mp, ext bool) *pbNode {
	t.Helper()
	n := &pbNode{mp: mp, ext: ext, name: "fw" + string(rune('0'+id)), addr: netip.AddrFrom4([4]byte{10, 255, 0, byte(id)}),
		peer: netip.AddrFrom4([4]byte{10, 255, 0, byte(peer)}), table: sim.NewTable()}
	host := sim.NewHost("sync")
	h, err := ctsync.NewHandle(n.config(key), ctsync.Options{Log: slog.New(slog.DiscardHandler), StateDir: t.TempDir(),
		Kernel: deleteCounter{n.table, &n.deletes}, Listen: nw.Listener(host), Host: host, RuntimeTimers: true})
	if err != nil {
		t.Fatalf("%s: %v", n.name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.h, n.stop = h, cancel
	n.wg.Go(func() { h.Run(ctx) })
	return n
}

func (n *pbNode) halt() {
	n.stop()
	n.wg.Wait()
}

// TestHandleReplace: a key rotated on the backup, then on the master,
// each applied by replacing the engine: while the keys differ the
// datagrams are refused and counted; once they match, the backup gets a
// new complete copy, keeps every state of the master in its kernel
// throughout (nothing deleted), and a flow the master makes afterwards
// reaches it; the master's new engine goes on as master. A replacement
// that cannot open its link leaves the running engine as it was; an
// unchanged configuration changes nothing.
func TestHandleReplace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := sim.NewNet(3)
		var k1, k2 auth.Key
		k1[0], k2[0] = 1, 2
		m, b := startPB(t, nw, 1, 2, k1), startPB(t, nw, 2, 1, k1)
		defer m.halt()
		defer b.halt()
		ctx := context.Background()
		if err := m.h.SetRole(ctx, ctsync.RoleMaster); err != nil {
			t.Fatal(err)
		}
		if err := b.h.SetRole(ctx, ctsync.RoleBackup); err != nil {
			t.Fatal(err)
		}
		var flows []ct.Flow
		for i := range 100 {
			f := mpFlow(ct.ProtoTCP, uint16(1000+i), 432000)
			flows = append(flows, f)
			m.table.Add(f)
		}
		holds := func(n *pbNode, fs ...ct.Flow) bool {
			for _, f := range fs {
				if _, ok := n.table.Get(f.Key()); !ok {
					return false
				}
			}
			return true
		}
		waitUntil(t, "the master's flows in the backup's kernel", time.Minute, func() bool {
			return holds(b, flows...) && b.h.Status().BulkComplete
		})
		bulks := b.h.Stats(ctx).BulksReceived

		if ok, err := b.h.Replace(b.config(k1), nil); ok || err != nil {
			t.Fatalf("unchanged configuration: replaced %v, err %v", ok, err)
		}
		bad := b.config(k2)
		bad.Links[0].Interface = "nosuch"
		bad.Links[0].Port = 3781
		if ok, err := b.h.Replace(bad, nil); ok || err == nil || !strings.Contains(err.Error(), "sync link sync0") {
			t.Fatalf("a link that cannot open: replaced %v, err %v", ok, err)
		}
		late := mpFlow(ct.ProtoTCP, 2000, 432000)
		m.table.Add(late)
		waitUntil(t, "a flow through the engine that was kept", time.Minute, func() bool { return holds(b, late) })

		// The backup first: the keys differ until the master's reload.
		if ok, err := b.h.Replace(b.config(k2), nil); !ok || err != nil {
			t.Fatalf("backup's new key: replaced %v, err %v", ok, err)
		}
		if !b.h.Status().PeerUp {
			t.Error("right after the replacement the peer is reported down: the choreography would demote the node")
		}
		waitUntil(t, "the master's old key refused and counted on the backup", time.Minute, func() bool {
			return b.h.Stats(ctx).Drops["auth"] > 0 && m.h.Stats(ctx).Drops["auth"] > 0
		})
		if !holds(b, flows...) {
			t.Fatal("the backup's kernel lost the master's states while the keys differed")
		}
		if ok, err := m.h.Replace(m.config(k2), nil); !ok || err != nil {
			t.Fatalf("master's new key: replaced %v, err %v", ok, err)
		}
		waitUntil(t, "a new complete copy on the backup", time.Minute, func() bool {
			return b.h.Stats(ctx).BulksReceived > bulks && b.h.Status().BulkComplete && b.h.Status().PeerUp
		})
		if got := b.h.Status().PeerRole; got != ctsync.RoleMaster {
			t.Errorf("the backup sees its peer as %v after the master's reload, want MASTER", got)
		}
		after := mpFlow(ct.ProtoTCP, 3000, 432000)
		m.table.Add(after)
		waitUntil(t, "a flow of the master's new engine in the backup's kernel", time.Minute, func() bool { return holds(b, after) })
		if !holds(b, append(flows, late)...) {
			t.Error("a flow of the master is missing from the backup's kernel after the reloads")
		}

		// The master alone: the backup's engine goes on, and the master's
		// new one must not send it a copy before it knows its own flows
		// (an empty copy's end deletes the states the backup holds).
		bulks = b.h.Stats(ctx).BulksReceived
		mc := m.config(k2)
		mc.StartupSyncTimeout = 20 * time.Second
		if ok, err := m.h.Replace(mc, nil); !ok || err != nil {
			t.Fatalf("master's new startup_sync_timeout: replaced %v, err %v", ok, err)
		}
		waitUntil(t, "a new complete copy on the backup after the master's reload alone", time.Minute, func() bool {
			return b.h.Stats(ctx).BulksReceived > bulks && b.h.Status().BulkComplete
		})
		if st := b.h.Status(); st.External < len(flows)+2 {
			t.Errorf("the backup holds %d of the master's flows after its new copy, want %d", st.External, len(flows)+2)
		}
		if n := b.deletes.Load(); n != 0 {
			t.Errorf("the backup deleted %d states from its kernel", n)
		}
		if n := m.deletes.Load(); n != 0 {
			t.Errorf("the master deleted %d states from its kernel", n)
		}
		if st := m.h.Status(); st.Internal < len(flows)+2 {
			t.Errorf("the master's new engine holds %d flows of its own, want %d", st.Internal, len(flows)+2)
		}
	})
}

// TestHandleReplaceMultiprimary: a multiprimary node's engine replaced
// (its key, on both nodes, one after the other): each node keeps the
// other's flows in its kernel throughout (nothing deleted), gets a new
// complete copy, and the flows made afterwards on either side reach the
// other.
func TestHandleReplaceMultiprimary(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := sim.NewNet(5)
		var k1, k2 auth.Key
		k1[0], k2[0] = 1, 2
		a, b := startNode(t, nw, 1, 2, k1, true), startNode(t, nw, 2, 1, k1, true)
		defer a.halt()
		defer b.halt()
		ctx := context.Background()
		var fa, fb []ct.Flow
		for i := range 50 {
			fa = append(fa, mpFlow(ct.ProtoTCP, uint16(1000+i), 432000))
			fb = append(fb, mpFlow(ct.ProtoTCP, uint16(2000+i), 432000))
			a.table.Add(fa[i])
			b.table.Add(fb[i])
		}
		holds := func(n *pbNode, fs ...ct.Flow) bool {
			for _, f := range fs {
				if _, ok := n.table.Get(f.Key()); !ok {
					return false
				}
			}
			return true
		}
		waitUntil(t, "each node's flows in the other's kernel", time.Minute, func() bool {
			return holds(a, fb...) && holds(b, fa...) && a.h.Status().BulkComplete && b.h.Status().BulkComplete
		})
		copies := b.h.Stats(ctx).BulksReceived
		if err := a.h.SetGroupRole(ctx, "fw", ctsync.RoleMaster); err != nil {
			t.Fatal(err)
		}
		for _, n := range []*pbNode{a, b} {
			if ok, err := n.h.Replace(n.config(k2), nil); !ok || err != nil {
				t.Fatalf("%s: replaced %v, err %v", n.name, ok, err)
			}
		}
		waitUntil(t, "new complete copies", time.Minute, func() bool {
			return b.h.Stats(ctx).BulksReceived > copies && a.h.Status().BulkComplete && b.h.Status().BulkComplete
		})
		na, nb := mpFlow(ct.ProtoUDP, 3000, 120), mpFlow(ct.ProtoUDP, 4000, 120)
		a.table.Add(na)
		b.table.Add(nb)
		waitUntil(t, "the flows made after the reload on the other side", time.Minute, func() bool {
			return holds(a, nb) && holds(b, na)
		})
		if !holds(a, fb...) || !holds(b, fa...) {
			t.Error("a node lost the other's flows")
		}
		for _, n := range []*pbNode{a, b} {
			if d := n.deletes.Load(); d != 0 {
				t.Errorf("%s deleted %d flows from its kernel", n.name, d)
			}
		}
		waitUntil(t, "fw2 sees fw1's new engine as master of fw (SetGroupRole carried over)", time.Minute, func() bool {
			st := b.h.Status()
			return len(st.Peers) == 1 && slices.Equal(st.Peers[0].MasterOf, []string{"fw"})
		})
	})
}

// TestHandleReplaceExternal: with the external cache, a backup whose
// engine is replaced keeps the master's states in its cache (what a
// takeover commits) without a gap, and gets a new complete copy; its
// kernel is never written.
func TestHandleReplaceExternal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := sim.NewNet(6)
		var key auth.Key
		key[0] = 4
		m, b := startNodeCache(t, nw, 1, 2, key, false, true), startNodeCache(t, nw, 2, 1, key, false, true)
		defer m.halt()
		defer b.halt()
		ctx := context.Background()
		if err := m.h.SetRole(ctx, ctsync.RoleMaster); err != nil {
			t.Fatal(err)
		}
		if err := b.h.SetRole(ctx, ctsync.RoleBackup); err != nil {
			t.Fatal(err)
		}
		for i := range 60 {
			m.table.Add(mpFlow(ct.ProtoTCP, uint16(1000+i), 432000))
		}
		waitUntil(t, "the master's flows in the backup's cache", time.Minute, func() bool {
			st := b.h.Status()
			return st.External == 60 && st.BulkComplete
		})
		copies := b.h.Stats(ctx).BulksReceived
		for _, n := range []*pbNode{b, m} {
			c := n.config(key)
			c.Filter.Protocols = []string{"tcp", "udp"}
			if ok, err := n.h.Replace(c, nil); !ok || err != nil {
				t.Fatalf("%s: replaced %v, err %v", n.name, ok, err)
			}
			if got := b.h.Status().External; got != 60 {
				t.Fatalf("right after %s's replacement the backup's cache holds %d flows, want 60", n.name, got)
			}
		}
		waitUntil(t, "a new complete copy", time.Minute, func() bool {
			return b.h.Stats(ctx).BulksReceived > copies && b.h.Status().BulkComplete
		})
		if got := b.h.Status().External; got != 60 {
			t.Errorf("after the new copy the backup's cache holds %d flows, want 60", got)
		}
		if n := b.table.Len(); n != 0 {
			t.Errorf("the backup's kernel holds %d flows: the external cache writes none before a commit", n)
		}
	})
}

// dialFailer is a sim table whose next Dials fail.
type dialFailer struct {
	*sim.Table
	fail *atomic.Int32 // how many Dials fail from now
}

func (k dialFailer) Dial() (ctsync.KernelConn, error) {
	if k.fail.Add(-1) >= 0 {
		return nil, errors.New("dial refused (test)")
	}
	k.fail.Store(0)
	return k.Table.Dial()
}

// TestHandleReplaceFails: a new engine that fails to open after the
// check (here, its kernel socket) gives way to one of the previous
// configuration, which replicates as before; if that fails too, nothing
// runs, the calls say so, and the handle still stops cleanly.
func TestHandleReplaceFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := sim.NewNet(7)
		var k1, k2 auth.Key
		k1[0], k2[0] = 1, 2
		var fail atomic.Int32
		host := sim.NewHost("sync")
		table := sim.NewTable()
		n := &pbNode{name: "fw1", addr: netip.MustParseAddr("10.255.0.1"), peer: netip.MustParseAddr("10.255.0.2")}
		h, err := ctsync.NewHandle(n.config(k1), ctsync.Options{Log: slog.New(slog.DiscardHandler), StateDir: t.TempDir(),
			Kernel: dialFailer{table, &fail}, Listen: nw.Listener(host), Host: host, RuntimeTimers: true})
		if err != nil {
			t.Fatal(err)
		}
		peer := startPB(t, nw, 2, 1, k1)
		defer peer.halt()
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { h.Run(ctx) })
		defer wg.Wait()
		defer cancel()
		if err := h.SetRole(context.Background(), ctsync.RoleMaster); err != nil {
			t.Fatal(err)
		}
		table.Add(mpFlow(ct.ProtoTCP, 1, 432000))
		waitUntil(t, "the flow at the peer", time.Minute, func() bool { return peer.table.Len() == 1 })

		fail.Store(1)
		ok, err := h.Replace(n.config(k2), nil)
		if ok || err == nil || !strings.Contains(err.Error(), "the previous configuration runs again") {
			t.Fatalf("replaced %v, err %v", ok, err)
		}
		if got := h.Config().Key; got != k1 {
			t.Errorf("the handle runs key %x..., want the previous one", got[0])
		}
		table.Add(mpFlow(ct.ProtoTCP, 2, 432000))
		waitUntil(t, "a flow through the previous configuration's new engine", time.Minute, func() bool {
			return peer.table.Len() == 2
		})

		fail.Store(2)
		if ok, err := h.Replace(n.config(k2), nil); ok || err == nil || !strings.Contains(err.Error(), "could not run again") {
			t.Fatalf("both failing: replaced %v, err %v", ok, err)
		}
		if err := h.Request(context.Background()); !errors.Is(err, ctsync.ErrStopped) {
			t.Errorf("a call with nothing running: %v, want ErrStopped", err)
		}
	})
}

// recordingConn keeps what a sync socket sent.
type recordingConn struct {
	ctsync.PacketConn
	mu   *sync.Mutex
	sent *[][]byte
}

func (c recordingConn) WriteToUDPAddrPort(b []byte, a netip.AddrPort) (int, error) {
	c.mu.Lock()
	*c.sent = append(*c.sent, append([]byte(nil), b...))
	c.mu.Unlock()
	return c.PacketConn.WriteToUDPAddrPort(b, a)
}

// TestHandleReplaceKeepsReplayGuard: a datagram the peer sent before a
// replacement, played again to the new engine, is refused as a replay
// (the new engine keeps the old one's replay guard).
func TestHandleReplaceKeepsReplayGuard(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := sim.NewNet(8)
		var key auth.Key
		key[0] = 5
		m := startPB(t, nw, 1, 2, key)
		defer m.halt()
		var mu sync.Mutex
		var sent [][]byte
		var conn ctsync.PacketConn
		host := sim.NewHost("sync")
		listen := func(l ctsync.Link) (ctsync.PacketConn, error) {
			c, err := nw.Listener(host)(l)
			if err == nil {
				conn = recordingConn{c, &mu, &sent}
			}
			return conn, err
		}
		b := &pbNode{name: "fw2", addr: netip.MustParseAddr("10.255.0.2"), peer: netip.MustParseAddr("10.255.0.1"), table: sim.NewTable()}
		h, err := ctsync.NewHandle(b.config(key), ctsync.Options{Log: slog.New(slog.DiscardHandler), StateDir: t.TempDir(),
			Kernel: b.table, Listen: listen, Host: host, RuntimeTimers: true})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		b.h, b.stop = h, cancel
		b.wg.Go(func() { h.Run(ctx) })
		defer b.halt()
		waitUntil(t, "both peers up", time.Minute, func() bool { return m.h.Status().PeerUp && h.Status().PeerUp })
		time.Sleep(time.Second)
		mu.Lock()
		old := sent[len(sent)-1]
		mu.Unlock()

		c := m.config(key)
		c.StartupSyncTimeout = 10 * time.Second
		if ok, err := m.h.Replace(c, nil); !ok || err != nil {
			t.Fatalf("replaced %v, err %v", ok, err)
		}
		before := m.h.Stats(context.Background()).Drops["replay"]
		if _, err := conn.WriteToUDPAddrPort(old, netip.AddrPortFrom(m.addr, 3780)); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "the replayed datagram refused", time.Minute, func() bool {
			return m.h.Stats(context.Background()).Drops["replay"] > before
		})
	})
}
