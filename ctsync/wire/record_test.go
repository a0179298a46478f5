package wire

import (
	"bytes"
	"errors"
	"math"
	"net/netip"
	"strings"
	"testing"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/google/go-cmp/cmp"
)

var (
	cl4  = netip.MustParseAddr("10.10.1.100")
	srv4 = netip.MustParseAddr("10.10.2.100")
	vip4 = netip.MustParseAddr("192.0.2.1")
	cl6  = netip.MustParseAddr("fd00:10:1::100")
	srv6 = netip.MustParseAddr("fd00:10:2::100")
	vip6 = netip.MustParseAddr("2001:db8::1")
)

// established is an IPv4 or IPv6 TCP flow without NAT, as conntrack shows
// it once established: the flow of the size goal.
func established(src, dst netip.Addr) ct.Flow {
	o := ct.NewTuple(ct.ProtoTCP, src, dst, 40000, 5001)
	return ct.Flow{
		Orig: o, Reply: o.Reverse(),
		Status:  ct.StatusSeenReply | ct.StatusAssured | ct.StatusConfirmed | ct.StatusSrcNATDone | ct.StatusDstNATDone,
		Timeout: 431999,
		TCP:     ct.TCPInfo{State: ct.TCPEstablished, WScaleOrig: 7, WScaleRepl: 7, FlagsOrig: 0x23, FlagsRepl: 0x23},
	}
}

func udp(src, dst netip.Addr) ct.Flow {
	o := ct.NewTuple(ct.ProtoUDP, src, dst, 53000, 53)
	return ct.Flow{Orig: o, Reply: o.Reverse(), Status: 0x18e, Timeout: 180}
}

// echo is a ping and its reply tuple, which has the echo reply type.
func echo(src, dst netip.Addr) ct.Flow {
	f := ct.Flow{Orig: ct.NewICMPTuple(src, dst, 8, 0, 0x1234), Status: 0x18a, Timeout: 30}
	f.Reply = ct.NewICMPTuple(dst, src, 0, 0, 0x1234)
	if src.Is6() {
		f.Orig = ct.NewICMPTuple(src, dst, 128, 0, 0x1234)
		f.Reply = ct.NewICMPTuple(dst, src, 129, 0, 0x1234)
	}
	return f
}

func snat(f ct.Flow, to netip.Addr, port uint16) ct.Flow {
	f.Reply.Dst = to.As16()
	if !f.Orig.IsICMP() {
		f.Reply.DstPort = port
	} else {
		f.Reply.SrcPort = port
	}
	f.Status |= ct.StatusSrcNAT
	return f
}

func dnat(f ct.Flow, to netip.Addr, port uint16) ct.Flow {
	f.Reply.Src = to.As16()
	f.Reply.SrcPort = port
	f.Status |= ct.StatusDstNAT
	return f
}

func with(f ct.Flow, change func(*ct.Flow)) ct.Flow {
	change(&f)
	return f
}

func proto(p uint8, src, dst netip.Addr, sport, dport uint16) ct.Flow {
	o := ct.NewTuple(p, src, dst, sport, dport)
	return ct.Flow{Orig: o, Reply: o.Reverse(), Status: ct.StatusConfirmed, Timeout: 60}
}

