package ctsync_test

// Defer between two multiprimary engines in one process (package sim's
// tables and network, testing/synctest's clock, a fake NFQUEUE): a held
// packet passes once the peer has written its state into its kernel, not
// before; at the timeout when the peer is dead; at once when no peer is
// up, and for flows the headers cannot describe (source NAT without the
// glue).

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ctha/ctha/ctsync"
	"github.com/ctha/ctha/ctsync/auth"
	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/nfq"
	"github.com/ctha/ctha/ctsync/nfqtable"
	"github.com/ctha/ctha/internal/sim"
)

// fakeQueue is a PacketQueue: the test queues packets, the engine's
// verdicts are recorded with what the peer's kernel held at that moment.
type fakeQueue struct {
	ch     chan nfq.Packet
	mu     sync.Mutex
	at     map[uint32]time.Time // verdict times
	check  func(id uint32) bool // evaluated at the verdict
	ok     map[uint32]bool      // check's results
	closed bool
	nextID uint32
}

func newFakeQueue() *fakeQueue {
	return &fakeQueue{ch: make(chan nfq.Packet, 64), at: map[uint32]time.Time{}, ok: map[uint32]bool{}}
}

func (q *fakeQueue) Packets() <-chan nfq.Packet { return q.ch }
func (q *fakeQueue) Glue() bool                 { return false }
func (q *fakeQueue) Err() error                 { return nil }
func (q *fakeQueue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	return nil
}

func (q *fakeQueue) Verdicts(ids []uint32, v nfq.Verdict) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, id := range ids {
		q.at[id] = time.Now()
		if q.check != nil {
			q.ok[id] = q.check(id)
		}
	}
	return nil
}

// put queues a packet and returns its id.
func (q *fakeQueue) put(payload []byte) uint32 {
	q.mu.Lock()
	q.nextID++
	id := q.nextID
	q.mu.Unlock()
	q.ch <- nfq.Packet{ID: id, Family: 2, Hook: nfq.HookPostrouting, Payload: payload}
	return id
}

// verdict returns when packet id was accepted (zero: not yet) and what
// check said then.
func (q *fakeQueue) verdict(id uint32) (time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.at[id], q.ok[id]
}

type fakeRules struct {
	mu        sync.Mutex
	installed int
	removed   bool
}

func (r *fakeRules) Install(uint16, ...nfqtable.Match) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.installed++
	return nil
}
func (r *fakeRules) Reinstall() (bool, error) { return false, nil }
func (r *fakeRules) Watch(ctx context.Context, _ func()) error {
	<-ctx.Done()
	return ctx.Err()
}
func (r *fakeRules) Remove() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removed = true
	return nil
}
func (r *fakeRules) Mode() nfqtable.Mode { return nfqtable.ModeCompat }

