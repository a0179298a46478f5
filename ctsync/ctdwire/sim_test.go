package ctdwire

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
)

// simFlow is object id's flow at version v (its mark).
func simFlow(id uint16, v uint32) ct.Flow {
	f := flow(ct.NewTuple(ct.ProtoUDP, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), id, 53), 0x8, 30)
	f.Mark = v
	return f
}

// table is a node's own flows by object id; it is the Source.
type table map[uint16]uint32

func (t table) AppendMsgState(b []byte, k ct.Key) ([]byte, Type) {
	id := k.Orig.SrcPort
	v, ok := t[id]
	f := simFlow(id, v)
	s, _ := StateOf(&f)
	if !ok {
		return AppendState(b, &s), TypeCTDel
	}
	return AppendState(b, &s), TypeCTUpd
}

// simNode is one side: its table, its copy of the peer's, its endpoint.
type simNode struct {
	name string
	own  table
	peer table
	ep   *Endpoint
	// A resync this node asked for: the peer's objects it brought.
	bulk BulkWatch
	seen map[uint16]bool
}

// onPeer reacts to the endpoint's events as an engine would: a peer met
// for the first time, or restarted, gets our whole table, and we ask for
// its own; a RESYNC gets our whole table.
func (n *simNode) onPeer(now time.Time) {
	restarted := n.ep.PeerRestarted()
	if restarted || n.ep.ResyncRequested() {
		for id := range n.own {
			n.ep.Queue(simKey(id))
		}
	}
	if restarted {
		n.ep.RequestResync()
		n.bulk.Start(now)
		n.seen = map[uint16]bool{}
	}
	if n.bulk.Done(now) {
		// What the bulk did not mention is gone.
		for id := range n.peer {
			if !n.seen[id] {
				delete(n.peer, id)
			}
		}
		n.seen = nil
	}
}

func (n *simNode) apply(t *testing.T, now time.Time, ms []Msg) {
	t.Helper()
	for _, m := range ms {
		f, d, err := m.Flow()
		if err != nil || d != 0 {
			t.Fatalf("%s: %v: %v dropped %v", n.name, &m, err, d)
		}
		if n.seen != nil {
			n.seen[f.Orig.SrcPort] = true
			n.bulk.Observe(now)
		}
		if m.Type == TypeCTDel {
			delete(n.peer, f.Orig.SrcPort)
		} else {
			n.peer[f.Orig.SrcPort] = f.Mark
		}
	}
}

// link delivers datagrams after a random delay, losing and duplicating
// some.
type link struct {
	rng            *rand.Rand
	loss, dup      float64
	maxDelay       time.Duration
	inflight       []packet
	sent, dropped_ int
}

type packet struct {
	at   time.Time
	to   int
	data []byte
}

func (l *link) send(now time.Time, to int, ds [][]byte) {
	for _, d := range ds {
		l.sent++
		copies := 1
		if l.rng.Float64() < l.dup {
			copies = 2
		}
		for range copies {
			if l.rng.Float64() < l.loss {
				l.dropped_++
				continue
			}
			delay := time.Duration(l.rng.Int64N(int64(l.maxDelay) + 1))
			l.inflight = append(l.inflight, packet{at: now.Add(delay), to: to, data: append([]byte(nil), d...)})
		}
	}
}

// due removes and returns the packets due at now.
func (l *link) due(now time.Time) []packet {
	var out, keep []packet
	for _, p := range l.inflight {
		if !p.at.After(now) {
			out = append(out, p)
		} else {
			keep = append(keep, p)
		}
	}
	l.inflight = keep
	return out
}