var roundTrips = []struct {
	name string
	flow ct.Flow
}{
	{"ipv4 tcp", established(cl4, srv4)},
	{"ipv6 tcp", established(cl6, srv6)},
	{"ipv4 udp", udp(cl4, srv4)},
	{"ipv6 udp", udp(cl6, srv6)},
	{"ipv4 icmp echo", echo(cl4, srv4)},
	{"ipv6 icmp echo", echo(cl6, srv6)},
	{"icmp timestamp", with(echo(cl4, srv4), func(f *ct.Flow) { f.Orig.DstPort, f.Reply.DstPort = 13<<8, 14<<8 })},
	{"icmp timestamp reply type kept", with(echo(cl4, srv4), func(f *ct.Flow) { f.Orig.DstPort, f.Reply.DstPort = 13<<8, 13<<8 })},
	{"icmp echo code 1", with(echo(cl4, srv4), func(f *ct.Flow) { f.Orig.DstPort, f.Reply.DstPort = 8<<8|1, 0<<8|1 })},
	{"icmp unreachable", with(echo(cl4, srv4), func(f *ct.Flow) { f.Orig.DstPort, f.Reply.DstPort = 3<<8|3, 3<<8|3 })},
	{"icmpv6 node info", with(echo(cl6, srv6), func(f *ct.Flow) { f.Orig.DstPort, f.Reply.DstPort = 139<<8, 140<<8 })},
	{"icmp echo snat id", snat(echo(cl4, srv4), vip4, 0x4321)},
	{"icmpv6 echo snat", snat(echo(cl6, srv6), vip6, 0x1234)},
	{"sctp", with(proto(ct.ProtoSCTP, cl4, srv4, 2905, 2905), func(f *ct.Flow) {
		f.Extra = &ct.Extra{SCTPState: 3, SCTPVTagOrig: 0xdeadbeef, SCTPVTagR: 0x01020304}
	})},
	{"dccp", with(proto(ct.ProtoDCCP, cl6, srv6, 5004, 5005), func(f *ct.Flow) {
		f.Extra = &ct.Extra{DCCPState: 4, DCCPRole: 1, DCCPHandshakeSeq: 1<<48 - 1}
	})},
	{"gre", proto(ct.ProtoGRE, cl4, srv4, 0x0001, 0x8000)},
	{"udplite", proto(ct.ProtoUDPLite, cl6, srv6, 1, 2)},
	{"esp no ports", proto(50, cl4, srv4, 0, 0)},
	{"snat", snat(established(cl4, srv4), vip4, 61000)},
	{"dnat", dnat(established(cl4, vip4), srv4, 8080)},
	{"snat and dnat", dnat(snat(established(cl4, vip4), vip4, 61000), srv4, 8080)},
	{"ipv6 snat and dnat", dnat(snat(established(cl6, vip6), vip6, 61000), srv6, 8080)},
	{"reply of another protocol's form", with(udp(cl4, srv4), func(f *ct.Flow) { f.Reply.SrcPort = 0 })},
	{"mark", with(udp(cl4, srv4), func(f *ct.Flow) { f.Mark = 0x2a })},
	{"mark max", with(udp(cl4, srv4), func(f *ct.Flow) { f.Mark = 0xffffffff })},
	{"zone", with(udp(cl4, srv4), func(f *ct.Flow) { f.Zone = 1 })},
	{"zone max", with(established(cl6, srv6), func(f *ct.Flow) { f.Zone = 0xffff })},
	{"labels low", with(udp(cl4, srv4), func(f *ct.Flow) { f.Extra = &ct.Extra{Labels: [16]byte{0: 0x05}} })},
	{"labels high", with(udp(cl4, srv4), func(f *ct.Flow) { f.Extra = &ct.Extra{Labels: [16]byte{15: 0x80}} })},
	{"labels all", with(udp(cl4, srv4), func(f *ct.Flow) {
		f.Extra = &ct.Extra{Labels: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}}
	})},
	{"helper", with(established(cl4, srv4), func(f *ct.Flow) { f.Extra = &ct.Extra{Helper: "ftp"} })},
	{"long helper", with(established(cl6, srv6), func(f *ct.Flow) { f.Extra = &ct.Extra{Helper: strings.Repeat("h", 300)} })},
	{"seqadj orig", with(established(cl4, srv4), func(f *ct.Flow) {
		f.Extra = &ct.Extra{Helper: "ftp", SeqAdjOrig: ct.SeqAdj{Position: 0x12345678, OffsetBefore: 0, OffsetAfter: 3}}
	})},
	{"seqadj reply max", with(established(cl4, srv4), func(f *ct.Flow) {
		f.Extra = &ct.Extra{SeqAdjRepl: ct.SeqAdj{Position: 0xffffffff, OffsetBefore: 0xffffffff, OffsetAfter: 0xffffffff}}
	})},
	{"every extra", with(snat(established(cl6, srv6), vip6, 1), func(f *ct.Flow) {
		f.Zone, f.Mark = 7, 0x80000000
		f.Extra = &ct.Extra{
			Labels: [16]byte{3: 1}, Helper: "sip",
			SeqAdjOrig: ct.SeqAdj{Position: 1, OffsetBefore: 2, OffsetAfter: 3},
			SeqAdjRepl: ct.SeqAdj{Position: 4, OffsetBefore: 5, OffsetAfter: 6},
			SCTPState:  1, SCTPVTagOrig: 2, SCTPVTagR: 3,
			DCCPState: 4, DCCPRole: 5, DCCPHandshakeSeq: 6,
		}
	})},
	{"tcp state only", with(established(cl4, srv4), func(f *ct.Flow) { f.TCP = ct.TCPInfo{State: ct.TCPSynSent} })},
	{"tcp wscale orig", with(established(cl4, srv4), func(f *ct.Flow) { f.TCP = ct.TCPInfo{WScaleOrig: 14} })},
	{"tcp wscale reply", with(established(cl4, srv4), func(f *ct.Flow) { f.TCP = ct.TCPInfo{WScaleRepl: 255} })},
	{"tcp flags orig", with(established(cl4, srv4), func(f *ct.Flow) { f.TCP = ct.TCPInfo{FlagsOrig: 0x7f} })},
	{"tcp flags reply", with(established(cl4, srv4), func(f *ct.Flow) { f.TCP = ct.TCPInfo{FlagsRepl: 0xff} })},
	{"tcp no state", with(established(cl4, srv4), func(f *ct.Flow) { f.TCP = ct.TCPInfo{} })},
	{"tcp time wait", with(established(cl4, srv4), func(f *ct.Flow) { f.TCP.State, f.Timeout = ct.TCPTimeWait, 120 })},
	{"status none", with(udp(cl4, srv4), func(f *ct.Flow) { f.Status = 0 })},
	{"status every bit", with(udp(cl4, srv4), func(f *ct.Flow) { f.Status = 0xffff })},
	{"status max", with(udp(cl4, srv4), func(f *ct.Flow) { f.Status = 0xffffffff })},
	{"timeout none", with(udp(cl4, srv4), func(f *ct.Flow) { f.Timeout = 0 })},
	{"timeout 127", with(udp(cl4, srv4), func(f *ct.Flow) { f.Timeout = 127 })},
	{"timeout 128", with(udp(cl4, srv4), func(f *ct.Flow) { f.Timeout = 128 })},
	{"timeout max", with(udp(cl4, srv4), func(f *ct.Flow) { f.Timeout = 0xffffffff })},
	{"ipv6 v4-mapped looking", with(udp(cl6, srv6), func(f *ct.Flow) { f.Orig.Src = netip.MustParseAddr("::ffff:1.2.3.4").As16() })},
}

