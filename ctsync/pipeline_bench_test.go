package ctsync

import (
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/auth"
	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/ctsync/proto"
	"github.com/ctha/ctha/ctsync/wire"
)

// pipeNode is one side of the in-process pipeline: what the engine's loop
// holds, without sockets and kernel.
type pipeNode struct {
	internal cache
	external extCache
	ep       *proto.Endpoint
	guard    *auth.ReplayGuard
	sender   uint32
	seq      uint64
	buf      []byte
	dgrams   [][]byte
	ds       []proto.Delivery
	out      [][]byte
}

func newPipeNode(sender uint32) *pipeNode {
	n := &pipeNode{sender: sender, guard: auth.NewReplayGuard(0), buf: make([]byte, 0, 1<<20)}
	n.guard.SetSelf(sender)
	n.ep = proto.New(proto.Config{MaxPayload: maxPayload}, &n.internal)
	return n
}

// send seals what n's protocol has to send, as Engine.flush does; the
// datagrams are good until the next send.
func (n *pipeNode) send(key *auth.Key, now time.Time) [][]byte {
	n.out = n.ep.Output(now, n.out[:0])
	n.buf, n.dgrams = n.buf[:0], n.dgrams[:0]
	for _, p := range n.out {
		n.seq++
		start := len(n.buf)
		n.buf = auth.Seal(n.buf, key, auth.Header{Sender: n.sender, Epoch: 1, Seq: n.seq}, p)
		n.dgrams = append(n.dgrams, n.buf[start:len(n.buf):len(n.buf)])
	}
	return n.dgrams
}

// receive takes a datagram as the engine's receive goroutine and loop do:
// open, replay check, protocol, records into the external cache.
func (n *pipeNode) receive(key *auth.Key, dgram []byte, now time.Time) error {
	h, payload, err := auth.Open(key, dgram)
	if err != nil {
		return err
	}
	if err := n.guard.Check(h); err != nil {
		return err
	}
	if n.ds, err = n.ep.Input(h.Epoch, payload, now, n.ds[:0]); err != nil {
		return err
	}
	n.guard.Accept(h)
	at := now.UnixNano()
	for _, d := range n.ds {
		for b := d.Records; len(b) > 0; {
			r, rest, err := wire.ParseRecord(b)
			if err != nil {
				return err
			}
			b = rest
			switch r.Kind {
			case wire.KindUpdate:
				n.external.put(&r.Flow, at, 1)
			case wire.KindDestroy:
				n.external.del(r.Flow.Key())
			}
		}
	}
	return nil
}

// exchange sends what from has to send to to.
func exchange(from, to *pipeNode, key *auth.Key, now time.Time) (int, error) {
	dgrams := from.send(key, now)
	for _, d := range dgrams {
		if err := to.receive(key, d, now); err != nil {
			return 0, err
		}
	}
	return len(dgrams), nil
}

// BenchmarkPipeline1M carries 1M new flows from kernel events to the
// peer's external cache in one process, as the two engines do: events in
// batches of 256 (as the listener hands them over), the filter, the
// internal cache, the protocol, wire encoding, the authenticated envelope
// (HMAC-SHA256) sealed and opened, the replay guard, decoding, the
// external cache, and the ACKs back. Sockets and the kernel's conntrack
// are left out: their cost is the kernel's. It reports the seconds for
// the 1M, the time per flow on each side, and the heap each side holds
// per flow (its cache and protocol state).
func BenchmarkPipeline1M(b *testing.B) {
	for _, mix := range []string{"ipv4-tcp", "mixed"} {
		b.Run(mix, func(b *testing.B) {
			key := auth.Key{1, 2, 3}
			flt := newFilter(Filter{})
			events := make([]kernel.Event, 256)
			var sendT, recvT time.Duration
			var heapA, heapB float64
			datagrams := 0
			for b.Loop() {
				base := heapInUse()
				a, z := newPipeNode(1), newPipeNode(2)
				a.ep.SetRole(proto.RoleMaster)
				now := time.Unix(1_000_000, 0)
				for i := 0; i < million; i += len(events) {
					batch := events[:min(len(events), million-i)]
					for j := range batch {
						batch[j] = kernel.Event{Type: kernel.EventNew, Flow: benchFlow(mix, i+j)}
					}
					t := time.Now()
					for j := range batch { // Engine.onEvents
						ev := &batch[j]
						k := ev.Flow.Key()
						if a.external.has(k) || !flt.keep(&ev.Flow) {
							continue
						}
						a.internal.put(&ev.Flow)
						a.ep.Queue(k)
					}
					dgrams := a.send(&key, now)
					t2 := time.Now()
					sendT += t2.Sub(t)
					datagrams += len(dgrams)
					for _, d := range dgrams {
						if err := z.receive(&key, d, now); err != nil {
							b.Fatal(err)
						}
					}
					// The receiver's ACKs (and, first, its keep-alive).
					now = now.Add(time.Millisecond)
					acks := z.send(&key, now)
					t3 := time.Now()
					recvT += t3.Sub(t2)
					for _, d := range acks {
						if err := a.receive(&key, d, now); err != nil {
							b.Fatal(err)
						}
					}
					sendT += time.Since(t3)
				}
				for r := 0; !a.ep.Idle() && r < 1000; r++ {
					now = now.Add(10 * time.Millisecond)
					if _, err := exchange(a, z, &key, now); err != nil {
						b.Fatal(err)
					}
					if _, err := exchange(z, a, &key, now); err != nil {
						b.Fatal(err)
					}
				}
				if got := z.external.len(); got != million || a.internal.len() != million {
					b.Fatalf("%d flows in the sender's cache, %d in the receiver's; want %d", a.internal.len(), got, million)
				}
				if st := a.ep.Stats(); st.Resent != 0 {
					b.Fatalf("%d messages resent in process: %+v", st.Resent, st)
				}
				// Each side's heap: the sender's cache and protocol state,
				// then the receiver's without the sender.
				total := heapInUse() - base
				a.internal.clear()
				a.ep = nil
				heapB = float64(heapInUse()-base) / million
				heapA = float64(total)/million - heapB
				z.external.clear()
			}
			per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) / million }
			b.ReportMetric((per(sendT)+per(recvT))*million/1e9, "s/1M")
			b.ReportMetric(per(sendT), "send-ns/flow")
			b.ReportMetric(per(recvT), "recv-ns/flow")
			b.ReportMetric(heapA, "send-B/flow")
			b.ReportMetric(heapB, "recv-B/flow")
			b.ReportMetric(float64(datagrams)/float64(b.N), "datagrams")
		})
	}
}
