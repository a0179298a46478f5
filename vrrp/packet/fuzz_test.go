package packet

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// FuzzParse parses arbitrary payloads as IPv4 and IPv6 adverts; whatever
// parses must encode back to the same bytes and parse to the same value.
func FuzzParse(f *testing.F) {
	for _, ad := range []Advert{
		{Version: 3, VRID: 51, Priority: 150, Interval: time.Second, Addrs: addrs("10.10.1.1")},
		{Version: 2, VRID: 52, Priority: 100, Interval: time.Second, Addrs: addrs("10.10.2.1", "10.10.2.2")},
	} {
		b, _ := ad.Append(nil, src4, Group4)
		f.Add(b, false)
	}
	b, _ := (&Advert{Version: 3, VRID: 51, Priority: 150, Interval: 300 * time.Millisecond, Addrs: addrs("fd00:10:1::1")}).Append(nil, src6, Group6)
	f.Add(b, true)
	f.Fuzz(func(t *testing.T, b []byte, v6 bool) {
		src, dst := src4, Group4
		if v6 {
			src, dst = src6, Group6
		}
		ad, err := Parse(b, src, dst, true) // the fuzzer cannot forge checksums
		if err != nil {
			return
		}
		out, err := ad.Append(nil, src, dst)
		if err != nil {
			t.Fatalf("parsed advert does not encode: %v (%+v)", err, ad)
		}
		again, err := Parse(out, src, dst, false)
		if err != nil {
			t.Fatalf("re-encoded advert does not parse: %v", err)
		}
		if diff := cmp.Diff(ad, again, cmpAddr); diff != "" {
			t.Fatalf("parse/append/parse changed the advert (-first +second):\n%s", diff)
		}
		// Apart from the checksum and v3's reserved bits, the bytes are equal.
		in := append([]byte(nil), b...)
		in[6], in[7], out[6], out[7] = 0, 0, 0, 0
		if ad.Version == 3 {
			in[4] &= 0x0f
		}
		if !cmp.Equal(in, out) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", in, out)
		}
	})
}
