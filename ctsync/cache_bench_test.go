package ctsync

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
)

// million is the number of flows of the 1M benchmarks.
const million = 1_000_000

var (
	benchClient4 = netip.MustParseAddr("10.10.1.0")
	benchServer4 = netip.MustParseAddr("10.10.2.100")
	benchClient6 = netip.MustParseAddr("fd00:10:1::")
	benchServer6 = netip.MustParseAddr("fd00:10:2::100")
	benchNAT4    = netip.MustParseAddr("192.0.2.1")
)

// benchFlow returns the i-th of up to 2^26 distinct flows of a mix:
// "ipv4-tcp" (ESTABLISHED, no NAT), "ipv4-tcp-snat" (the reply to a NAT
// address and port), or "mixed" (IPv4 and IPv6, TCP and UDP in turn).
func benchFlow(mix string, i int) ct.Flow {
	proto, v6, nat := uint8(ct.ProtoTCP), false, false
	switch mix {
	case "ipv4-tcp-snat":
		nat = true
	case "mixed":
		v6 = i&1 != 0
		if i&2 != 0 {
			proto = ct.ProtoUDP
		}
	}
	var src, dst netip.Addr
	if v6 {
		a := benchClient6.As16()
		binary.BigEndian.PutUint32(a[12:], uint32(i>>10))
		src, dst = netip.AddrFrom16(a), benchServer6
	} else {
		a := benchClient4.As4()
		a[1], a[2], a[3] = 10+byte(i>>26), byte(i>>18), byte(i>>10)
		src, dst = netip.AddrFrom4(a), benchServer4
	}
	o := ct.NewTuple(proto, src, dst, uint16(10000+i&1023), 443)
	f := ct.Flow{Orig: o, Reply: o.Reverse(), Timeout: 431999,
		Status: ct.StatusSeenReply | ct.StatusAssured | ct.StatusConfirmed | ct.StatusSrcNATDone | ct.StatusDstNATDone}
	if proto == ct.ProtoTCP {
		f.TCP = ct.TCPInfo{State: ct.TCPEstablished, WScaleOrig: 7, WScaleRepl: 7, FlagsOrig: 0x23, FlagsRepl: 0x23}
	} else {
		f.Timeout = 180
	}
	if nat {
		f.Reply.Dst, f.Reply.DstPort = benchNAT4.As16(), uint16(20000+i%40000)
		f.Status |= ct.StatusSrcNAT
	}
	return f
}

func benchFlows(mix string, n int) []ct.Flow {
	flows := make([]ct.Flow, n)
	for i := range flows {
		flows[i] = benchFlow(mix, i)
	}
	return flows
}

var benchMixes = []string{"ipv4-tcp", "ipv4-tcp-snat", "mixed"}

// heapInUse returns the bytes of live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkCache1M inserts, updates, looks up and deletes 1M flows in the
// internal and the external cache as the engine does (put from an event
// or a record, a lookup by key, a delete), and reports the time per flow
// and the bytes of heap a cached entry holds (HeapAlloc after a GC, with
// the cache full, less before it was made).
func BenchmarkCache1M(b *testing.B) {
	for _, mix := range benchMixes {
		flows := benchFlows(mix, million)
		b.Run("internal/"+mix, func(b *testing.B) {
			var insert, update, lookup, del time.Duration
			var perEntry float64
			for b.Loop() {
				before := heapInUse()
				c := cache{}
				t := time.Now()
				for i := range flows {
					c.put(&flows[i])
				}
				insert += time.Since(t)
				perEntry = float64(heapInUse()-before) / million
				t = time.Now()
				for i := range flows {
					flows[i].Timeout--
					c.put(&flows[i])
				}
				update += time.Since(t)
				t = time.Now()
				for i := range flows {
					if f, ok := c.get(flows[i].Key()); !ok || f.Timeout != flows[i].Timeout {
						b.Fatalf("flow %d: lookup found %v (%v)", i, ok, f.Timeout)
					}
				}
				lookup += time.Since(t)
				t = time.Now()
				for i := range flows {
					c.del(flows[i].Key())
				}
				del += time.Since(t)
				if c.len() != 0 {
					b.Fatalf("%d entries left after deleting all", c.len())
				}
			}
			reportPhases(b, insert, update, lookup, del)
			b.ReportMetric(perEntry, "B/entry")
		})
		b.Run("external/"+mix, func(b *testing.B) {
			var insert, update, lookup, del time.Duration
			var perEntry float64
			for b.Loop() {
				before := heapInUse()
				c := extCache{}
				t := time.Now()
				now := t.UnixNano()
				for i := range flows {
					c.put(&flows[i], now, 1)
				}
				insert += time.Since(t)
				perEntry = float64(heapInUse()-before) / million
				t = time.Now()
				for i := range flows {
					flows[i].Timeout--
					c.put(&flows[i], now, 1)
				}
				update += time.Since(t)
				t = time.Now()
				for i := range flows {
					if f, ok := c.get(flows[i].Key()); !ok || !f.Equal(&flows[i]) {
						b.Fatalf("flow %d: lookup found %v: %v, want %v", i, ok, &f, &flows[i])
					}
				}
				lookup += time.Since(t)
				t = time.Now()
				for i := range flows {
					c.del(flows[i].Key())
				}
				del += time.Since(t)
				if c.len() != 0 {
					b.Fatalf("%d entries left after deleting all", c.len())
				}
			}
			reportPhases(b, insert, update, lookup, del)
			b.ReportMetric(perEntry, "B/entry")
		})
	}
}

func reportPhases(b *testing.B, insert, update, lookup, del time.Duration) {
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) / million }
	b.ReportMetric(per(insert), "insert-ns/flow")
	b.ReportMetric(per(update), "update-ns/flow")
	b.ReportMetric(per(lookup), "lookup-ns/flow")
	b.ReportMetric(per(del), "delete-ns/flow")
}
