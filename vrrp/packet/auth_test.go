package packet

import (
	"bytes"
	"errors"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var secret1, _ = NewPassword("secret1")

// kaAdvert is what both keepalived captures carry (10.10.1.2 sends).
var kaAdvert = Advert{Version: 2, VRID: 51, Priority: 150, Interval: time.Second, Addrs: addrs("10.10.1.1", "10.10.1.50")}

func TestNewPassword(t *testing.T) {
	tests := []struct {
		in        string
		want      Password
		truncated bool
	}{
		{"", Password{}, false},
		{"secret1", Password{'s', 'e', 'c', 'r', 'e', 't', '1', 0}, false},
		{"12345678", Password{'1', '2', '3', '4', '5', '6', '7', '8'}, false},
		{"123456789", Password{'1', '2', '3', '4', '5', '6', '7', '8'}, true},
	}
	for _, tt := range tests {
		got, trunc := NewPassword(tt.in)
		if got != tt.want || trunc != tt.truncated {
			t.Errorf("NewPassword(%q) = %q, %v; want %q, %v", tt.in, got, trunc, tt.want, tt.truncated)
		}
	}
}

// TestKeepalivedPassGolden: keepalived 2.2.7's auth_type PASS advert
// carries the password in the auth data, which the checksum covers; ctha
// encodes the same bytes.
func TestKeepalivedPassGolden(t *testing.T) {
	src, dst, payload := readCapture(t, filepath.Join("testdata", "keepalived", "v2-pass.txt"))
	got, err := Parse(payload, src, dst, false)
	if err != nil {
		t.Fatal(err)
	}
	want := kaAdvert
	want.AuthType, want.AuthData = AuthPass, secret1
	if diff := cmp.Diff(want, got, cmpAddr); diff != "" {
		t.Errorf("decoded (-want +got):\n%s", diff)
	}
	out, err := want.Append(nil, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, payload) {
		t.Errorf("encoding differs from keepalived's:\n got %x\nwant %x", out, payload)
	}
}

// TestKeepalivedAHGolden: ctha verifies keepalived 2.2.7's AH advert, and
// builds the same packet from the same header fields (ID 2, sequence 2):
// same ICV, byte for byte but the IP checksum, which the kernel fills in.
func TestKeepalivedAHGolden(t *testing.T) {
	pkt := readIPPacket(t, filepath.Join("testdata", "keepalived", "v2-ah.txt"))
	orig := bytes.Clone(pkt)
	msg, hdr, err := NewAH(secret1).Open(pkt, false)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !bytes.Equal(pkt, orig) {
		t.Errorf("Open left the packet changed")
	}
	if want := (AHHeader{SPI: 0x0a0a0102, Seq: 2}); hdr != want {
		t.Errorf("AH %+v, want %+v", hdr, want)
	}
	src, dst := netip.AddrFrom4([4]byte(pkt[12:16])), netip.AddrFrom4([4]byte(pkt[16:20]))
	ad, err := Parse(msg, src, dst, false)
	if err != nil {
		t.Fatal(err)
	}
	want := kaAdvert
	want.AuthType = AuthAH
	if diff := cmp.Diff(want, ad, cmpAddr); diff != "" {
		t.Errorf("decoded (-want +got):\n%s", diff)
	}

	out, err := NewAH(secret1).Append([]byte{0xee}, IPv4{TOS: 0xc0, ID: 2, TTL: 255, Src: src, Dst: dst}, 2, &kaAdvert, false)
	if err != nil {
		t.Fatal(err)
	}
	out = out[1:]
	wantPkt := bytes.Clone(pkt)
	wantPkt[10], wantPkt[11] = 0, 0 // the kernel's
	if !bytes.Equal(out, wantPkt) {
		t.Errorf("encoding differs from keepalived's:\n got %x\nwant %x", out, wantPkt)
	}
	// And it verifies: with the IP checksum zero, or filled in.
	if _, _, err := NewAH(secret1).Open(out, false); err != nil {
		t.Errorf("Open of ctha's packet: %v", err)
	}
}

// TestAHTamper changes each byte of an AH packet in turn: every change
// but those to the mutable fields (TOS, fragment field, checksum, and the
// TTL in multicast mode) is rejected, and the wrong password is too.
func TestAHTamper(t *testing.T) {
	for _, unicast := range []bool{false, true} {
		ah := NewAH(secret1)
		good, err := ah.Append(nil, IPv4{TOS: 0xc0, ID: 7, TTL: 255, Src: src4, Dst: Group4}, 42, &kaAdvert, unicast)
		if err != nil {
			t.Fatal(err)
		}
		if len(good) != IPv4HeaderLen+AHLen+kaAdvert.Len() {
			t.Fatalf("length %d", len(good))
		}
		mutable := map[int]bool{1: true, 6: true, 7: true, 10: true, 11: true, 8: unicast}
		for i := range good {
			b := bytes.Clone(good)
			b[i] ^= 0x01
			_, _, err := ah.Open(b, unicast)
			if mutable[i] {
				if err != nil {
					t.Errorf("unicast=%v: byte %d (mutable) changed: %v", unicast, i, err)
				}
				continue
			}
			if err == nil {
				t.Errorf("unicast=%v: byte %d changed and still accepted", unicast, i)
			}
		}
		if _, _, err := NewAH(Password{'s', 'e', 'c', 'r', 'e', 't', '2'}).Open(bytes.Clone(good), unicast); !errors.Is(err, ErrAuth) {
			t.Errorf("unicast=%v: another password: %v, want ErrAuth", unicast, err)
		}
		// The sender and the receiver must agree on the TTL: keepalived
		// leaves it out of the ICV only with unicast peers.
		if _, _, err := ah.Open(bytes.Clone(good), !unicast); !errors.Is(err, ErrAuth) {
			t.Errorf("unicast=%v: opened as unicast=%v: %v, want ErrAuth", unicast, !unicast, err)
		}
	}
}

func TestAHErrors(t *testing.T) {
	ah := NewAH(secret1)
	good, err := ah.Append(nil, IPv4{TOS: 0xc0, ID: 7, TTL: 255, Src: src4, Dst: Group4}, 42, &kaAdvert, false)
	if err != nil {
		t.Fatal(err)
	}
	mod := func(f func([]byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"ipv6", mod(func(b []byte) []byte { b[0] = 0x65; return b }), ErrFamily},
		{"short ihl", mod(func(b []byte) []byte { b[0] = 0x44; return b }), ErrLength},
		{"not AH", mod(func(b []byte) []byte { b[9] = Protocol; return b }), ErrType},
		{"no AH", good[:30], ErrTruncated},
		{"total length", mod(func(b []byte) []byte { return append(b, 0) }), ErrLength},
		{"next header", mod(func(b []byte) []byte { b[20] = 6; return b }), ErrType},
		{"AH length", mod(func(b []byte) []byte { b[21] = 5; return b }), ErrLength},
		{"ICV", mod(func(b []byte) []byte { b[40] ^= 0x80; return b }), ErrAuth},
		{"SPI", mod(func(b []byte) []byte { b[24+3] ^= 1; return b }), ErrAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := ah.Open(tt.b, false); !errors.Is(err, tt.want) {
				t.Errorf("Open error = %v, want %v", err, tt.want)
			}
		})
	}
	// The SPI check: a packet whose ICV covers an SPI that is not its
	// source (another sender's, copied) is refused even with the right
	// password.
	spi := bytes.Clone(good)
	spi[27] ^= 1
	resealed := func(b []byte) []byte { // recompute the ICV over the changed SPI
		clear(b[32:44])
		ah.compute(b, false)
		copy(b[32:44], ah.sum[:icvLen])
		return b
	}(spi)
	if _, _, err := ah.Open(resealed, false); !errors.Is(err, ErrAuth) {
		t.Errorf("SPI not the source: %v, want ErrAuth", err)
	}
	for _, c := range []struct {
		name string
		ip   IPv4
		ad   Advert
		want error
	}{
		{"v3", IPv4{ID: 1, Src: src4, Dst: Group4}, Advert{Version: 3, VRID: 1, Priority: 1, Interval: time.Second, Addrs: addrs("10.0.0.1")}, ErrVersion},
		{"ipv6", IPv4{ID: 1, Src: src6, Dst: Group6}, kaAdvert, ErrFamily},
		{"bad advert", IPv4{ID: 1, Src: src4, Dst: Group4}, Advert{Version: 2, Interval: time.Second}, ErrAddrs},
	} {
		if b, err := ah.Append([]byte{1}, c.ip, 1, &c.ad, false); !errors.Is(err, c.want) || len(b) != 1 {
			t.Errorf("%s: Append = %d bytes, %v; want the input and %v", c.name, len(b), err, c.want)
		}
	}
}

