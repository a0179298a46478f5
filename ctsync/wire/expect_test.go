package wire

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ctha/ctha/ctsync/ct"
)

// ftpExpect is the expectation the FTP helper makes for a passive data
// connection: from the client to the server's port 50000, any source port.
func ftpExpect(cl, srv netip.Addr) ct.Expect {
	ones := netip.MustParseAddr("255.255.255.255")
	if cl.Is6() {
		ones = netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
	}
	return ct.Expect{
		Master:  ct.NewTuple(ct.ProtoTCP, cl, srv, 40000, 21),
		Tuple:   ct.NewTuple(ct.ProtoTCP, cl, srv, 0, 50000),
		Mask:    ct.NewTuple(ct.ProtoTCP, ones, ones, 0, 0xffff),
		Timeout: 299,
		Helper:  "ftp",
	}
}

var expectRoundTrips = []struct {
	name string
	e    ct.Expect
}{
	{"ipv4 ftp", ftpExpect(cl4, srv4)},
	{"ipv6 ftp", ftpExpect(cl6, srv6)},
	{"every field", func() ct.Expect {
		e := ftpExpect(cl4, srv4)
		e.Zone, e.Flags, e.Class, e.Fn = 7, 1, 2, "nf_nat_follow_master"
		e.Tuple.Proto, e.Mask.Proto = ct.ProtoUDP, ct.ProtoUDP // SIP: a UDP expectation of a TCP master
		return e
	}()},
}

func TestExpectRoundTrip(t *testing.T) {
	for _, tt := range expectRoundTrips {
		t.Run(tt.name, func(t *testing.T) {
			first := len(AppendExpect(nil, &tt.e))
			b := AppendExpect(nil, &tt.e)
			b = AppendExpectDestroy(b, tt.e.Key())
			r, rest, err := ParseRecord(b)
			if err != nil || r.Kind != KindExpect || r.Expect == nil {
				t.Fatalf("ParseRecord = %+v, %v", r, err)
			}
			if diff := cmp.Diff(tt.e, *r.Expect); diff != "" {
				t.Errorf("expectation (-want +got):\n%s", diff)
			}
			r, rest, err = ParseRecord(rest)
			if err != nil || r.Kind != KindExpectDestroy || len(rest) != 0 {
				t.Fatalf("ParseRecord = %+v, %x, %v", r, rest, err)
			}
			if r.Expect.Key() != tt.e.Key() {
				t.Errorf("destroy key %v, want %v", r.Expect.Key(), tt.e.Key())
			}
			// Every truncation is an error, never a panic.
			for cut := range first {
				if _, _, err := ParseRecord(b[:cut]); !errors.Is(err, ErrTruncated) {
					t.Errorf("cut at %d: %v, want ErrTruncated", cut, err)
				}
			}
		})
	}
}

func TestExpectMalformed(t *testing.T) {
	e := ftpExpect(cl4, srv4)
	b := AppendExpect(nil, &e)
	b[2] |= 0x80 // a reserved flag
	if _, _, err := ParseRecord(b); !errors.Is(err, ErrMalformed) {
		t.Errorf("reserved flag: %v, want ErrMalformed", err)
	}
	d := AppendExpectDestroy(nil, e.Key())
	d[2] |= flagTimeout
	if _, _, err := ParseRecord(d); !errors.Is(err, ErrMalformed) {
		t.Errorf("destroy with a timeout flag: %v, want ErrMalformed", err)
	}
}
