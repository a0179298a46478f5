package ctdwire

import (
	"bytes"
	"github.com/ctha/ctha/internal/hexfile"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/google/go-cmp/cmp"
)

// readHex reads a golden file (package hexfile).
func readHex(t testing.TB, path string) []byte { return hexfile.Read(t, path) }

var (
	cl4, srv4, vip4 = netip.MustParseAddr("10.10.1.100"), netip.MustParseAddr("10.10.2.100"), netip.MustParseAddr("10.10.2.1")
	cl6, srv6, vip6 = netip.MustParseAddr("fd00:10:1::100"), netip.MustParseAddr("fd00:10:2::100"), netip.MustParseAddr("fd00:10:2::1")
)

// flow builds a flow without NAT.
func flow(orig ct.Tuple, status, timeout uint32) ct.Flow {
	f := ct.Flow{Orig: orig, Status: status, Timeout: timeout}
	invert(&f.Reply, &f.Orig)
	return f
}

func with(f ct.Flow, fn func(*ct.Flow)) ct.Flow { fn(&f); return f }

// Flows of the golden files (conntrack -I in the daemon's namespace).
var (
	gTCPSNAT = with(flow(ct.NewTuple(ct.ProtoTCP, netip.MustParseAddr("10.10.1.101"), srv4, 40000, 5001), 0x19e, 300), func(f *ct.Flow) {
		f.Reply.Dst, f.Reply.DstPort = vip4.As16(), 61000
		f.TCP.State = ct.TCPEstablished
	})
	gUDPDNAT = with(flow(ct.NewTuple(ct.ProtoUDP, netip.MustParseAddr("10.10.1.102"), vip4, 40001, 53), 0x1a8, 30), func(f *ct.Flow) {
		f.Reply.Src, f.Reply.SrcPort = srv4.As16(), 5353
		f.Mark = 7
	})
	gICMP   = flow(ct.NewICMPTuple(cl4, srv4, 8, 0, 77), 0x8, 30)
	gTCP6   = with(flow(ct.NewTuple(ct.ProtoTCP, cl6, srv6, 40000, 5001), 0x8, 120), func(f *ct.Flow) { f.TCP.State = ct.TCPSynSent })
	gUDP6   = with(flow(ct.NewTuple(ct.ProtoUDP, cl6, vip6, 40000, 53), 0x1a8, 30), func(f *ct.Flow) { f.Reply.Src = srv6.As16() })
	gICMP6  = flow(ct.NewICMPTuple(cl6, srv6, 128, 0, 9), 0x8, 30)
	gTCPEst = with(flow(ct.NewTuple(ct.ProtoTCP, cl4, srv4, 40000, 5001), 0xe, 300), func(f *ct.Flow) { f.TCP.State = ct.TCPEstablished })
	gUDP    = flow(ct.NewTuple(ct.ProtoUDP, cl4, srv4, 40001, 53), 0x8, 30)
)

type gmsg struct {
	Type     Type
	Flags    Flags
	Flow     ct.Flow
	From, To uint32
}

