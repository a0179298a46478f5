package ctsync

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/ctha/ctha/ctsync/ct"
)

func pkt4(proto uint8, src, dst string, l4 []byte) []byte {
	b := make([]byte, 20, 20+len(l4))
	b[0], b[9] = 0x45, proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	return append(b, l4...)
}

func pkt6(next uint8, src, dst string, l4 []byte) []byte {
	b := make([]byte, 40, 40+len(l4))
	b[0], b[6] = 0x60, next
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	return append(b, l4...)
}

func tcpHdr(sport, dport uint16, flags byte) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b, sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	b[12], b[13] = 5<<4, flags
	return b
}

func TestHeaderFlow(t *testing.T) {
	c4, s4 := netip.MustParseAddr("10.10.1.100"), netip.MustParseAddr("10.10.2.100")
	c6, s6 := netip.MustParseAddr("fd00:10:1::100"), netip.MustParseAddr("fd00:10:2::100")
	udp := make([]byte, 8)
	binary.BigEndian.PutUint16(udp, 5353)
	binary.BigEndian.PutUint16(udp[2:], 53)
	echo := []byte{8, 0, 0, 0, 0x12, 0x34, 0, 1}
	echo6 := []byte{128, 0, 0, 0, 0x12, 0x34, 0, 1}
	// A hop-by-hop options header (8 bytes) before TCP.
	hbh := append([]byte{ct.ProtoTCP, 0, 0, 0, 0, 0, 0, 0}, tcpHdr(40000, 443, 0x02)...)
	frag := pkt4(ct.ProtoTCP, "10.10.1.100", "10.10.2.100", tcpHdr(40000, 443, 0x02))
	binary.BigEndian.PutUint16(frag[6:], 185) // a later fragment
	for _, tc := range []struct {
		name  string
		pkt   []byte
		kind  heldKind
		orig  ct.Tuple
		state uint8
		err   error
	}{
		{"syn", pkt4(ct.ProtoTCP, "10.10.1.100", "10.10.2.100", tcpHdr(40000, 443, 0x02)), heldSYN,
			ct.NewTuple(ct.ProtoTCP, c4, s4, 40000, 443), ct.TCPSynSent, nil},
		{"syn-ack: the original tuple reversed", pkt4(ct.ProtoTCP, "10.10.2.100", "10.10.1.100", tcpHdr(443, 40000, 0x12)), heldSYNACK,
			ct.NewTuple(ct.ProtoTCP, c4, s4, 40000, 443), ct.TCPSynRecv, nil},
		{"syn with ece and cwr", pkt4(ct.ProtoTCP, "10.10.1.100", "10.10.2.100", tcpHdr(40000, 443, 0xc2)), heldSYN,
			ct.NewTuple(ct.ProtoTCP, c4, s4, 40000, 443), ct.TCPSynSent, nil},
		{"ipv6 syn after hop-by-hop", pkt6(0, "fd00:10:1::100", "fd00:10:2::100", hbh), heldSYN,
			ct.NewTuple(ct.ProtoTCP, c6, s6, 40000, 443), ct.TCPSynSent, nil},
		{"ipv6 syn-ack", pkt6(ct.ProtoTCP, "fd00:10:2::100", "fd00:10:1::100", tcpHdr(443, 40000, 0x12)), heldSYNACK,
			ct.NewTuple(ct.ProtoTCP, c6, s6, 40000, 443), ct.TCPSynRecv, nil},
		{"udp", pkt4(ct.ProtoUDP, "10.10.1.100", "10.10.2.100", udp), heldFirst,
			ct.NewTuple(ct.ProtoUDP, c4, s4, 5353, 53), 0, nil},
		{"echo request", pkt4(ct.ProtoICMP, "10.10.1.100", "10.10.2.100", echo), heldFirst,
			ct.NewICMPTuple(c4, s4, 8, 0, 0x1234), 0, nil},
		{"icmpv6 echo request", pkt6(ct.ProtoICMPv6, "fd00:10:1::100", "fd00:10:2::100", echo6), heldFirst,
			ct.NewICMPTuple(c6, s6, 128, 0, 0x1234), 0, nil},
		{"data", pkt4(ct.ProtoTCP, "10.10.1.100", "10.10.2.100", tcpHdr(40000, 443, 0x18)), 0, ct.Tuple{}, 0, errNotHeld},
		{"rst", pkt4(ct.ProtoTCP, "10.10.1.100", "10.10.2.100", tcpHdr(40000, 443, 0x04)), 0, ct.Tuple{}, 0, errNotHeld},
		{"echo reply", pkt4(ct.ProtoICMP, "10.10.1.100", "10.10.2.100", []byte{0, 0, 0, 0, 0x12, 0x34, 0, 1}), 0, ct.Tuple{}, 0, errNotHeld},
		{"later fragment", frag, 0, ct.Tuple{}, 0, errNotHeld},
		{"gre", pkt4(47, "10.10.1.100", "10.10.2.100", make([]byte, 8)), 0, ct.Tuple{}, 0, errNotHeld},
		{"truncated tcp", pkt4(ct.ProtoTCP, "10.10.1.100", "10.10.2.100", make([]byte, 10)), 0, ct.Tuple{}, 0, errShort},
		{"truncated ipv6", make([]byte, 30), 0, ct.Tuple{}, 0, errNotHeld},
		{"empty", nil, 0, ct.Tuple{}, 0, errShort},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "truncated ipv6" {
				tc.pkt[0] = 0x60
				tc.err = errShort
			}
			f, kind, err := headerFlow(tc.pkt)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if kind != tc.kind || f.Orig != tc.orig || f.TCP.State != tc.state || f.Timeout == 0 {
				t.Errorf("kind %d orig %v state %d timeout %d, want kind %d orig %v state %d", kind, f.Orig, f.TCP.State, f.Timeout,
					tc.kind, tc.orig, tc.state)
			}
			if !f.Orig.IsICMP() && f.Reply != f.Orig.Reverse() {
				t.Errorf("reply %v, want the original reversed", f.Reply)
			}
		})
	}
}

// FuzzHeaderFlow: any bytes give a flow or an error, never a panic, and a
// flow is of the packet's addresses.
func FuzzHeaderFlow(f *testing.F) {
	f.Add(pkt4(ct.ProtoTCP, "10.10.1.100", "10.10.2.100", tcpHdr(40000, 443, 0x02)))
	f.Add(pkt6(0, "fd00:10:1::100", "fd00:10:2::100", append([]byte{ct.ProtoTCP, 0, 0, 0, 0, 0, 0, 0}, tcpHdr(1, 2, 0x12)...)))
	f.Fuzz(func(t *testing.T, b []byte) {
		fl, kind, err := headerFlow(b)
		if err != nil {
			return
		}
		if kind == 0 || fl.Orig.Proto == 0 {
			t.Fatalf("flow %v of kind %d without an error", fl, kind)
		}
	})
}