// TestSimLossyLink runs two endpoints, both changing their tables, over
// a link that loses, duplicates and reorders, under a fake clock: once
// the changes stop, each side's copy equals the other's table exactly.
func TestSimLossyLink(t *testing.T) {
	for _, tc := range []struct {
		name      string
		loss, dup float64
		delay     time.Duration
		window    int
		restartAt time.Duration
	}{
		{name: "clean", delay: time.Millisecond, window: 300},
		{name: "loss 10%", loss: 0.10, delay: 2 * time.Millisecond, window: 16},
		{name: "loss 30% dup 10% reorder", loss: 0.30, dup: 0.10, delay: 40 * time.Millisecond, window: 8},
		{name: "dup 30% reorder", dup: 0.30, delay: 80 * time.Millisecond, window: 300},
		{name: "restart", delay: 2 * time.Millisecond, window: 16, restartAt: 5 * time.Second},
		{name: "restart loss 10% reorder", loss: 0.10, delay: 20 * time.Millisecond, window: 16, restartAt: 5 * time.Second},
	} {
		for seed := uint64(1); seed <= 3; seed++ {
			t.Run(fmt.Sprintf("%s seed %d", tc.name, seed), func(t *testing.T) {
				simRun(t, seed, tc.loss, tc.dup, tc.delay, tc.window, tc.restartAt)
			})
		}
	}
}

func simRun(t *testing.T, seed uint64, loss, dup float64, delay time.Duration, window int, restartAt time.Duration) {
	rng := rand.New(rand.NewPCG(seed, 7))
	now := time.Unix(1_700_000_000, 0)
	start := now
	var nodes [2]*simNode
	for i := range nodes {
		own := table{}
		cfg := Config{InitialSeq: uint32(now.Unix()) + uint32(i)*1000 - 5, Window: window, MaxDatagram: 300, ResendAfter: 2 * time.Second}
		nodes[i] = &simNode{name: fmt.Sprint("node", i), own: own, peer: table{}, ep: New(cfg, own)}
	}
	l := &link{rng: rng, loss: loss, dup: dup, maxDelay: delay}
	step := 5 * time.Millisecond
	changeUntil := now.Add(10 * time.Second)
	end := changeUntil.Add(20 * time.Second)
	for ; now.Before(end); now = now.Add(step) {
		if now.Before(changeUntil) {
			for i, n := range nodes {
				for range rng.IntN(4) {
					id := uint16(i*1000 + rng.IntN(200))
					if rng.IntN(4) == 0 {
						delete(n.own, id)
					} else {
						n.own[id]++
					}
					n.ep.Queue(ct.Key{Orig: simFlow(id, 0).Orig})
				}
			}
		}
		for _, p := range l.due(now) {
			n := nodes[p.to]
			ms, err := n.ep.Input(p.data, now, nil)
			if err != nil {
				t.Fatalf("%s: %v", n.name, err)
			}
			n.apply(t, now, ms)
			n.onPeer(now)
		}
		if restartAt > 0 && now.Equal(start.Add(restartAt)) {
			// Node 1 restarts: a new endpoint with lower sequence
			// numbers, its copy of the peer's table lost, its own
			// (the kernel's) kept.
			n := nodes[1]
			n.ep = New(Config{InitialSeq: 1, Window: window, MaxDatagram: 300, ResendAfter: 2 * time.Second}, n.own)
			n.peer = table{}
		}
		for i, n := range nodes {
			n.onPeer(now)
			if !n.ep.NextTimeout(now).After(now) {
				l.send(now, 1-i, n.ep.Output(now, nil))
			}
		}
	}
	for i, n := range nodes {
		peer := nodes[1-i]
		if !maps.Equal(n.own, peer.peer) {
			t.Errorf("%s's copy of %s differs: %d objects, want %d", peer.name, n.name, len(peer.peer), len(n.own))
		}
		st := n.ep.Stats()
		t.Logf("%s: sent %d resent %d acks %d nacks %d alives %d delivered %d lost %d late %d unacked %d",
			n.name, st.Sent, st.Resent, st.AcksSent, st.NacksSent, st.AlivesSent, st.Delivered, st.Lost, st.Late, n.ep.Unacked())
	}
	t.Logf("link: %d datagrams, %d copies dropped", l.sent, l.dropped_)
}

func simKey(id uint16) ct.Key { return ct.Key{Orig: simFlow(id, 0).Orig} }