func TestUpdateRoundTrip(t *testing.T) {
	prefix := []byte("prefix")
	for _, tt := range roundTrips {
		t.Run(tt.name, func(t *testing.T) {
			b := AppendUpdate(bytes.Clone(prefix), &tt.flow)
			if !bytes.HasPrefix(b, prefix) {
				t.Fatalf("AppendUpdate overwrote its buffer: %x", b)
			}
			r, rest, err := ParseRecord(b[len(prefix):])
			if err != nil {
				t.Fatalf("ParseRecord(%x): %v", b[len(prefix):], err)
			}
			if diff := cmp.Diff(Record{Kind: KindUpdate, Flow: tt.flow}, r); diff != "" {
				t.Errorf("record %x (-want +got):\n%s", b[len(prefix):], diff)
			}
			if len(rest) != 0 {
				t.Errorf("rest = %x, want nothing", rest)
			}
		})
	}
}

func TestEmptyExtraIsNil(t *testing.T) {
	f := with(udp(cl4, srv4), func(f *ct.Flow) { f.Extra = &ct.Extra{} })
	b := AppendUpdate(nil, &f)
	r, _, err := ParseRecord(b)
	if err != nil || r.Flow.Extra != nil || !r.Flow.Equal(&f) {
		t.Errorf("ParseRecord = %v, %v; want the flow with a nil Extra", &r.Flow, err)
	}
	g := udp(cl4, srv4)
	if c := AppendUpdate(nil, &g); !bytes.Equal(b, c) {
		t.Errorf("an empty Extra changes the record: %x vs %x", b, c)
	}
}

func TestTCPInfoOnlyForTCP(t *testing.T) {
	f := with(udp(cl4, srv4), func(f *ct.Flow) { f.TCP.State = ct.TCPEstablished })
	r, _, err := ParseRecord(AppendUpdate(nil, &f))
	if err != nil || r.Flow.TCP != (ct.TCPInfo{}) {
		t.Errorf("UDP flow with TCP state: got %+v, %v; want no TCP state", r.Flow.TCP, err)
	}
}

func TestDestroyRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		name string
		key  ct.Key
	}{
		{"ipv4", ct.Key{Orig: established(cl4, srv4).Orig}},
		{"ipv6 zone", ct.Key{Orig: established(cl6, srv6).Orig, Zone: 300}},
		{"icmp", ct.Key{Orig: echo(cl4, srv4).Orig, Zone: 0xffff}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := AppendDestroy(nil, tt.key)
			r, rest, err := ParseRecord(b)
			if err != nil {
				t.Fatalf("ParseRecord(%x): %v", b, err)
			}
			want := Record{Kind: KindDestroy, Flow: ct.Flow{Orig: tt.key.Orig, Zone: tt.key.Zone}}
			if diff := cmp.Diff(want, r); diff != "" || len(rest) != 0 {
				t.Errorf("record %x, rest %x (-want +got):\n%s", b, rest, diff)
			}
		})
	}
}

