package nfqtable

import (
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/ctha/ctha/ctsync/nfq"
)

// udpLab is a lab whose rule queues UDP to benchPort, with a receiver on
// it and a sender connected to it, both inside the namespace.
type udpLab struct {
	*lab
	send, recv net.Conn
}

const benchPort = 9998

func newUDPLab(b *testing.B) *udpLab {
	b.Helper()
	l := newLab(b)
	m := Match{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{benchPort >> 8, benchPort & 0xff}},
	}
	if err := l.table.Install(testQueue, m); err != nil {
		b.Fatal(err)
	}
	u := &udpLab{lab: l}
	addr := fmt.Sprintf("127.0.0.1:%d", benchPort)
	err := l.ns.In(func() error {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return err
		}
		u.recv = pc.(*net.UDPConn)
		u.send, err = net.Dial("udp", addr)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	_ = u.recv.(*net.UDPConn).SetReadBuffer(8 << 20)
	b.Cleanup(func() { u.send.Close(); u.recv.Close() })
	return u
}

// accepting opens the queue with a consumer that accepts every packet at
// once; the returned function closes it.
func (u *udpLab) accepting(b *testing.B) (*nfq.Queue, func()) {
	q, err := u.open(nfq.Options{})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for p := range q.Packets() {
			_ = q.Verdict(p.ID, nfq.Accept)
		}
	}()
	return q, func() { q.Close(); <-done }
}

// BenchmarkQueueRoundTrip: one packet at a time, sent and received inside
// the namespace, through the queue and a verdict (queued) or through the
// rule with nothing bound (bypass). The difference is what the queue adds
// to a packet: figures for `defer`'s added latency, p50 and p99.
//
//	flock /tmp/ctha-lab.lock go test -run '^$' -bench QueueRoundTrip -benchtime 5000x ./ctsync/nfqtable/
func BenchmarkQueueRoundTrip(b *testing.B) {
	for _, queued := range []bool{false, true} {
		name := map[bool]string{false: "bypass", true: "queued"}[queued]
		b.Run(name, func(b *testing.B) {
			u := newUDPLab(b)
			if queued {
				_, stop := u.accepting(b)
				defer stop()
			}
			buf := make([]byte, 64)
			lat := make([]time.Duration, 0, b.N)
			_ = u.recv.SetReadDeadline(time.Now().Add(time.Minute))
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				if _, err := u.send.Write(buf[:32]); err != nil {
					b.Fatal(err)
				}
				if _, err := u.recv.Read(buf); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
		})
	}
}

// BenchmarkQueueThroughput: packets sent as fast as one sender can, each
// queued and accepted by one consumer; reports the packets per second that
// went through the queue and how many bypassed it (fail-open on overrun).
//
//	flock /tmp/ctha-lab.lock go test -run '^$' -bench QueueThroughput -benchtime 100000x ./ctsync/nfqtable/
func BenchmarkQueueThroughput(b *testing.B) {
	u := newUDPLab(b)
	q, stop := u.accepting(b)
	defer stop()
	got := make(chan int, 1)
	go func() {
		buf := make([]byte, 64)
		n := 0
		_ = u.recv.SetReadDeadline(time.Now().Add(time.Minute))
		for n < b.N {
			if _, err := u.recv.Read(buf); err != nil {
				break
			}
			n++
			_ = u.recv.SetReadDeadline(time.Now().Add(2 * time.Second))
		}
		got <- n
	}()
	buf := make([]byte, 32)
	start := time.Now()
	b.ResetTimer()
	for range b.N {
		if _, err := u.send.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	n := <-got
	b.StopTimer()
	s := q.Stats()
	b.ReportMetric(float64(s.Received)/time.Since(start).Seconds(), "queued/s")
	b.ReportMetric(float64(n), "delivered")
	b.ReportMetric(float64(s.Overruns), "overruns")
}