// startDefer starts node n with defer on, fed by q.
func (n *mpNode) startDefer(t *testing.T, nw *sim.Net, key auth.Key, q *fakeQueue, rules *fakeRules, vips ...netip.Addr) {
	t.Helper()
	c := ctsync.Config{Topology: ctsync.Multiprimary, NodeName: n.name, Key: key, StartupSyncTimeout: 30 * time.Second,
		Defer: 20 * time.Millisecond, DeferQueue: 3170,
		Links: []ctsync.Link{{Name: "sync0", Interface: "sync", Local: n.addr, Peers: n.peers, Port: 3780}}}
	eng, err := ctsync.New(c, ctsync.Options{Log: slog.New(slog.DiscardHandler), StateDir: n.dir, VIPs: vips,
		Kernel: n.table, Listen: nw.Listener(n.host), Host: n.host, RuntimeTimers: true,
		OpenQueue:  func(uint16) (ctsync.PacketQueue, error) { return q, nil },
		DeferRules: func() (ctsync.DeferRules, error) { return rules, nil }})
	if err != nil {
		t.Fatalf("%s: %v", n.name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.eng, n.stop = eng, cancel
	n.wg.Go(func() { eng.Run(ctx) })
}

// tcpPacket returns an IPv4 TCP packet's headers with the given flags.
func tcpPacket(src, dst netip.Addr, sport, dport uint16, flags byte) []byte {
	b := make([]byte, 40)
	b[0], b[9] = 0x45, ct.ProtoTCP
	binary.BigEndian.PutUint16(b[2:], 40)
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	binary.BigEndian.PutUint16(b[20:], sport)
	binary.BigEndian.PutUint16(b[22:], dport)
	b[32], b[33] = 5<<4, flags
	return b
}

const (
	tcpSYN = 0x02
	tcpACK = 0x10
)

// TestDeferPair: the SYN waits on fw1 until fw2's kernel holds SYN_SENT,
// the SYN-ACK on fw2 until fw1's holds SYN_RECV; the kernel events that
// follow are not sent again; a dead peer costs the timeout until it is
// known dead, then nothing; a source-NATed SYN is not held.
func TestDeferPair(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := sim.NewNet(3)
		nw.SetBoth(netip.MustParseAddr("10.255.0.1"), netip.MustParseAddr("10.255.0.2"), sim.Cond{Delay: 200 * time.Microsecond})
		var key auth.Key
		key[0] = 5
		vip := netip.MustParseAddr("203.0.113.1")
		a, b := newMPNode(t, 1, 2), newMPNode(t, 2, 1)
		qa, qb := newFakeQueue(), newFakeQueue()
		ra, rb := &fakeRules{}, &fakeRules{}
		a.startDefer(t, nw, key, qa, ra, vip)
		b.startDefer(t, nw, key, qb, rb, vip)
		defer func() {
			for _, n := range []*mpNode{a, b} {
				if n.eng != nil {
					n.halt()
				}
			}
		}()
		waitUntil(t, "both peers up", time.Minute, func() bool { return a.eng.Status().PeerUp && b.eng.Status().PeerUp })

		client, server := netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("192.0.2.80")
		key1 := ct.Key{Orig: ct.NewTuple(ct.ProtoTCP, client, server, 40000, 80)}
		stateIn := func(tb *sim.Table, k ct.Key, state uint8) bool {
			e, ok := tb.Get(k)
			return ok && e.Flow.TCP.State == state
		}

		// The SYN through fw1: released only with SYN_SENT in fw2's kernel.
		qa.check = func(uint32) bool { return stateIn(b.table, key1, ct.TCPSynSent) }
		start := time.Now()
		syn := qa.put(tcpPacket(client, server, 40000, 80, tcpSYN))
		waitUntil(t, "the SYN released", time.Second, func() bool { at, _ := qa.verdict(syn); return !at.IsZero() })
		at, written := qa.verdict(syn)
		if !written {
			t.Fatal("fw1 released the SYN before fw2's kernel held SYN_SENT")
		}
		if held := at.Sub(start); held >= 20*time.Millisecond {
			t.Errorf("the SYN was held %v: the timeout, not fw2's answer", held)
		}
		// fw1's kernel confirms the entry after the verdict: its NEW event
		// repeats what fw2 has and is not sent again.
		recs := b.eng.Stats(context.Background()).Records
		own := ct.Flow{Orig: key1.Orig, Reply: key1.Orig.Reverse(), Status: ct.StatusConfirmed, Timeout: 120}
		own.TCP.State = ct.TCPSynSent
		a.table.Add(own)
		time.Sleep(100 * time.Millisecond)
		if got := b.eng.Stats(context.Background()).Records; got != recs {
			t.Errorf("fw1's NEW event after the verdict was sent again: fw2 applied %d records more", got-recs)
		}

		// The SYN-ACK through fw2, which holds the flow as fw1's: released
		// only with SYN_RECV in fw1's kernel.
		qb.check = func(uint32) bool { return stateIn(a.table, key1, ct.TCPSynRecv) }
		synack := qb.put(tcpPacket(server, client, 80, 40000, tcpSYN|tcpACK))
		waitUntil(t, "the SYN-ACK released", time.Second, func() bool { at, _ := qb.verdict(synack); return !at.IsZero() })
		if _, written := qb.verdict(synack); !written {
			t.Fatal("fw2 released the SYN-ACK before fw1's kernel held SYN_RECV")
		}
		if e, _ := a.table.Get(key1); !e.Liberal {
			t.Error("fw1's own entry is not liberal after fw2's SYN_RECV: it never sees the reply's window")
		}

		// Data never waits: a packet the rules would not queue, if it
		// came, passes at once and counts as not deferred.
		ack := qa.put(tcpPacket(client, server, 40000, 80, tcpACK))
		// A source-NATed SYN (its source is a VIP): not held.
		snat := qa.put(tcpPacket(vip, server, 40001, 80, tcpSYN))
		waitUntil(t, "the ACK and the SNAT SYN passed", time.Second, func() bool {
			a1, _ := qa.verdict(ack)
			a2, _ := qa.verdict(snat)
			return !a1.IsZero() && !a2.IsZero()
		})

		s := a.eng.Status().Defer
		if s == nil || s.Held != 1 || s.ReleasedAcked != 1 || s.ReleasedTimeout != 0 || s.NotDeferred != 2 || s.Source != "headers" || s.Rule != "compat" {
			t.Fatalf("fw1's defer status %+v, want 1 held and acked, 2 not deferred", s)
		}
		if s.P99 <= 0 || s.P99 >= 20*time.Millisecond {
			t.Errorf("p99 held time %v, want the round trip", s.P99)
		}

		// fw2 dies: until fw1 knows, a SYN waits for the timeout; then it
		// passes at once.
		b.halt()
		nw.Isolate(b.addr, true)
		qa.check = nil
		start = time.Now()
		late := qa.put(tcpPacket(client, server, 40002, 80, tcpSYN))
		waitUntil(t, "the SYN released at the timeout", time.Second, func() bool { at, _ := qa.verdict(late); return !at.IsZero() })
		if at, _ := qa.verdict(late); at.Sub(start) < 20*time.Millisecond || at.Sub(start) > 25*time.Millisecond {
			t.Errorf("with the peer dead the SYN waited %v, want the 20ms timeout", at.Sub(start))
		}
		waitUntil(t, "fw2 known dead", time.Minute, func() bool { return !a.eng.Status().PeerUp })
		start = time.Now()
		alone := qa.put(tcpPacket(client, server, 40003, 80, tcpSYN))
		waitUntil(t, "the SYN passed", time.Second, func() bool { at, _ := qa.verdict(alone); return !at.IsZero() })
		if at, _ := qa.verdict(alone); at.Sub(start) >= time.Millisecond {
			t.Errorf("with no live peer the SYN waited %v", at.Sub(start))
		}
		s = a.eng.Status().Defer
		if s.ReleasedTimeout != 1 || s.NotDeferred != 3 || s.Pending != 0 {
			t.Errorf("fw1's defer status %+v, want 1 released at the timeout, 3 not deferred", s)
		}
		a.halt()
		if !ra.removed || !qa.closed {
			t.Errorf("stopped: rules removed %v, queue closed %v", ra.removed, qa.closed)
		}
	})
}

