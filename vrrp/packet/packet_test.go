package packet

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var (
	src4 = netip.MustParseAddr("10.10.1.2")
	src6 = netip.MustParseAddr("fe80::1")
)

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

var cmpAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		ad       Advert
		src, dst netip.Addr
		wantLen  int
	}{
		{"v3 ipv4", Advert{Version: 3, VRID: 51, Priority: 150, Interval: time.Second, Addrs: addrs("10.10.1.1")}, src4, Group4, 12},
		{"v3 ipv4 several", Advert{Version: 3, VRID: 1, Priority: 255, Interval: 40950 * time.Millisecond, Addrs: addrs("10.0.0.1", "10.0.0.2", "10.0.0.3")}, src4, Group4, 20},
		{"v3 ipv4 resign", Advert{Version: 3, VRID: 255, Priority: 0, Interval: 10 * time.Millisecond, Addrs: addrs("10.0.0.1")}, src4, netip.MustParseAddr("10.10.1.3"), 12},
		{"v3 ipv6", Advert{Version: 3, VRID: 51, Priority: 100, Interval: 300 * time.Millisecond, Addrs: addrs("fd00:10:1::1", "fe80::51")}, src6, Group6, 40},
		{"v2 ipv4", Advert{Version: 2, VRID: 52, Priority: 100, Interval: 255 * time.Second, Addrs: addrs("10.10.2.1")}, src4, Group4, 20},
		{"v2 ipv4 auth data kept", Advert{Version: 2, VRID: 52, Priority: 100, Interval: time.Second, AuthType: 1, AuthData: [8]byte{'s', 'e', 'c', 'r', 'e', 't'}, Addrs: addrs("10.10.2.1")}, src4, Group4, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.ad.Append([]byte{0xee}, tt.src, tt.dst) // appends after existing bytes
			if err != nil {
				t.Fatal(err)
			}
			b = b[1:]
			if len(b) != tt.wantLen || tt.ad.Len() != tt.wantLen {
				t.Errorf("length %d, Len() %d, want %d", len(b), tt.ad.Len(), tt.wantLen)
			}
			got, err := Parse(b, tt.src, tt.dst, false)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tt.ad, got, cmpAddr); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	good, _ := (&Advert{Version: 3, VRID: 51, Priority: 150, Interval: time.Second, Addrs: addrs("10.10.1.1")}).Append(nil, src4, Group4)
	good2, _ := (&Advert{Version: 2, VRID: 51, Priority: 150, Interval: time.Second, Addrs: addrs("10.10.1.1")}).Append(nil, src4, Group4)
	mod := func(b []byte, f func([]byte) []byte) []byte { return f(append([]byte(nil), b...)) }
	tests := []struct {
		name string
		b    []byte
		src  netip.Addr
		want error
	}{
		{"empty", nil, src4, ErrTruncated},
		{"short header", good[:7], src4, ErrTruncated},
		{"missing address", good[:10], src4, ErrTruncated},
		{"trailing bytes", append(append([]byte(nil), good...), 0), src4, ErrLength},
		{"count too high", mod(good, func(b []byte) []byte { b[3] = 2; return b }), src4, ErrTruncated},
		{"version 1", mod(good, func(b []byte) []byte { b[0] = 1<<4 | 1; return b }), src4, ErrVersion},
		{"version 4", mod(good, func(b []byte) []byte { b[0] = 4<<4 | 1; return b }), src4, ErrVersion},
		{"type 2", mod(good, func(b []byte) []byte { b[0] = 3<<4 | 2; return b }), src4, ErrType},
		{"checksum", mod(good, func(b []byte) []byte { b[7] ^= 1; return b }), src4, ErrChecksum},
		{"checksum of another source", good, netip.MustParseAddr("10.10.1.3"), ErrChecksum},
		{"priority changed", mod(good, func(b []byte) []byte { b[2] = 255; return b }), src4, ErrChecksum},
		{"zero interval", mod(good, func(b []byte) []byte { b[4], b[5] = 0, 0; return b }), src4, ErrInterval},
		{"v2 over ipv6", good2, src6, ErrFamily},
		{"v2 checksum", mod(good2, func(b []byte) []byte { b[19] = 1; return b }), src4, ErrChecksum},
		{"v2 missing auth data", good2[:12], src4, ErrTruncated},
		{"no addresses", mod(good[:8], func(b []byte) []byte { b[3] = 0; return b }), src4, ErrAddrs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.b, tt.src, Group4, false)
			if !errors.Is(err, tt.want) {
				t.Errorf("Parse error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestAppendErrors(t *testing.T) {
	many := make([]netip.Addr, 256)
	for i := range many {
		many[i] = src4
	}
	tests := []struct {
		name string
		ad   Advert
		src  netip.Addr
		want error
	}{
		{"version", Advert{Version: 4, Interval: time.Second}, src4, ErrVersion},
		{"v2 ipv6", Advert{Version: 2, Interval: time.Second}, src6, ErrFamily},
		{"v2 fraction", Advert{Version: 2, Interval: 1500 * time.Millisecond}, src4, ErrInterval},
		{"v3 zero", Advert{Version: 3}, src4, ErrInterval},
		{"v3 too long", Advert{Version: 3, Interval: 41 * time.Second}, src4, ErrInterval},
		{"v3 step", Advert{Version: 3, Interval: 15 * time.Millisecond}, src4, ErrInterval},
		{"mixed family", Advert{Version: 3, Interval: time.Second, Addrs: addrs("fd00::1")}, src4, ErrFamily},
		{"too many", Advert{Version: 3, Interval: time.Second, Addrs: many}, src4, ErrAddrs},
		{"none", Advert{Version: 3, Interval: time.Second}, src4, ErrAddrs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.ad.Append(nil, tt.src, Group4); !errors.Is(err, tt.want) {
				t.Errorf("Append error = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestChecksumKnownVector checks the checksum on a hand-computed example:
// v2 (no pseudo-header), VRID 1, priority 100, one address 192.168.0.1,
// interval 1 s, no authentication.
func TestChecksumKnownVector(t *testing.T) {
	b := []byte{0x21, 0x01, 0x64, 0x01, 0x00, 0x01, 0x00, 0x00, 192, 168, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}
	// Words: 2101 6401 0001 0000 c0a8 0001 -> sum 0x145ac -> fold 0x45ad -> ~ 0xba52.
	if got := Checksum(b, 2, src4, Group4); got != 0xba52 {
		t.Fatalf("checksum = %#04x, want 0xba52", got)
	}
}
