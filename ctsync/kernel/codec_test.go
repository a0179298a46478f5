package kernel

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"golang.org/x/net/bpf"

	"github.com/ctha/ctha/ctsync/ct"
)

// Pure tests of the encoding: no kernel, no root.

// sentFlow is what a Create of f asks the kernel for, as ti-mo decodes it:
// the NAT-free reply tuple, the status as written, the TCP flags with the
// options applied (and the window scale flag a fixup clears later).
func sentFlow(f ct.Flow, opts WriteOptions) ct.Flow {
	w := f
	w.Reply = natFreeReply(&f)
	w.Status = writeStatus(f.Status)
	if f.Orig.Proto == ct.ProtoTCP {
		w.TCP.FlagsOrig, w.TCP.FlagsRepl = tcpFlags(&f, opts.Liberal)
	}
	if needsWScaleFixup(&f) {
		w.TCP.FlagsOrig |= ct.TCPFlagWindowScale
		w.TCP.FlagsRepl |= ct.TCPFlagWindowScale
	}
	return w
}

func TestEncodeCreateDecodes(t *testing.T) {
	for _, tc := range roundTripCases() {
		for _, opts := range []WriteOptions{{}, {Liberal: true}} {
			t.Run(tc.name, func(t *testing.T) {
				m, err := encodeFlowMsg(Create, &tc.flow, opts)
				if err != nil {
					t.Fatal(err)
				}
				typ, got, err := decodeMessage(m)
				if err != nil {
					t.Fatal(err)
				}
				want := sentFlow(tc.flow, opts)
				if typ != EventNew || !want.Equal(&got) {
					t.Errorf("decoded %v (-want +got):\n%s", typ, cmp.Diff(want, got))
				}
			})
		}
	}
}

// attrs returns a message's top-level attributes by type.
func attrs(t *testing.T, m netlink.Message) (netfilter.Header, map[uint16]netfilter.Attribute) {
	t.Helper()
	h, as, err := netfilter.UnmarshalNetlink(m)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint16]netfilter.Attribute{}
	for _, a := range as {
		out[a.Type] = a
	}
	return h, out
}

// natAttr describes a CTA_NAT_* nest: "" when absent, "null" when empty,
// else "addr port" or "addr".
func natAttr(a netfilter.Attribute, ok bool) string {
	if !ok {
		return ""
	}
	if len(a.Children) == 0 {
		return "null"
	}
	var s string
	for _, c := range a.Children {
		switch c.Type {
		case ctaNATV4MinIP, ctaNATV6MinIP:
			addr, _ := netip.AddrFromSlice(c.Data)
			s = addr.String()
		case ctaNATProto:
			for _, p := range c.Children {
				if p.Type == ctaProtoNATPortMin {
					s += " " + netip.AddrPortFrom(netip.IPv4Unspecified(), p.Uint16()).String()[8:]
				}
			}
		}
	}
	return s
}

func TestEncodeNAT(t *testing.T) {
	cases := map[string][2]string{ // case name: {CTA_NAT_SRC, CTA_NAT_DST}
		"tcp4 established":            {"", ""},
		"snat tcp4 masquerade":        {"192.0.2.1 50006", "null"},
		"snat tcp4 same port":         {"192.0.2.1 40007", "null"},
		"snat udp6":                   {"2001:db8:ff::1 50008", "null"},
		"snat icmp4":                  {"192.0.2.1", "null"},
		"snat icmp4 id remapped":      {"192.0.2.1 900", "null"},
		"dnat udp4 port forward":      {"null", "10.3.0.5 5353"},
		"dnat tcp6":                   {"null", "fd00:3::5 8080"},
		"snat+dnat tcp4":              {"10.3.0.254 60011", "10.3.0.80 8080"},
		"null nat binding":            {"null", "null"},
		"seqadj on snat ftp":          {"192.0.2.1 50017", "null"},
		"zone 7 same tuple as zone 0": {"", ""},
	}
	for _, tc := range roundTripCases() {
		want, ok := cases[tc.name]
		if !ok {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			m, err := encodeFlowMsg(Create, &tc.flow, WriteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			_, as := attrs(t, m)
			src, sok := as[ctaNATSrc]
			dst, dok := as[ctaNATDst]
			if got := [2]string{natAttr(src, sok), natAttr(dst, dok)}; got != want {
				t.Errorf("NAT {src, dst} = %q, want %q", got, want)
			}
		})
	}
}

