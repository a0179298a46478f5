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

// errMalformed is wrapped by the errors of messages that cannot be decoded.
var errMalformed = errors.New("malformed conntrack message")

// nfgenmsgLen is the length of struct nfgenmsg, which precedes the
// attributes of every nfnetlink message.
const nfgenmsgLen = 4

// decodeMessage decodes a ctnetlink flow message: an event, or an entry of
// a dump (which decodes as an update).
func decodeMessage(m netlink.Message) (EventType, ct.Flow, error) {
	switch m.Header.Type >> 8 {
	case subsysCT:
	case subsysCTExp:
		return 0, ct.Flow{}, errNotFlow
	default:
		return 0, ct.Flow{}, fmt.Errorf("decode conntrack message: type %#x: %w", m.Header.Type, errMalformed)
	}
	var t EventType
	switch m.Header.Type & 0xff {
	case msgCTNew:
		t = EventUpdate
		if m.Header.Flags&(netlink.Create|netlink.Excl) != 0 {
			t = EventNew
		}
	case msgCTDelete:
		t = EventDestroy
	default:
		return 0, ct.Flow{}, fmt.Errorf("%w: message type %d", errNotFlow, m.Header.Type&0xff)
	}
	if len(m.Data) < nfgenmsgLen {
		return 0, ct.Flow{}, fmt.Errorf("decode conntrack message: %d bytes: %w", len(m.Data), errMalformed)
	}
	var f ct.Flow
	if err := decodeFlow(&f, m.Data[nfgenmsgLen:]); err != nil {
		return 0, ct.Flow{}, fmt.Errorf("decode conntrack message: %w", err)
	}
	return t, f, nil
}

// decodeEvent decodes an event message: a flow's or an expectation's.
func decodeEvent(m netlink.Message) (Event, error) {
	if m.Header.Type>>8 == subsysCTExp {
		return decodeExpectEvent(m)
	}
	t, f, err := decodeMessage(m)
	if err != nil {
		return Event{}, err
	}
	return Event{Type: t, Flow: f}, nil
}

// decodeExpectEvent decodes an expectation's event with ti-mo/conntrack:
// they are rare, and not worth a decoder of their own.
func decodeExpectEvent(m netlink.Message) (Event, error) {
	var ev conntrack.Event
	if err := ev.Unmarshal(m); err != nil {
		return Event{}, fmt.Errorf("decode conntrack event: %w", err)
	}
	if ev.Expect == nil {
		return Event{}, errNotFlow
	}
	x := fromTiMoExpect(ev.Expect)
	switch ev.Type {
	case conntrack.EventExpNew:
		return Event{Type: EventExpectNew, Expect: &x}, nil
	case conntrack.EventExpDestroy:
		return Event{Type: EventExpectDestroy, Expect: &x}, nil
	}
	return Event{}, fmt.Errorf("%w: event type %v", errNotFlow, ev.Type)
}

func fromTiMoExpect(x *conntrack.Expect) ct.Expect {
	return ct.Expect{
		Master: fromTiMoTuple(x.TupleMaster), Tuple: fromTiMoTuple(x.Tuple), Mask: fromTiMoTuple(x.Mask),
		Zone: x.Zone, Timeout: x.Timeout, Flags: x.Flags, Class: x.Class, Helper: x.HelpName, Fn: x.Function,
	}
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