// TestGolden decodes datagrams captured from a real conntrackd 1.4.7 to
// the flows it was given, and checks that re-encoding each message's
// State gives its bytes back.
func TestGolden(t *testing.T) {
	p := func(f ct.Flow) ct.Flow { return f }
	for _, tt := range []struct {
		file string
		want []gmsg
	}{
		{"alive-hello.hex", []gmsg{{Type: TypeCtl, Flags: FlagAlive | FlagHello}}},
		{"ctd-first-ack-hello.hex", []gmsg{{Type: TypeCtl, Flags: FlagAck | FlagHello | FlagHelloBack, From: 1796669219, To: 1796669219}}},
		{"ctd-ack.hex", []gmsg{{Type: TypeCtl, Flags: FlagAck, From: 1796669220, To: 1796669220}}},
		{"ctd-nack.hex", []gmsg{{Type: TypeCtl, Flags: FlagNack, From: 1796669223, To: 1796669223}}},
		{"ctd-resync.hex", []gmsg{{Type: TypeCtl, Flags: FlagResync, From: 0, To: 0}}},
		{"ipv4-tcp-snat.hex", []gmsg{{Type: TypeCTNew, Flags: FlagHello, Flow: p(gTCPSNAT)}}},
		{"ipv4-udp-dnat-mark.hex", []gmsg{{Type: TypeCTNew, Flags: FlagHello, Flow: p(gUDPDNAT)}}},
		{"ipv4-icmp-echo.hex", []gmsg{{Type: TypeCTNew, Flags: FlagHello, Flow: p(gICMP)}}},
		{"ipv6-tcp-synsent.hex", []gmsg{{Type: TypeCTNew, Flags: FlagHello, Flow: p(gTCP6)}}},
		{"ipv6-udp-dnat.hex", []gmsg{{Type: TypeCTNew, Flags: FlagHello, Flow: p(gUDP6)}}},
		{"ipv6-icmpv6-echo.hex", []gmsg{{Type: TypeCTNew, Flags: FlagHello, Flow: p(gICMP6)}}},
		{"ipv4-udp-del.hex", []gmsg{{Type: TypeCTDel, Flags: FlagHello, Flow: p(gUDPDNAT)}}},
		{"ipv4-udp-zone.hex", []gmsg{{Type: TypeCTNew, Flow: p(with(flow(ct.NewTuple(ct.ProtoUDP, netip.MustParseAddr("10.10.1.104"), srv4, 40004, 53), 0x8, 30),
			func(f *ct.Flow) { f.Zone = 9 }))}}},
		{"bulk.hex", []gmsg{
			{Type: TypeCTNew, Flags: FlagHello, Flow: p(gICMP)}, {Type: TypeCTNew, Flags: FlagHello, Flow: p(gUDP6)},
			{Type: TypeCTDel, Flags: FlagHello, Flow: p(gUDPDNAT)}, {Type: TypeCTNew, Flags: FlagHello, Flow: p(gUDP)},
			{Type: TypeCTNew, Flags: FlagHello, Flow: p(gICMP6)}, {Type: TypeCTNew, Flags: FlagHello, Flow: p(gTCP6)},
			{Type: TypeCTNew, Flags: FlagHello, Flow: p(gTCPSNAT)}, {Type: TypeCTNew, Flags: FlagHello, Flow: p(gTCPEst)},
		}},
	} {
		t.Run(tt.file, func(t *testing.T) {
			b := readHex(t, filepath.Join("testdata", "golden", tt.file))
			msgs, err := ParseDatagram(nil, b)
			if err != nil {
				t.Fatal(err)
			}
			var got []gmsg
			var again []byte
			for _, m := range msgs {
				g := gmsg{Type: m.Type, Flags: m.Flags, From: m.From, To: m.To}
				if m.Type.IsState() {
					f, d, err := m.Flow()
					if err != nil {
						t.Fatalf("%v: %v", &m, err)
					}
					if d != 0 {
						t.Errorf("%v: dropped %v", &m, d)
					}
					g.Flow = f
					s, _ := ParseState(m.Attrs)
					m.Attrs = AppendState(nil, &s)
				}
				got = append(got, g)
				again = AppendMsg(again, &m)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("decoded (-want +got):\n%s", diff)
			}
			if !bytes.Equal(again, b) {
				t.Errorf("re-encoded:\n got %x\nwant %x", again, b)
			}
			// What StateOf writes for the flow is what conntrackd wrote,
			// but for the SYNPROXY attribute (zeros, always sent by
			// conntrackd) and the window scales (sent by us always).
			for _, m := range msgs {
				if !m.Type.IsState() {
					continue
				}
				want, _ := ParseState(m.Attrs)
				f, _, _ := m.Flow()
				s, d := StateOf(&f)
				if d != 0 {
					t.Errorf("StateOf dropped %v", d)
				}
				want.Has &^= HasSynproxy
				if f.Orig.Proto == ct.ProtoTCP {
					want.Has |= HasWScaleOrig | HasWScaleRepl
				}
				if diff := cmp.Diff(want, s, addrCmp); diff != "" {
					t.Errorf("StateOf (-conntrackd +ours):\n%s", diff)
				}
			}
		})
	}
}

var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
