package kernel

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"

	"github.com/ctha/ctha/ctsync/ct"
)

// EventType is the kind of a conntrack event.
type EventType uint8

// Event types.
const (
	EventNew EventType = iota + 1
	EventUpdate
	EventDestroy
	EventExpectNew     // an expectation was created (Event.Expect)
	EventExpectDestroy // an expectation is gone: used, expired or removed
)

func (t EventType) String() string {
	switch t {
	case EventNew:
		return "new"
	case EventUpdate:
		return "update"
	case EventDestroy:
		return "destroy"
	case EventExpectNew:
		return "expect new"
	case EventExpectDestroy:
		return "expect destroy"
	}
	return fmt.Sprintf("event(%d)", uint8(t))
}

// Event is one conntrack event. A DESTROY event carries the tuples, zone,
// status, mark and what little protocol state the kernel sends with it.
type Event struct {
	Type EventType
	Flow ct.Flow
	// Expect is the expectation of an EventExpect* event, else nil.
	Expect *ct.Expect
}

// errNotFlow is returned for a ctnetlink message that holds no flow (an
// expectation).
var errNotFlow = errors.New("not a conntrack flow message")

// decodeMessage decodes a ctnetlink flow message: an event, or an entry of
// a dump (which decodes as an update).
func decodeMessage(m netlink.Message) (EventType, ct.Flow, error) {
	var ev conntrack.Event
	if err := ev.Unmarshal(m); err != nil {
		return 0, ct.Flow{}, fmt.Errorf("decode conntrack message: %w", err)
	}
	if ev.Flow == nil {
		return 0, ct.Flow{}, errNotFlow
	}
	return flowEvent(ev)
}

// decodeEvent decodes an event message: a flow's or an expectation's.
func decodeEvent(m netlink.Message) (Event, error) {
	var ev conntrack.Event
	if err := ev.Unmarshal(m); err != nil {
		return Event{}, fmt.Errorf("decode conntrack event: %w", err)
	}
	if ev.Expect != nil {
		x := fromTiMoExpect(ev.Expect)
		switch ev.Type {
		case conntrack.EventExpNew:
			return Event{Type: EventExpectNew, Expect: &x}, nil
		case conntrack.EventExpDestroy:
			return Event{Type: EventExpectDestroy, Expect: &x}, nil
		}
		return Event{}, fmt.Errorf("%w: event type %v", errNotFlow, ev.Type)
	}
	if ev.Flow == nil {
		return Event{}, errNotFlow
	}
	t, f, err := flowEvent(ev)
	return Event{Type: t, Flow: f}, err
}

func fromTiMoExpect(x *conntrack.Expect) ct.Expect {
	return ct.Expect{
		Master: fromTiMoTuple(x.TupleMaster), Tuple: fromTiMoTuple(x.Tuple), Mask: fromTiMoTuple(x.Mask),
		Zone: x.Zone, Timeout: x.Timeout, Flags: x.Flags, Class: x.Class, Helper: x.HelpName, Fn: x.Function,
	}
}

func flowEvent(ev conntrack.Event) (EventType, ct.Flow, error) {
	var t EventType
	switch ev.Type {
	case conntrack.EventNew:
		t = EventNew
	case conntrack.EventUpdate:
		t = EventUpdate
	case conntrack.EventDestroy:
		t = EventDestroy
	default:
		return 0, ct.Flow{}, fmt.Errorf("%w: event type %v", errNotFlow, ev.Type)
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
		// CTA_PROTOINFO_TCP_FLAGS_* is struct nf_ct_tcp_flags {flags, mask},
		// which ti-mo reads as one big-endian uint16.
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

func fromTiMoTuple(t conntrack.Tuple) ct.Tuple {
	src, dst := t.IP.SourceAddress, t.IP.DestinationAddress
	if !src.IsValid() {
		src = netip.IPv4Unspecified()
	}
	if !dst.IsValid() {
		dst = netip.IPv4Unspecified()
	}
	p := t.Proto
	if p.Protocol == ct.ProtoICMP || p.Protocol == ct.ProtoICMPv6 {
		return ct.NewICMPTuple(src, dst, p.ICMPType, p.ICMPCode, p.ICMPID)
	}
	return ct.NewTuple(p.Protocol, src, dst, p.SourcePort, p.DestinationPort)
}
