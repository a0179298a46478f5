package kernel

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"

	"github.com/ctha/ctha/ctsync/ct"
)

// The flow decoder against ti-mo/conntrack's, the reference.

// tiMoDecode decodes a flow message with ti-mo/conntrack, as ctha did
// before it had its own decoder.
func tiMoDecode(m netlink.Message) (EventType, ct.Flow, error) {
	var ev conntrack.Event
	if err := ev.Unmarshal(m); err != nil {
		return 0, ct.Flow{}, err
	}
	if ev.Flow == nil {
		return 0, ct.Flow{}, errNotFlow
	}
	var t EventType
	switch ev.Type {
	case conntrack.EventNew:
		t = EventNew
	case conntrack.EventUpdate:
		t = EventUpdate
	case conntrack.EventDestroy:
		t = EventDestroy
	default:
		return 0, ct.Flow{}, errNotFlow
	}
	return t, fromTiMo(ev.Flow), nil
}

// fromTiMo converts a flow decoded by ti-mo/conntrack.
func fromTiMo(g *conntrack.Flow) ct.Flow {
	f := ct.Flow{
		Orig:    fromTiMoTuple(g.TupleOrig),
		Reply:   fromTiMoTuple(g.TupleReply),
		Zone:    g.Zone,
		Status:  uint32(g.Status),
		Timeout: g.Timeout,
		Mark:    g.Mark,
	}
	var x ct.Extra
	switch pi := g.ProtoInfo; {
	case pi.TCP != nil:
		// ti-mo reads struct nf_ct_tcp_flags {flags, mask} as one
		// big-endian uint16.
		f.TCP = ct.TCPInfo{
			State:      pi.TCP.State,
			WScaleOrig: pi.TCP.OriginalWindowScale,
			WScaleRepl: pi.TCP.ReplyWindowScale,
			FlagsOrig:  uint8(pi.TCP.OriginalFlags >> 8),
			FlagsRepl:  uint8(pi.TCP.ReplyFlags >> 8),
		}
	case pi.SCTP != nil:
		x.SCTPState, x.SCTPVTagOrig, x.SCTPVTagR = pi.SCTP.State, pi.SCTP.VTagOriginal, pi.SCTP.VTagReply
	case pi.DCCP != nil:
		x.DCCPState, x.DCCPRole, x.DCCPHandshakeSeq = pi.DCCP.State, pi.DCCP.Role, pi.DCCP.HandshakeSeq
	}
	copy(x.Labels[:], g.Labels)
	x.Helper = g.Helper.Name
	x.SeqAdjOrig = ct.SeqAdj{Position: g.SeqAdjOrig.Position, OffsetBefore: g.SeqAdjOrig.OffsetBefore, OffsetAfter: g.SeqAdjOrig.OffsetAfter}
	x.SeqAdjRepl = ct.SeqAdj{Position: g.SeqAdjReply.Position, OffsetBefore: g.SeqAdjReply.OffsetBefore, OffsetAfter: g.SeqAdjReply.OffsetAfter}
	if x != (ct.Extra{}) {
		f.Extra = &x
	}
	return f
}

// sameAsTiMo fails t unless decodeMessage gives what ti-mo gives for m,
// wherever ti-mo accepts m.
func sameAsTiMo(t *testing.T, m netlink.Message) {
	t.Helper()
	wt, want, werr := tiMoDecode(m)
	gt, got, gerr := decodeMessage(m)
	if werr != nil {
		return // ctha may accept what ti-mo refuses (unknown children)
	}
	if gerr != nil {
		t.Fatalf("ti-mo decodes %v %v, ctha fails: %v", wt, want.Orig, gerr)
	}
	if gt != wt || !want.Equal(&got) || (want.Extra == nil) != (got.Extra == nil) {
		t.Fatalf("type %v, ti-mo %v; flow (-ti-mo +ctha):\n%s", gt, wt, cmp.Diff(want, got))
	}
}

