package ctsync_test

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"context"
	"github.com/ctha/ctha/ctsync"
	"github.com/ctha/ctha/ctsync/auth"
	"github.com/ctha/ctha/ctsync/nfq"
	"github.com/ctha/ctha/internal/sim"
)

// BenchmarkDeferPair: held SYNs through a pair of engines in one process
// (sim's tables and network, real time): the engines' own cost per held
// packet, from the queue to the verdict.
func BenchmarkDeferPair(b *testing.B) {
	nw := sim.NewNet(1)
	var key auth.Key
	key[0] = 3
	a, p := newMPNode(b, 1, 2), newMPNode(b, 2, 1)
	qa, qb := newFakeQueue(), newFakeQueue()
	qa.ch, qb.ch = make(chan nfq.Packet, 1<<16), make(chan nfq.Packet, 1<<16)
	for _, n := range []struct {
		n *mpNode
		q *fakeQueue
	}{{a, qa}, {p, qb}} {
		c := ctsync.Config{Topology: ctsync.Multiprimary, NodeName: n.n.name, Key: key, Defer: time.Second, DeferQueue: 1,
			Links: []ctsync.Link{{Name: "sync0", Interface: "sync", Local: n.n.addr, Peers: n.n.peers, Port: 3780}}}
		q := n.q
		eng, err := ctsync.New(c, ctsync.Options{Log: slog.New(slog.DiscardHandler), StateDir: n.n.dir,
			Kernel: n.n.table, Listen: nw.Listener(n.n.host), Host: n.n.host,
			OpenQueue:  func(uint16) (ctsync.PacketQueue, error) { return q, nil },
			DeferRules: func() (ctsync.DeferRules, error) { return &fakeRules{}, nil }})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		n.n.eng, n.n.stop = eng, cancel
		n.n.wg.Go(func() { eng.Run(ctx) })
	}
	defer a.halt()
	defer p.halt()
	for end := time.Now().Add(10 * time.Second); !(a.eng.Status().PeerUp && p.eng.Status().PeerUp); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			b.Fatal("peers not up")
		}
	}
	server := netip.MustParseAddr("192.0.2.80")
	b.ResetTimer()
	start := time.Now()
	var last uint32
	for i := range b.N {
		last = qa.put(tcpPacket(netip.AddrFrom4([4]byte{198, 51, byte(i >> 16), byte(i >> 8)}), server, uint16(i), 80, tcpSYN))
	}
	for {
		if at, _ := qa.verdict(last); !at.IsZero() {
			break
		}
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	s := a.eng.Status().Defer
	b.ReportMetric(float64(s.ReleasedTimeout), "timeouts")
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "held/s")
	b.ReportMetric(float64(s.P99.Microseconds()), "p99_us")
}