func TestAHAppendAllocatesNothing(t *testing.T) {
	ah := NewAH(secret1)
	buf := make([]byte, 0, 256)
	ip := IPv4{TOS: 0xc0, ID: 7, TTL: 255, Src: src4, Dst: Group4}
	if n := testing.AllocsPerRun(100, func() { buf, _ = ah.Append(buf[:0], ip, 1, &kaAdvert, false) }); n != 0 {
		t.Errorf("Append: %.1f allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _, _ = ah.Open(buf, false) }); n != 0 {
		t.Errorf("Open: %.1f allocations, want 0", n)
	}
}

// FuzzAHOpen opens arbitrary packets: Open must not panic, must leave the
// packet as it was, and what it accepts (the fuzzer cannot forge an ICV,
// so mostly the seeds) must give an advert that seals again to the same
// bytes.
func FuzzAHOpen(f *testing.F) {
	ah := NewAH(secret1)
	for _, unicast := range []bool{false, true} {
		b, _ := ah.Append(nil, IPv4{TOS: 0xc0, ID: 7, TTL: 255, Src: src4, Dst: Group4}, 42, &kaAdvert, unicast)
		f.Add(b, unicast)
	}
	f.Fuzz(func(t *testing.T, b []byte, unicast bool) {
		orig := bytes.Clone(b)
		msg, hdr, err := ah.Open(b, unicast)
		if !bytes.Equal(b, orig) {
			t.Fatalf("Open changed the packet")
		}
		if err != nil {
			return
		}
		src, dst := netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
		ad, err := Parse(msg, src, dst, false)
		if err != nil || b[0] != 0x45 {
			return // authentic but not an advert ctha sends (or IP options)
		}
		ip := IPv4{TOS: b[1], ID: uint16(b[4])<<8 | uint16(b[5]), TTL: b[8], Src: src, Dst: dst}
		out, err := ah.Append(nil, ip, hdr.Seq, &ad, unicast)
		if err != nil {
			t.Fatalf("accepted advert does not seal: %v", err)
		}
		in := bytes.Clone(b)
		in[6], in[7], in[10], in[11] = 0, 0, 0, 0
		if !bytes.Equal(in, out) {
			t.Fatalf("sealing again differs:\n in %x\nout %x", in, out)
		}
	})
}