func TestEncodeUpdateDelete(t *testing.T) {
	f := snat(plain(ct.ProtoTCP, "10.1.0.1", "10.2.0.1", 1, 2), "192.0.2.1", 3)
	f.Zone = 7
	f.Timeout = 0

	m, err := encodeFlowMsg(Update, &f, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h, as := attrs(t, m)
	if h.Flags&(netlink.Create|netlink.Excl) != 0 || h.Flags&netlink.Acknowledge == 0 {
		t.Errorf("update flags %v", h.Flags)
	}
	if a, ok := as[ctaMark]; !ok || a.Uint32() != 0 {
		t.Errorf("update without CTA_MARK 0: %v", as)
	}
	for _, typ := range []uint16{ctaTimeout, ctaTupleReply, ctaNATSrc, ctaNATDst} {
		if _, ok := as[typ]; ok {
			t.Errorf("update has attribute %d", typ)
		}
	}
	if a := as[ctaZone]; a.Uint16() != 7 {
		t.Errorf("update zone %d, want 7", a.Uint16())
	}

	m, err = encodeFlowMsg(Delete, &f, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h, as = attrs(t, m)
	if h.MessageType != msgCTDelete || len(as) != 2 || as[ctaZone].Uint16() != 7 {
		t.Errorf("delete: %v %v", h, as)
	}
	_, got, err := decodeMessage(m)
	if err != nil || got.Orig != f.Orig {
		t.Errorf("delete decodes to %v, %v", &got, err)
	}
}

func TestEncodeInvalid(t *testing.T) {
	f := plain(ct.ProtoTCP, "10.1.0.1", "10.2.0.1", 1, 2)
	f.Reply = plain(ct.ProtoTCP, "fd00::1", "fd00::2", 2, 1).Orig
	if _, err := encodeFlowMsg(Create, &f, WriteOptions{}); !errors.Is(err, ErrInvalidFlow) {
		t.Errorf("mixed families: %v", err)
	}
	g := plain(ct.ProtoTCP, "10.1.0.1", "10.2.0.1", 1, 2)
	if _, err := encodeFlowMsg(Op(9), &g, WriteOptions{}); !errors.Is(err, ErrInvalidFlow) {
		t.Errorf("bad op: %v", err)
	}
}

func TestWriteStatus(t *testing.T) {
	for _, tc := range []struct{ in, want uint32 }{
		{0, ct.StatusConfirmed},
		{stEst, stEst},
		{ct.StatusExpected | ct.StatusSeenReply, ct.StatusConfirmed | ct.StatusSeenReply},
		{1<<16 | 1<<31 | ct.StatusAssured, ct.StatusConfirmed | ct.StatusAssured},
		{ct.StatusDying | ct.StatusSrcNAT | natBit | ct.StatusSeqAdjust | ct.StatusOffload | ct.StatusHelper | ct.StatusFixedTime,
			ct.StatusConfirmed | ct.StatusHelper | ct.StatusFixedTime},
	} {
		if got := writeStatus(tc.in); got != tc.want {
			t.Errorf("writeStatus(%#x) = %#x, want %#x", tc.in, got, tc.want)
		}
	}
}

func TestWScaleFixup(t *testing.T) {
	f := plain(ct.ProtoTCP, "10.1.0.1", "10.2.0.1", 1, 2)
	f.TCP = ct.TCPInfo{State: ct.TCPSynSent, WScaleOrig: 7, FlagsOrig: tcpWS}
	msgs, err := flowMessages(nil, Create, &f, WriteOptions{})
	if err != nil || len(msgs) != 2 {
		t.Fatalf("appendFlowMessages = %d messages, %v; want create + fixup", len(msgs), err)
	}
	_, as := attrs(t, msgs[1])
	tcp := as[ctaProtoInfo].Children[0]
	for _, c := range tcp.Children {
		if c.Type == ctaTCPFlagsRepl && (c.Data[0] != 0 || c.Data[1] != ct.TCPFlagWindowScale|ct.TCPFlagMaxackSet) {
			t.Errorf("fixup reply flags %v, want {0, WINDOW_SCALE|MAXACK_SET}", c.Data)
		}
	}
	g := plain(ct.ProtoTCP, "10.1.0.1", "10.2.0.1", 1, 2) // both directions scale
	if msgs, _ := flowMessages(nil, Create, &g, WriteOptions{}); len(msgs) != 1 {
		t.Errorf("established flow: %d messages, want 1", len(msgs))
	}
}

func TestPortIDFilter(t *testing.T) {
	vm, err := bpf.NewVM(mustDisassemble(t, portIDFilter([]uint32{1234, 0x89abcdef})))
	if err != nil {
		t.Fatal(err)
	}
	for pid, keep := range map[uint32]bool{0: true, 1234: false, 0x89abcdef: false, 1235: true} {
		msg := make([]byte, 20)
		binary.NativeEndian.PutUint32(msg[12:], pid)
		n, err := vm.Run(msg)
		if err != nil || (n != 0) != keep {
			t.Errorf("pid %d: filter returned %d, %v; want keep = %v", pid, n, err, keep)
		}
	}
}

func mustDisassemble(t *testing.T, raw []bpf.RawInstruction) []bpf.Instruction {
	t.Helper()
	prog, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("filter does not disassemble")
	}
	return prog
}

// FuzzEncodeDecode encodes arbitrary flows and decodes them with ti-mo.
func FuzzEncodeDecode(f *testing.F) {
	f.Add([]byte("\x06\x00\x0a\x01\x00\x01\x0a\x02\x00\x01\x9c\x41\x00\x50"), uint32(stEst), uint32(5), true)
	f.Add([]byte("\x01\x01fd00::1fd00::2\x08\x00\x04\xd2"), uint32(0), uint32(0), false)
	f.Fuzz(func(t *testing.T, b []byte, status, mark uint32, v6 bool) {
		next := func(n int) []byte {
			out := make([]byte, n)
			copy(out, b)
			b = b[min(n, len(b)):]
			return out
		}
		protos := []uint8{ct.ProtoTCP, ct.ProtoUDP, ct.ProtoICMP, ct.ProtoSCTP, ct.ProtoDCCP, ct.ProtoGRE}
		proto := protos[int(next(1)[0])%len(protos)]
		addr := func() netip.Addr {
			if v6 {
				a := [16]byte(next(16))
				a[0] = 0xfd // not v4-mapped: the tuple's family follows its source
				return netip.AddrFrom16(a)
			}
			return netip.AddrFrom4([4]byte(next(4)))
		}
		if proto == ct.ProtoICMP && v6 {
			proto = ct.ProtoICMPv6
		}
		p := next(8)
		o := ct.NewTuple(proto, addr(), addr(), binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:]))
		r := ct.NewTuple(proto, addr(), addr(), binary.BigEndian.Uint16(p[4:]), binary.BigEndian.Uint16(p[6:]))
		fl := ct.Flow{Orig: o, Reply: r, Status: status, Mark: mark, Timeout: status >> 8, Zone: uint16(mark)}
		x := next(12)
		if proto == ct.ProtoTCP {
			fl.TCP = ct.TCPInfo{State: x[0], WScaleOrig: x[1], WScaleRepl: x[2], FlagsOrig: x[3], FlagsRepl: x[4]}
		}
		if x[5]&1 != 0 {
			fl.Extra = &ct.Extra{Labels: [16]byte(next(16)), Helper: string(next(int(x[6] % 8))),
				SeqAdjOrig: ct.SeqAdj{Position: uint32(x[7]), OffsetAfter: uint32(x[8])}, SCTPState: x[9], SCTPVTagOrig: uint32(x[10]),
				DCCPState: x[11], DCCPRole: x[10], DCCPHandshakeSeq: uint64(x[9])}
		}
		for _, op := range []Op{Create, Update, Delete} {
			m, err := encodeFlowMsg(op, &fl, WriteOptions{Liberal: x[6]&1 != 0})
			if err != nil {
				t.Fatalf("%v: %v", op, err)
			}
			_, got, err := decodeMessage(m)
			if err != nil {
				t.Fatalf("%v: decode: %v", op, err)
			}
			if got.Orig != fl.Orig || got.Zone != fl.Zone {
				t.Fatalf("%v: key (-want +got):\n%s", op, cmp.Diff(fl.Key(), got.Key()))
			}
		}
	})
}

