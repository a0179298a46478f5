package kernel

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/wire"
)

// Fuzz targets of what reaches the kernel package from outside: the event
// listener's datagrams, expectation events, and the peer's records on
// their way to the kernel.

// frame returns m as the kernel frames it in a datagram: its length set
// (padded to 4 bytes) and pid as its port id.
func frame(t testing.TB, m netlink.Message, pid uint32) []byte {
	t.Helper()
	for len(m.Data)%4 != 0 {
		m.Data = append(m.Data, 0)
	}
	m.Header.Length = uint32(16 + len(m.Data))
	m.Header.PID = pid
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testExpects are expectations as helpers make them: FTP's of both
// families, and one with every field (SIP's: UDP for a TCP master, NAT).
func testExpects() []ct.Expect {
	ftp := func(cl, srv string) ct.Expect {
		ones := ip("255.255.255.255")
		if ip(cl).Is6() {
			ones = ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
		}
		return ct.Expect{
			Master:  ct.NewTuple(ct.ProtoTCP, ip(cl), ip(srv), 40000, 21),
			Tuple:   ct.NewTuple(ct.ProtoTCP, ip(cl), ip(srv), 0, 50000),
			Mask:    ct.NewTuple(ct.ProtoTCP, ones, ones, 0, 0xffff),
			Timeout: 300, Helper: "ftp",
		}
	}
	all := ftp("10.1.0.1", "10.2.0.1")
	all.Tuple.Proto, all.Mask.Proto = ct.ProtoUDP, ct.ProtoUDP
	all.Zone, all.Flags, all.Class, all.Fn = 7, 1, 2, "nf_nat_follow_master"
	return []ct.Expect{ftp("10.1.0.1", "10.2.0.1"), ftp("fd00:1::1", "fd00:2::1"), all}
}

func mustEncodeFlow(t testing.TB, op Op, f *ct.Flow) netlink.Message {
	t.Helper()
	m, err := encodeFlowMsg(op, f, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustEncodeExpect(t testing.TB, op Op, e *ct.Expect) netlink.Message {
	t.Helper()
	m, err := encodeExpectMsg(op, e)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// canonical reports whether t is a tuple as the decoders build them
// (ct.NewTuple, ct.NewICMPTuple): of its source address's family, with a
// destination of that family too, and ICMP named by the family. A peer's
// record may hold any tuple: one that is not canonical (an IPv6 tuple of
// a v4-mapped address, ICMPv6 of IPv4 addresses) comes back from the
// kernel as another.
func canonical(t ct.Tuple) bool {
	v6 := func(b [16]byte) bool { return !netip.AddrFrom16(b).Is4In6() }
	icmp := uint8(ct.ProtoICMP)
	if t.V6 {
		icmp = ct.ProtoICMPv6
	}
	return v6(t.Src) == t.V6 && v6(t.Dst) == t.V6 && (!t.IsICMP() || t.Proto == icmp)
}

// cString is s as the decoders read a string attribute back: without
// trailing NULs (the kernel itself would stop at the first).
func cString(s string) string { return strings.TrimRight(s, "\x00") }

// checkEvent fails t unless ev is an event the Listener may return.
func checkEvent(t *testing.T, ev Event) {
	t.Helper()
	switch ev.Type {
	case EventNew, EventUpdate, EventDestroy:
		if ev.Expect != nil {
			t.Fatalf("%v event with an expectation %v", ev.Type, ev.Expect)
		}
	case EventExpectNew, EventExpectDestroy:
		if ev.Expect == nil {
			t.Fatalf("%v event without its expectation", ev.Type)
		}
	default:
		t.Fatalf("event of type %v", ev.Type)
	}
}

// subsequence reports whether every event of sub is in all, in order.
func subsequence(sub, all []Event) bool {
	i := 0
	for _, ev := range all {
		if i < len(sub) && cmp.Equal(sub[i], ev) {
			i++
		}
	}
	return i == len(sub)
}

// FuzzDecodeDatagram feeds the Listener's framing arbitrary datagrams of
// several messages: it never panics, returns only well-formed events, and
// splits a datagram at message boundaries: a datagram a that decodes
// without error, followed by b, gives a's events then b's (if the whole is
// a multiple of 4 bytes, as the kernel's datagrams are; another is refused
// whole). The events of a port id it ignores are left out, and only those.
func FuzzDecodeDatagram(f *testing.F) {
	cases := roundTripCases()
	exps := testExpects()
	newFlow := frame(f, mustEncodeFlow(f, Create, &cases[0].flow), 0)
	update := frame(f, mustEncodeFlow(f, Update, &cases[7].flow), 0)
	destroy := frame(f, mustEncodeFlow(f, Delete, &cases[4].flow), 7)
	expNew := frame(f, mustEncodeExpect(f, Create, &exps[2]), 0)
	expDel := frame(f, mustEncodeExpect(f, Delete, &exps[1]), 7)
	cat := func(bs ...[]byte) []byte {
		var out []byte
		for _, b := range bs {
			out = append(out, b...)
		}
		return out
	}
	f.Add(newFlow, destroy, uint32(0))
	f.Add(cat(newFlow, expNew, update), cat(destroy, expDel), uint32(7))
	f.Add(cat(update, frame(f, dccpFlow(f), 0)), newFlow[:len(newFlow)-4], uint32(0))
	// A length past the datagram, one under a header, one unaligned.
	long := append([]byte(nil), newFlow...)
	long[0] += 8
	short := append([]byte(nil), update...)
	short[0], short[1], short[2], short[3] = 12, 0, 0, 0
	odd := append([]byte(nil), destroy...)
	odd[0]--
	f.Add(long, short, uint32(0))
	f.Add(odd, cat(odd, newFlow), uint32(7))
	f.Add(cat(expNew, expNew), []byte{}, uint32(0))

	f.Fuzz(func(t *testing.T, a, b []byte, ignore uint32) {
		all, l := &Listener{}, &Listener{}
		if ignore != 0 { // as Listen: port id 0 is no one's
			l.ignore = []uint32{ignore}
		}
		var badA, badB, badAB error
		evA := l.decodeDatagram(nil, a, &badA)
		evB := l.decodeDatagram(nil, b, &badB)
		ab := append(append([]byte(nil), a...), b...)
		evAB := l.decodeDatagram(nil, ab, &badAB)
		for _, ev := range evAB {
			checkEvent(t, ev)
		}
		var badAll error
		if evAll := all.decodeDatagram(nil, ab, &badAll); !subsequence(evAB, evAll) {
			t.Fatalf("ignoring port id %d kept events that are not the datagram's:\n%s", ignore, cmp.Diff(evAll, evAB))
		}
		if len(ab)%4 != 0 {
			// Not a run of aligned messages, as the kernel sends: refused
			// whole.
			if len(evAB) != 0 || badAB == nil {
				t.Fatalf("unaligned datagram of %d bytes: %d events, %v", len(ab), len(evAB), badAB)
			}
			return
		}
		if badA != nil {
			return // a does not end on a message boundary, or holds a bad one
		}
		if diff := cmp.Diff(append(evA, evB...), evAB); diff != "" {
			t.Fatalf("events of a+b are not those of a then b (-want +got):\n%s", diff)
		}
		if (badB == nil) != (badAB == nil) {
			t.Fatalf("b alone: %v; after a: %v", badB, badAB)
		}
	})
}

// FuzzDecodeExpect feeds arbitrary expectation messages to the event
// decoder: it never panics, and an expectation it decodes is encoded
// again (the request that recreates it) and decodes the same.
func FuzzDecodeExpect(f *testing.F) {
	for _, e := range testExpects() {
		for _, op := range []Op{Create, Delete} {
			m := mustEncodeExpect(f, op, &e)
			f.Add(uint8(m.Header.Type), uint16(m.Header.Flags), m.Data)
		}
	}
	f.Add(uint8(msgExpNew), uint16(0), []byte{2, 0, 0, 0})
	f.Add(uint8(1), uint16(0), []byte{})
	f.Fuzz(func(t *testing.T, typ uint8, flags uint16, data []byte) {
		m := netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(subsysCTExp<<8 | uint16(typ)), Flags: netlink.HeaderFlags(flags)}, Data: data}
		ev, err := decodeEvent(m)
		if err != nil {
			return
		}
		checkEvent(t, ev)
		if ev.Expect == nil {
			t.Fatalf("expectation message decoded as a flow's %v event", ev.Type)
		}
		roundTripExpect(t, ev.Expect, true)
	})
}

// roundTripExpect fails t unless e encodes, as a delete and (with create)
// as a create, into requests that decode as e (a delete carries e's key
// only). A create of tuples of different families is refused.
func roundTripExpect(t *testing.T, e *ct.Expect, create bool) {
	t.Helper()
	if create {
		m, err := encodeExpectMsg(Create, e)
		sameFamily := e.Master.V6 == e.Tuple.V6 && e.Mask.V6 == e.Tuple.V6
		switch {
		case err != nil && (!errors.Is(err, ErrInvalidFlow) || sameFamily):
			t.Fatalf("encode create of %v: %v", e, err)
		case err == nil && !sameFamily:
			t.Fatalf("create of %v: tuples of different families accepted", e)
		case err == nil:
			ev, err := decodeEvent(m)
			if err != nil || ev.Type != EventExpectNew || ev.Expect == nil {
				t.Fatalf("decode the create of %v: %v %v, %v", e, ev.Type, ev.Expect, err)
			}
			if !canonical(e.Master) || !canonical(e.Tuple) || !canonical(e.Mask) {
				break
			}
			want := *e
			want.Helper, want.Fn = cString(want.Helper), cString(want.Fn)
			if diff := cmp.Diff(want, *ev.Expect); diff != "" {
				t.Fatalf("create, decode changed the expectation (-want +got):\n%s", diff)
			}
		}
	}
	m, err := encodeExpectMsg(Delete, e)
	if err != nil {
		t.Fatalf("encode delete of %v: %v", e, err)
	}
	ev, err := decodeEvent(m)
	if err != nil || ev.Type != EventExpectDestroy || ev.Expect == nil ||
		(canonical(e.Tuple) && ev.Expect.Key() != e.Key()) {
		t.Fatalf("decode the delete of %v: %v %v, %v", e, ev.Type, ev.Expect, err)
	}
}

// FuzzEncodeRecords takes a peer's records, as the wire package decodes
// them, to the kernel's requests: whatever the peer sends, the encoder
// never panics, refuses only what the kernel could not take
// (ErrInvalidFlow), and writes requests that decode as what it was asked
// (a create: the flow as sentFlow says it is sent; an update and a delete:
// the flow's key), framed so that the listener's decoder splits them.
func FuzzEncodeRecords(f *testing.F) {
	for _, tc := range roundTripCases() {
		f.Add(wire.AppendUpdate(nil, &tc.flow), false)
		f.Add(wire.AppendDestroy(nil, tc.flow.Key()), true)
	}
	for _, e := range testExpects() {
		f.Add(wire.AppendExpect(wire.AppendExpectDestroy(nil, e.Key()), &e), false)
	}
	mixed := plain(ct.ProtoTCP, "10.1.0.1", "10.2.0.1", 1, 2)
	mixed.Reply = ct.NewTuple(ct.ProtoUDP, ip("fd00::1"), ip("10.1.0.1"), 2, 1)
	f.Add(wire.AppendUpdate(nil, &mixed), true)
	f.Fuzz(func(t *testing.T, data []byte, liberal bool) {
		opts := WriteOptions{Liberal: liberal}
		for b := data; len(b) > 0; {
			r, rest, err := wire.ParseRecord(b)
			if err != nil {
				return
			}
			b = rest
			switch r.Kind {
			case wire.KindUpdate:
				for _, op := range []Op{Create, Update, Delete} {
					checkFlowRequests(t, op, &r.Flow, opts)
				}
			case wire.KindDestroy:
				// The engine deletes the flow it holds, reply tuple
				// included, not the record's key alone.
				r.Flow.Reply = r.Flow.Orig.Reverse()
				checkFlowRequests(t, Delete, &r.Flow, opts)
			case wire.KindExpect, wire.KindExpectDestroy:
				roundTripExpect(t, r.Expect, r.Kind == wire.KindExpect)
			}
		}
	})
}

// checkFlowRequests encodes op of f and checks what the kernel would be
// sent.
func checkFlowRequests(t *testing.T, op Op, f *ct.Flow, opts WriteOptions) {
	t.Helper()
	msgs, err := flowMessages(nil, op, f, opts)
	differ := f.Orig.V6 != f.Reply.V6 || f.Orig.Proto != f.Reply.Proto
	switch {
	case err != nil && (!errors.Is(err, ErrInvalidFlow) || !differ):
		t.Fatalf("%v %v: %v", op, f, err)
	case err == nil && differ:
		t.Fatalf("%v %v: tuples of different families or protocols accepted", op, f)
	case err != nil:
		return
	}
	var dgram []byte
	for _, m := range msgs {
		dgram = append(dgram, frame(t, m, 0)...)
	}
	var bad error
	evs := (&Listener{}).decodeDatagram(nil, dgram, &bad)
	if bad != nil || len(evs) != len(msgs) {
		t.Fatalf("%v %v: %d messages decode as %d events, %v", op, f, len(msgs), len(evs), bad)
	}
	got := evs[0].Flow
	if canonical(f.Orig) && got.Key() != f.Key() {
		t.Fatalf("%v: key (-want +got):\n%s", op, cmp.Diff(f.Key(), got.Key()))
	}
	want := sentFlow(*f, opts)
	// The protocol's state goes only with its protocol.
	if want.Orig.Proto != ct.ProtoTCP {
		want.TCP = ct.TCPInfo{}
	}
	if want.Extra != nil {
		x := *want.Extra
		x.Helper = cString(x.Helper)
		if want.Orig.Proto != ct.ProtoSCTP {
			x.SCTPState, x.SCTPVTagOrig, x.SCTPVTagR = 0, 0, 0
		}
		if want.Orig.Proto != ct.ProtoDCCP {
			x.DCCPState, x.DCCPRole, x.DCCPHandshakeSeq = 0, 0, 0
		}
		want.Extra = &x
	}
	switch op {
	case Create:
		exact := canonical(f.Orig) && canonical(want.Reply)
		if evs[0].Type != EventNew || (exact && !want.Equal(&got)) {
			t.Fatalf("create decodes as %v (-want +got):\n%s", evs[0].Type, cmp.Diff(want, got))
		}
	case Update:
		if evs[0].Type != EventUpdate {
			t.Fatalf("update decodes as %v", evs[0].Type)
		}
	case Delete:
		if evs[0].Type != EventDestroy || len(evs) != 1 {
			t.Fatalf("delete decodes as %d events, the first %v", len(evs), evs[0].Type)
		}
	}
}