// dccpFlow is a DCCP flow's message with CTA_PROTOINFO_DCCP, which ctha
// never writes but the kernel sends.
func dccpFlow(t testing.TB) netlink.Message {
	f := plain(ct.ProtoDCCP, "10.1.0.1", "10.2.0.1", 4000, 5000)
	m, err := encodeFlowMsg(Create, &f, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.Nested(ctaProtoInfo|netlink.Nested, func(pae *netlink.AttributeEncoder) error {
		pae.Nested(ctaProtoInfoDCCP|netlink.Nested, func(dae *netlink.AttributeEncoder) error {
			dae.Uint8(ctaDCCPState, 3)
			dae.Uint8(ctaDCCPRole, 1)
			dae.Uint64(ctaDCCPHandshakeSeq, 0x0102030405060708)
			return nil
		})
		return nil
	})
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	m.Data = append(m.Data, b...)
	return m
}

func TestDecodeFlowMatchesTiMo(t *testing.T) {
	for _, tc := range roundTripCases() {
		for _, op := range []Op{Create, Update, Delete} {
			t.Run(tc.name+" "+op.String(), func(t *testing.T) {
				m, err := encodeFlowMsg(op, &tc.flow, WriteOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err := tiMoDecode(m); err != nil {
					t.Fatalf("ti-mo refuses the message: %v", err)
				}
				sameAsTiMo(t, m)
			})
		}
	}
	t.Run("dccp", func(t *testing.T) {
		m := dccpFlow(t)
		sameAsTiMo(t, m)
		_, f, err := decodeMessage(m)
		if err != nil || f.Extra == nil || f.Extra.DCCPHandshakeSeq != 0x0102030405060708 || f.Extra.DCCPRole != 1 {
			t.Fatalf("decoded %+v %+v, %v", f, f.Extra, err)
		}
	})
}

// TestDecodeFlowMalformed: every truncation of a real message, and
// attributes of the wrong size, give an error wrapping errMalformed, never
// a panic.
func TestDecodeFlowMalformed(t *testing.T) {
	tc := roundTripCases()[0]
	m, err := encodeFlowMsg(Create, &tc.flow, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	errs := 0
	for n := range len(m.Data) {
		c := m
		c.Data = m.Data[:n]
		if _, _, err := decodeMessage(c); err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("%d bytes: %v, want errMalformed", n, err)
			}
			errs++
		}
	}
	// Cuts at attribute boundaries are valid (shorter) messages; any
	// other cut is malformed.
	if errs < len(m.Data)*2/3 {
		t.Errorf("%d of %d truncations refused, want most", errs, len(m.Data))
	}
	// CTA_STATUS of 2 bytes instead of 4.
	bad := append([]byte(nil), m.Data[:nfgenmsgLen]...)
	bad = append(bad, 6, 0, ctaStatus, 0, 0xff, 0xff, 0, 0)
	if _, _, err := decodeMessage(netlink.Message{Header: m.Header, Data: bad}); !errors.Is(err, errMalformed) {
		t.Errorf("a 2-byte status: %v, want errMalformed", err)
	}
}

// FuzzDecodeMessage: arbitrary messages never panic the decoder, and
// wherever ti-mo accepts one, ctha decodes the same event.
func FuzzDecodeMessage(f *testing.F) {
	for _, tc := range roundTripCases() {
		for _, op := range []Op{Create, Delete} {
			m, err := encodeFlowMsg(op, &tc.flow, WriteOptions{})
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint16(m.Header.Type), uint16(m.Header.Flags), m.Data)
		}
	}
	m := dccpFlow(f)
	f.Add(uint16(m.Header.Type), uint16(m.Header.Flags), m.Data)
	f.Fuzz(func(t *testing.T, typ, flags uint16, data []byte) {
		if len(data) > nfgenmsgLen && wideTypes(data[nfgenmsgLen:]) {
			// ti-mo reads attribute types as uint8 (0x3001 is 1 to it):
			// no comparison. The decoder must still not panic.
			decodeMessage(netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ)}, Data: data})
			return
		}
		sameAsTiMo(t, netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.HeaderFlags(flags)}, Data: data})
	})
}

// wideTypes reports whether b, read as attributes at any depth, has a type
// above 255 (flag bits aside); it may see attributes in plain data too.
func wideTypes(b []byte) bool {
	it := attrIter{b: b}
	for it.next() {
		if it.typ > 0xff || wideTypes(it.data) {
			return true
		}
	}
	return false
}

// BenchmarkDecodeEvent decodes an IPv4 TCP flow's message, the bulk of
// what the sender's listener receives, with ctha's decoder and with
// ti-mo's.
func BenchmarkDecodeEvent(b *testing.B) {
	f := plain(ct.ProtoTCP, "10.1.0.1", "10.2.0.1", 40001, 80)
	m, err := encodeFlowMsg(Create, &f, WriteOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for _, d := range []struct {
		name string
		fn   func(netlink.Message) (EventType, ct.Flow, error)
	}{{"ctha", decodeMessage}, {"ti-mo", tiMoDecode}} {
		b.Run(d.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := d.fn(m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