func TestManyRecords(t *testing.T) {
	var (
		b    []byte
		want []Record
	)
	for i, tt := range roundTrips {
		b = AppendUpdate(b, &tt.flow)
		want = append(want, Record{Kind: KindUpdate, Flow: tt.flow})
		if i%3 == 0 {
			b = AppendDestroy(b, tt.flow.Key())
			want = append(want, Record{Kind: KindDestroy, Flow: ct.Flow{Orig: tt.flow.Orig, Zone: tt.flow.Zone}})
		}
	}
	var got []Record
	for len(b) > 0 {
		r, rest, err := ParseRecord(b)
		if err != nil {
			t.Fatalf("record %d: %v", len(got), err)
		}
		got, b = append(got, r), rest
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
}

// TestSizes pins the size of typical records. The IPv4 TCP update is the
// spec's goal: at most 32 bytes (conntrackd 1.4.7: 60).
func TestSizes(t *testing.T) {
	for _, tt := range []struct {
		name string
		b    []byte
		want int
	}{
		{"ipv4 tcp established", AppendUpdate(nil, ptr(established(cl4, srv4))), 26},
		{"ipv6 tcp established", AppendUpdate(nil, ptr(established(cl6, srv6))), 50},
		{"ipv4 udp", AppendUpdate(nil, ptr(udp(cl4, srv4))), 20},
		{"ipv6 udp", AppendUpdate(nil, ptr(udp(cl6, srv6))), 44},
		{"ipv4 icmp echo", AppendUpdate(nil, ptr(echo(cl4, srv4))), 19},
		{"ipv4 tcp snat", AppendUpdate(nil, ptr(snat(established(cl4, srv4), vip4, 61000))), 38},
		{"ipv4 tcp snat+dnat", AppendUpdate(nil, ptr(dnat(snat(established(cl4, vip4), vip4, 61000), srv4, 80))), 38},
		{"ipv4 tcp ftp helper", AppendUpdate(nil, ptr(with(established(cl4, srv4), func(f *ct.Flow) { f.Extra = &ct.Extra{Helper: "ftp"} }))), 31},
		{"ipv4 destroy", AppendDestroy(nil, ptr(established(cl4, srv4)).Key()), 16},
		{"ipv6 destroy", AppendDestroy(nil, ptr(established(cl6, srv6)).Key()), 40},
	} {
		t.Logf("%-22s %3d bytes", tt.name, len(tt.b))
		if len(tt.b) != tt.want {
			t.Errorf("%s: %d bytes, want %d: %x", tt.name, len(tt.b), tt.want, tt.b)
		}
	}
	if n := len(AppendUpdate(nil, ptr(established(cl4, srv4)))); n > 32 {
		t.Errorf("IPv4 TCP established update is %d bytes, the goal is at most 32", n)
	}
}

func ptr(f ct.Flow) *ct.Flow { return &f }

func TestAllocs(t *testing.T) {
	f := snat(established(cl6, srv6), vip6, 1)
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { buf = AppendUpdate(buf[:0], &f) }); n != 0 {
		t.Errorf("AppendUpdate: %v allocs, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { buf = AppendDestroy(buf[:0], f.Key()) }); n != 0 {
		t.Errorf("AppendDestroy: %v allocs, want 0", n)
	}
	b := AppendUpdate(nil, &f)
	if n := testing.AllocsPerRun(100, func() { _, _, _ = ParseRecord(b) }); n != 0 {
		t.Errorf("ParseRecord: %v allocs, want 0", n)
	}
}

func TestWriteAckRoundTrip(t *testing.T) {
	f := established(cl4, srv4)
	for _, token := range []uint32{0, 1, 127, 128, 1 << 20, math.MaxUint32} {
		b := AppendUpdate(nil, &f)
		b = AppendWriteAck(b, token)
		_, rest, err := ParseRecord(b)
		if err != nil {
			t.Fatalf("update: %v", err)
		}
		r, rest, err := ParseRecord(rest)
		if err != nil || len(rest) != 0 {
			t.Fatalf("write ack %d: %v (rest %x)", token, err, rest)
		}
		if want := (Record{Kind: KindWriteAck, Token: token}); !cmp.Equal(want, r) {
			t.Errorf("write ack %d: got %+v", token, r)
		}
	}
	for name, body := range map[string][]byte{
		"2^32":          {0x80, 0x80, 0x80, 0x80, 0x10}, // not truncated to 32 bits
		"overlong zero": {0x80, 0x00},
		"trailing byte": {0x01, 0x00},
	} {
		b := append([]byte{byte(KindWriteAck), byte(len(body))}, body...)
		if _, _, err := ParseRecord(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("write ack %s: err %v, want ErrMalformed", name, err)
		}
	}
}
