package wire

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
)

// million is the number of flows the 1M benchmarks carry.
const million = 1_000_000

// manyFlows returns n distinct flows of one kind, as conntrack shows them:
// ESTABLISHED TCP or an assured UDP flow, IPv4 or IPv6, without NAT.
func manyFlows(n int, proto uint8, v6 bool) []ct.Flow {
	flows := make([]ct.Flow, n)
	for i := range flows {
		var src, dst netip.Addr
		if v6 {
			var a [16]byte
			copy(a[:], cl6.AsSlice())
			binary.BigEndian.PutUint32(a[12:], uint32(i>>10))
			src, dst = netip.AddrFrom16(a), srv6
		} else {
			a := cl4.As4()
			a[2], a[3] = byte(i>>18), byte(i>>10)
			src, dst = netip.AddrFrom4(a), srv4
		}
		f := established(src, dst)
		if proto == ct.ProtoUDP {
			f = udp(src, dst)
		}
		f.Orig.SrcPort = uint16(10000 + i&1023)
		f.Reply = f.Orig.Reverse()
		flows[i] = f
	}
	return flows
}

var codecKinds = []struct {
	name  string
	proto uint8
	v6    bool
}{
	{"ipv4-tcp", ct.ProtoTCP, false},
	{"ipv4-udp", ct.ProtoUDP, false},
	{"ipv6-tcp", ct.ProtoTCP, true},
	{"ipv6-udp", ct.ProtoUDP, true},
}

// BenchmarkCodec1M encodes and decodes 1M flows of each kind (records
// appended to one buffer, then parsed back one after the other) and
// reports the time and the wire bytes per flow.
func BenchmarkCodec1M(b *testing.B) {
	for _, k := range codecKinds {
		flows := manyFlows(million, k.proto, k.v6)
		buf := make([]byte, 0, million*64)
		b.Run(k.name+"/encode", func(b *testing.B) {
			var took time.Duration
			for b.Loop() {
				start := time.Now()
				buf = buf[:0]
				for i := range flows {
					buf = AppendUpdate(buf, &flows[i])
				}
				took += time.Since(start)
			}
			b.ReportMetric(float64(took.Nanoseconds())/float64(b.N)/million, "ns/flow")
			b.ReportMetric(float64(len(buf))/million, "B/flow")
		})
		b.Run(k.name+"/decode", func(b *testing.B) {
			if len(buf) == 0 {
				b.Skip("no encoded records (run with the encode benchmark)")
			}
			var took time.Duration
			for b.Loop() {
				start := time.Now()
				n := 0
				for rest := buf; len(rest) > 0; n++ {
					r, next, err := ParseRecord(rest)
					if err != nil || r.Flow.Orig != flows[n].Orig {
						b.Fatalf("record %d: %v", n, err)
					}
					rest = next
				}
				took += time.Since(start)
				if n != million {
					b.Fatalf("decoded %d records, want %d", n, million)
				}
			}
			b.ReportMetric(float64(took.Nanoseconds())/float64(b.N)/million, "ns/flow")
			b.ReportMetric(float64(len(buf))/million, "B/flow")
		})
	}
}
