package ctsync

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/google/go-cmp/cmp"
)

// randomFlow returns one of about 3000 keys in one of several forms: with
// and without NAT, extra state, ICMP, zones.
func randomFlow(r *rand.Rand) ct.Flow {
	f := benchFlow([]string{"ipv4-tcp", "ipv4-tcp-snat", "mixed"}[r.IntN(3)], r.IntN(1000))
	f.Timeout = r.Uint32()
	f.Mark = r.Uint32N(3)
	f.Zone = uint16(r.IntN(2))
	switch r.IntN(6) {
	case 0:
		f.Extra = &ct.Extra{Helper: "ftp", SeqAdjOrig: ct.SeqAdj{Position: r.Uint32(), OffsetAfter: 4}}
	case 1:
		src, dst := netip.MustParseAddr("10.1.1.1"), netip.MustParseAddr("10.2.2.2")
		f.Orig = ct.NewICMPTuple(src, dst, 8, 0, uint16(r.IntN(1000)))
		f.Reply = ct.NewICMPTuple(dst, src, 0, 0, f.Orig.SrcPort)
		f.TCP = ct.TCPInfo{}
	case 2:
		f.Reply = ct.Tuple{} // whatever the kernel sent, it comes back
	}
	return f
}

// TestCacheAgainstMap runs random puts, deletes and iterations with
// deletes on both caches and a plain map, and compares them throughout.
func TestCacheAgainstMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var in cache
	var ext extCache
	want := map[ct.Key]ct.Flow{}
	check := func(step int) {
		t.Helper()
		if in.len() != len(want) || ext.len() != len(want) {
			t.Fatalf("step %d: %d and %d entries, want %d", step, in.len(), ext.len(), len(want))
		}
		for k, w := range want {
			g, ok := in.get(k)
			if diff := cmp.Diff(w, g); !ok || diff != "" {
				t.Fatalf("step %d: internal %v: found %v (-want +got):\n%s", step, k.Orig, ok, diff)
			}
			g, ok = ext.get(k)
			if diff := cmp.Diff(w, g); !ok || diff != "" {
				t.Fatalf("step %d: external %v: found %v (-want +got):\n%s", step, k.Orig, ok, diff)
			}
		}
		n := 0
		for f, at := range ext.flows() {
			if at != int64(f.Timeout) {
				t.Fatalf("step %d: %v heard at %d, want %d", step, f.Orig, at, f.Timeout)
			}
			n++
		}
		if n != len(want) {
			t.Fatalf("step %d: iterated %d flows, want %d", step, n, len(want))
		}
	}
	for step := range 60000 {
		f := randomFlow(r)
		k := f.Key()
		switch op := r.IntN(10); {
		case op < 6:
			in.put(&f)
			ext.put(&f, int64(f.Timeout), 1)
			want[k] = f
		case op < 9:
			_, ok := want[k]
			delete(want, k)
			if in.del(k) != ok {
				t.Fatalf("step %d: internal del %v: %v, want %v", step, k.Orig, !ok, ok)
			}
			if _, got := ext.del(k); got != ok {
				t.Fatalf("step %d: external del %v: %v, want %v", step, k.Orig, got, ok)
			}
		default:
			// Delete about a third while iterating, as a resync does.
			for k := range in.keys() {
				if r.IntN(3) == 0 {
					in.del(k)
					ext.del(k)
					delete(want, k)
				}
			}
		}
		if step%5000 == 0 || step < 200 {
			check(step)
		}
	}
	check(-1)
	in.clear()
	ext.clear()
	f := randomFlow(r)
	if in.len() != 0 || ext.len() != 0 || in.has(f.Key()) {
		t.Errorf("cleared caches hold entries")
	}
}
