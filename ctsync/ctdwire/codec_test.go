package ctdwire

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/google/go-cmp/cmp"
)

// TestFlowRoundTrip maps flows to messages and back: what conntrackd can
// carry comes back equal, and what it cannot is reported.
func TestFlowRoundTrip(t *testing.T) {
	sctp := flow(ct.NewTuple(ct.ProtoSCTP, cl4, srv4, 5000, 6000), 0xe, 100)
	sctp.Extra = &ct.Extra{SCTPState: 3, SCTPVTagOrig: 0x11223344, SCTPVTagR: 0x55667788}
	dccp := flow(ct.NewTuple(ct.ProtoDCCP, cl6, srv6, 5000, 6000), 0xe, 100)
	dccp.Extra = &ct.Extra{DCCPState: 4, DCCPRole: 1}
	for _, tc := range []struct {
		name    string
		f       ct.Flow
		dropped Dropped
		back    func(*ct.Flow) // what comes back differs so
	}{
		{name: "tcp snat", f: gTCPSNAT},
		{name: "udp dnat mark", f: gUDPDNAT},
		{name: "icmp", f: gICMP},
		{name: "icmpv6", f: gICMP6},
		{name: "ipv6 dnat", f: gUDP6},
		{name: "zone", f: with(gUDP, func(f *ct.Flow) { f.Zone = 7 })},
		{name: "ftp with options", f: with(gTCPEst, func(f *ct.Flow) {
			f.Status |= ct.StatusHelper
			f.Extra = &ct.Extra{Labels: [16]byte{0: 1, 5: 0x80, 15: 0x80}, Helper: "ftp",
				SeqAdjOrig: ct.SeqAdj{Position: 1000, OffsetBefore: 1, OffsetAfter: 4}, SeqAdjRepl: ct.SeqAdj{Position: 7}}
		})},
		{name: "sctp", f: sctp},
		{name: "dccp", f: dccp},
		{name: "tcp flags dropped", f: with(gTCPEst, func(f *ct.Flow) { f.TCP.FlagsOrig = ct.TCPFlagSACKPerm }),
			dropped: DroppedTCPFlags, back: func(f *ct.Flow) { f.TCP.FlagsOrig = 0 }},
		{name: "dccp handshake dropped", f: with(dccp, func(f *ct.Flow) { x := *f.Extra; x.DCCPHandshakeSeq = 9; f.Extra = &x }),
			dropped: DroppedDCCPSeq, back: func(f *ct.Flow) { x := *f.Extra; x.DCCPHandshakeSeq = 0; f.Extra = &x }},
		{name: "long helper dropped", f: with(gTCPEst, func(f *ct.Flow) { f.Extra = &ct.Extra{Helper: "a-very-long-helper"} }),
			dropped: DroppedHelper, back: func(f *ct.Flow) { f.Extra = nil }},
		{name: "icmp id NAT dropped", f: with(gICMP, func(f *ct.Flow) { f.Reply.SrcPort = 99 }),
			dropped: DroppedReply, back: func(f *ct.Flow) { f.Reply.SrcPort = 77 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, typ := range []Type{TypeCTNew, TypeCTUpd, TypeCTDel} {
				b, d := AppendFlow(nil, typ, FlagHelloBack, 42, &tc.f)
				if d != tc.dropped {
					t.Errorf("dropped %v, want %v", d, tc.dropped)
				}
				ms, err := ParseDatagram(nil, b)
				if err != nil || len(ms) != 1 || ms[0].Type != typ || ms[0].Seq != 42 || ms[0].Flags != FlagHelloBack {
					t.Fatalf("parse: %v %v", ms, err)
				}
				got, d, err := ms[0].Flow()
				if err != nil || d != 0 {
					t.Fatalf("decode: %v, dropped %v", err, d)
				}
				want := tc.f
				if tc.back != nil {
					tc.back(&want)
				}
				if !got.Equal(&want) {
					t.Errorf("got  %v %+v\nwant %v %+v", &got, got.Extra, &want, want.Extra)
				}
			}
		})
	}
}

// TestLabelsWords pins the label layout: label n is bit n%32 of word n/32.
func TestLabelsWords(t *testing.T) {
	f := with(gUDP, func(f *ct.Flow) { f.Extra = &ct.Extra{Labels: [16]byte{0: 0x01, 4: 0x02, 15: 0x80}} })
	s, _ := StateOf(&f)
	want := []uint32{1 << 0, 1 << 1, 0, 1 << 31} // labels 0, 33, 127
	if diff := cmp.Diff(want, s.Labels); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestIncompleteAndErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		attrs []byte
		want  error
	}{
		{"no protocol", appendAttr(nil, ntaIPv4, 1, 2, 3, 4, 5, 6, 7, 8), ErrIncomplete},
		{"no addresses", appendU8(nil, ntaL4Proto, 6), ErrIncomplete},
		{"unknown attribute", appendU8(nil, ntaMax, 6), ErrAttr},
		{"wrong size", appendU16(nil, ntaStatus, 6), ErrAttr},
		{"length past the end", []byte{0, 40, 0, 5, 0, 0, 0, 0}, ErrAttr},
		{"helper too long", appendAttr(nil, ntaHelper, []byte("twelve-chars\x00")...), ErrAttr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := Msg{Type: TypeCTNew, Attrs: tc.attrs}
			if _, _, err := m.Flow(); !errors.Is(err, tc.want) {
				t.Errorf("err %v, want %v", err, tc.want)
			}
		})
	}
}

func TestExpectRoundTrip(t *testing.T) {
	master := ct.NewTuple(ct.ProtoTCP, cl4, srv4, 40000, 21)
	e := ct.Expect{
		Master: master, Tuple: ct.NewTuple(ct.ProtoTCP, cl4, srv4, 0, 50000),
		Mask:    ct.NewTuple(ct.ProtoTCP, netip.MustParseAddr("255.255.255.255"), netip.MustParseAddr("255.255.255.255"), 0, 0xffff),
		Timeout: 300, Flags: 0, Class: 0, Helper: "ftp",
	}
	for _, typ := range []Type{TypeExpNew, TypeExpUpd, TypeExpDel} {
		s, d := ExpectStateOf(&e)
		if d != 0 {
			t.Fatalf("dropped %v", d)
		}
		b := AppendMsg(nil, &Msg{Type: typ, Seq: 1, Attrs: AppendExpectState(nil, &s)})
		ms, err := ParseDatagram(nil, b)
		if err != nil {
			t.Fatal(err)
		}
		got, d, err := ms[0].Expect()
		if err != nil || d != 0 {
			t.Fatalf("%v dropped %v", err, d)
		}
		if diff := cmp.Diff(e, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	}
	e.Zone = 3
	if _, d := ExpectStateOf(&e); d != DroppedZone {
		t.Errorf("zone: dropped %v", d)
	}
	if _, _, err := (&Msg{Type: TypeCTNew}).Expect(); err != ErrType {
		t.Errorf("a flow message as an expectation: %v", err)
	}
}