// TestMaxackSetCleared: a written TCP entry never says its td_maxack is
// valid (ctnetlink cannot write it): with MAXACK_SET and a td_maxack of
// 0, the kernel drops about half of the flow's RSTs as INVALID.
func TestMaxackSetCleared(t *testing.T) {
	f := plain(ct.ProtoTCP, "10.1.0.1", "10.2.0.1", 1, 2)
	f.TCP.FlagsOrig |= ct.TCPFlagMaxackSet | ct.TCPFlagSACKPerm
	f.TCP.FlagsRepl |= ct.TCPFlagMaxackSet
	for _, op := range []Op{Create, Update} {
		msgs, err := flowMessages(nil, op, &f, WriteOptions{Liberal: true})
		if err != nil || len(msgs) == 0 {
			t.Fatalf("%v: %d messages, %v", op, len(msgs), err)
		}
		_, as := attrs(t, msgs[0])
		seen := 0
		for _, c := range as[ctaProtoInfo].Children[0].Children {
			if c.Type != ctaTCPFlagsOrig && c.Type != ctaTCPFlagsRepl {
				continue
			}
			seen++
			flags, mask := c.Data[0], c.Data[1]
			if flags&ct.TCPFlagMaxackSet != 0 || mask&ct.TCPFlagMaxackSet == 0 {
				t.Errorf("%v: flags %#x mask %#x: MAXACK_SET must be cleared (in the mask, not in the flags)", op, flags, mask)
			}
			if flags&ct.TCPFlagBeLiberal == 0 || mask&flags != flags {
				t.Errorf("%v: flags %#x mask %#x: the other flags must be set", op, flags, mask)
			}
		}
		if seen != 2 {
			t.Errorf("%v: %d TCP flag attributes, want 2", op, seen)
		}
	}
}
