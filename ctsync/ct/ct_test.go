package ct

import (
	"net/netip"
	"testing"
	"unsafe"
)

var (
	cl  = netip.MustParseAddr("10.10.1.100")
	srv = netip.MustParseAddr("10.10.2.100")
	vip = netip.MustParseAddr("10.10.2.1")
)

func TestTupleAddresses(t *testing.T) {
	tu := NewTuple(ProtoTCP, cl, srv, 40000, 5001)
	if tu.SrcAddr() != cl || tu.DstAddr() != srv || tu.V6 {
		t.Errorf("IPv4 tuple = %v", tu)
	}
	six := NewTuple(ProtoUDP, netip.MustParseAddr("fd00:10:1::100"), netip.MustParseAddr("fd00:10:2::100"), 1, 2)
	if !six.V6 || six.SrcAddr().String() != "fd00:10:1::100" {
		t.Errorf("IPv6 tuple = %v", six)
	}
	r := tu.Reverse()
	if r.SrcAddr() != srv || r.SrcPort != 5001 || r.DstPort != 40000 {
		t.Errorf("Reverse = %v", r)
	}
}

func TestICMPTuple(t *testing.T) {
	tu := NewICMPTuple(cl, srv, 8, 0, 0x1234)
	typ, code, id := tu.ICMP()
	if tu.Proto != ProtoICMP || typ != 8 || code != 0 || id != 0x1234 {
		t.Errorf("ICMP = %d %d %d proto %d", typ, code, id, tu.Proto)
	}
	if NewICMPTuple(netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2"), 128, 0, 1).Proto != ProtoICMPv6 {
		t.Errorf("IPv6 ICMP tuple is not ICMPv6")
	}
	if r := tu.Reverse(); r.SrcPort != tu.SrcPort || r.DstPort != tu.DstPort {
		t.Errorf("Reverse swapped ICMP id/type: %v", r)
	}
}

func TestNAT(t *testing.T) {
	plain := Flow{Orig: NewTuple(ProtoTCP, cl, srv, 40000, 5001)}
	plain.Reply = plain.Orig.Reverse()
	snat := plain
	snat.Reply = NewTuple(ProtoTCP, srv, vip, 5001, 61000) // masqueraded to the WAN VIP
	dnat := plain
	dnat.Reply = NewTuple(ProtoTCP, netip.MustParseAddr("10.10.2.200"), cl, 8080, 40000)
	for _, tt := range []struct {
		name       string
		f          Flow
		snat, dnat bool
	}{{"none", plain, false, false}, {"snat", snat, true, false}, {"dnat", dnat, false, true}} {
		if tt.f.SrcNAT() != tt.snat || tt.f.DstNAT() != tt.dnat {
			t.Errorf("%s: SrcNAT %v DstNAT %v", tt.name, tt.f.SrcNAT(), tt.f.DstNAT())
		}
	}
}

func TestEqual(t *testing.T) {
	a := Flow{Orig: NewTuple(ProtoTCP, cl, srv, 1, 2), Timeout: 10}
	b := a
	b.Extra = &Extra{}
	if !a.Equal(&b) || !b.Equal(&a) {
		t.Errorf("a nil Extra and an empty one differ")
	}
	b.Extra = &Extra{Helper: "ftp"}
	if a.Equal(&b) {
		t.Errorf("a helper makes no difference")
	}
	c := a
	c.Mark = 1
	if a.Equal(&c) {
		t.Errorf("a mark makes no difference")
	}
}

// TestCompact guards the memory the caches depend on.
func TestCompact(t *testing.T) {
	if s := unsafe.Sizeof(Tuple{}); s != 38 && s != 40 {
		t.Errorf("Tuple is %d bytes, want 38-40", s)
	}
	if s := unsafe.Sizeof(Flow{}); s > 112 {
		t.Errorf("Flow is %d bytes, want at most 112", s)
	}
}