// TestDeferQueueTaken: a queue number another process holds stops the
// engine from starting, with an error that says what to change; rules
// that cannot be installed leave no queue bound.
func TestDeferQueueTaken(t *testing.T) {
	n := newMPNode(t, 1, 2)
	c := ctsync.Config{Topology: ctsync.Multiprimary, NodeName: n.name, Defer: 20 * time.Millisecond, DeferQueue: 3170,
		Links: []ctsync.Link{{Name: "sync0", Interface: "sync", Local: n.addr, Peers: n.peers, Port: 3780}}}
	nw := sim.NewNet(1)
	opts := ctsync.Options{Log: slog.New(slog.DiscardHandler), StateDir: n.dir, Kernel: n.table, Listen: nw.Listener(n.host),
		Host: n.host, RuntimeTimers: true,
		OpenQueue: func(num uint16) (ctsync.PacketQueue, error) {
			return nil, fmt.Errorf("bind queue %d: %w", num, nfq.ErrQueueTaken)
		},
		DeferRules: func() (ctsync.DeferRules, error) { return &fakeRules{}, nil }}
	_, err := ctsync.New(c, opts)
	if err == nil || !errors.Is(err, nfq.ErrQueueTaken) || !strings.Contains(err.Error(), "defer_queue") || !strings.Contains(err.Error(), "3170") {
		t.Errorf("queue taken: %v; want an error naming NFQUEUE 3170 and defer_queue", err)
	}

	q := newFakeQueue()
	opts.OpenQueue = func(uint16) (ctsync.PacketQueue, error) { return q, nil }
	opts.DeferRules = func() (ctsync.DeferRules, error) { return nil, errors.New("nftables: operation not permitted") }
	if _, err := ctsync.New(c, opts); err == nil || !strings.Contains(err.Error(), "operation not permitted") {
		t.Errorf("rules refused: %v", err)
	}
	if !q.closed {
		t.Error("rules refused: the queue is still bound")
	}

	c.Topology = ctsync.PrimaryBackup
	if _, err := ctsync.New(c, opts); err == nil || !strings.Contains(err.Error(), "defer needs the multiprimary topology") {
		t.Errorf("defer in primary-backup: %v", err)
	}
}

// TestDeferHeldSurvivesDump: between a held packet's verdict and its
// kernel event, the flow is in no dump (its entry is not confirmed yet); a
// dump then must not take it for gone and have the peers delete the state
// they just wrote.
func TestDeferHeldSurvivesDump(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := sim.NewNet(6)
		var key auth.Key
		key[0] = 6
		a, b := newMPNode(t, 1, 2), newMPNode(t, 2, 1)
		qa, qb := newFakeQueue(), newFakeQueue()
		a.startDefer(t, nw, key, qa, &fakeRules{})
		b.startDefer(t, nw, key, qb, &fakeRules{})
		defer a.halt()
		defer b.halt()
		waitUntil(t, "both peers up", time.Minute, func() bool { return a.eng.Status().PeerUp && b.eng.Status().PeerUp })
		client, server := netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("192.0.2.80")
		k := ct.Key{Orig: ct.NewTuple(ct.ProtoTCP, client, server, 40000, 80)}
		syn := qa.put(tcpPacket(client, server, 40000, 80, tcpSYN))
		waitUntil(t, "the SYN released", time.Second, func() bool { at, _ := qa.verdict(syn); return !at.IsZero() })
		if _, ok := b.table.Get(k); !ok {
			t.Fatal("released before fw2 held the state")
		}
		// A dump now, before fw1's kernel reports the flow.
		if err := a.eng.Resync(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if _, ok := b.table.Get(k); !ok {
			t.Fatal("fw1's dump before the flow's event had fw2 delete the state it had written")
		}
		own := ct.Flow{Orig: k.Orig, Reply: k.Orig.Reverse(), Status: ct.StatusConfirmed, Timeout: 120}
		own.TCP.State = ct.TCPSynSent
		a.table.Add(own) // the event comes
		time.Sleep(time.Second)
		if err := a.eng.Resync(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if _, ok := b.table.Get(k); !ok {
			t.Error("fw2 lost the flow after its event and a dump")
		}
	})
}
