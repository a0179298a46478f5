package ct

import (
	"fmt"
	"net/netip"
)

// IP protocol numbers conntrack tracks with their own state.
const (
	ProtoICMP    = 1
	ProtoTCP     = 6
	ProtoUDP     = 17
	ProtoDCCP    = 33
	ProtoGRE     = 47
	ProtoICMPv6  = 58
	ProtoSCTP    = 132
	ProtoUDPLite = 136
)

// Status bits of a conntrack entry (IPS_* of linux/netfilter/nf_conntrack_common.h).
const (
	StatusExpected   uint32 = 1 << 0
	StatusSeenReply  uint32 = 1 << 1
	StatusAssured    uint32 = 1 << 2
	StatusConfirmed  uint32 = 1 << 3
	StatusSrcNAT     uint32 = 1 << 4
	StatusDstNAT     uint32 = 1 << 5
	StatusSeqAdjust  uint32 = 1 << 6
	StatusSrcNATDone uint32 = 1 << 7
	StatusDstNATDone uint32 = 1 << 8
	StatusDying      uint32 = 1 << 9
	StatusFixedTime  uint32 = 1 << 10
	StatusTemplate   uint32 = 1 << 11
	StatusUntracked  uint32 = 1 << 12
	StatusHelper     uint32 = 1 << 13
	StatusOffload    uint32 = 1 << 14
	StatusHWOffload  uint32 = 1 << 15
)

// TCP conntrack states (enum tcp_conntrack).
const (
	TCPNone uint8 = iota
	TCPSynSent
	TCPSynRecv
	TCPEstablished
	TCPFinWait
	TCPCloseWait
	TCPLastAck
	TCPTimeWait
	TCPClose
	TCPSynSent2
)

// TCP window flags (IP_CT_TCP_FLAG_*).
const (
	TCPFlagWindowScale  uint8 = 0x01
	TCPFlagSACKPerm     uint8 = 0x02
	TCPFlagCloseInit    uint8 = 0x04
	TCPFlagBeLiberal    uint8 = 0x08
	TCPFlagDataUnacked  uint8 = 0x10
	TCPFlagMaxackSet    uint8 = 0x20
	TCPFlagChallengeAck uint8 = 0x40
)

// Tuple is one direction of a flow. For ICMP and ICMPv6, SrcPort holds
// the identifier and DstPort the type (high byte) and code (low byte), as
// conntrack keys them; ICMP returns them by name.
type Tuple struct {
	Src, Dst         [16]byte // IPv4 as v4-mapped IPv6
	SrcPort, DstPort uint16
	Proto            uint8
	V6               bool
}

// NewTuple builds a tuple of ports (TCP, UDP, SCTP, DCCP, ...).
func NewTuple(proto uint8, src, dst netip.Addr, sport, dport uint16) Tuple {
	return Tuple{Src: src.As16(), Dst: dst.As16(), SrcPort: sport, DstPort: dport, Proto: proto, V6: src.Is6() && !src.Is4In6()}
}

// NewICMPTuple builds an ICMP or ICMPv6 tuple.
func NewICMPTuple(src, dst netip.Addr, typ, code uint8, id uint16) Tuple {
	proto := uint8(ProtoICMP)
	if src.Is6() && !src.Is4In6() {
		proto = ProtoICMPv6
	}
	return NewTuple(proto, src, dst, id, uint16(typ)<<8|uint16(code))
}

// SrcAddr and DstAddr return the addresses in their own family.
func (t Tuple) SrcAddr() netip.Addr { return addr(t.Src, t.V6) }
func (t Tuple) DstAddr() netip.Addr { return addr(t.Dst, t.V6) }

func addr(b [16]byte, v6 bool) netip.Addr {
	a := netip.AddrFrom16(b)
	if !v6 {
		return a.Unmap()
	}
	return a
}

// IsICMP reports whether the tuple is ICMP or ICMPv6.
func (t Tuple) IsICMP() bool { return t.Proto == ProtoICMP || t.Proto == ProtoICMPv6 }

// ICMP returns an ICMP tuple's type, code and identifier.
func (t Tuple) ICMP() (typ, code uint8, id uint16) {
	return uint8(t.DstPort >> 8), uint8(t.DstPort), t.SrcPort
}

// Reverse returns the tuple of the other direction without NAT. For ICMP
// the caller must map the type (an echo request's reply is an echo reply);
// Reverse keeps it.
func (t Tuple) Reverse() Tuple {
	r := t
	r.Src, r.Dst = t.Dst, t.Src
	if !t.IsICMP() {
		r.SrcPort, r.DstPort = t.DstPort, t.SrcPort
	}
	return r
}

func (t Tuple) String() string {
	if t.IsICMP() {
		typ, code, id := t.ICMP()
		return fmt.Sprintf("proto %d %s -> %s type %d code %d id %d", t.Proto, t.SrcAddr(), t.DstAddr(), typ, code, id)
	}
	return fmt.Sprintf("proto %d %s -> %s",
		t.Proto, netip.AddrPortFrom(t.SrcAddr(), t.SrcPort), netip.AddrPortFrom(t.DstAddr(), t.DstPort))
}

// Key identifies a flow in a conntrack table: its original tuple and zone;
// or, with Expect set, an expectation: its expected tuple and zone.
type Key struct {
	Orig   Tuple
	Zone   uint16
	Expect bool
}

// TCPInfo is a TCP flow's tracking state.
type TCPInfo struct {
	State                  uint8
	WScaleOrig, WScaleRepl uint8
	// Flags of each direction (TCPFlag*); ctnetlink sets them under a mask,
	// which is the same set of flags.
	FlagsOrig, FlagsRepl uint8
}

// SeqAdj is a sequence number adjustment of one direction (NAT helpers
// that change payload length).
type SeqAdj struct {
	Position, OffsetBefore, OffsetAfter uint32
}

// Extra holds what few flows have; most flows carry a nil *Extra.
type Extra struct {
	Labels                  [16]byte // 128 conntrack label bits
	Helper                  string   // e.g. "ftp"; "" for none
	SeqAdjOrig, SeqAdjRepl  SeqAdj
	SCTPState               uint8
	SCTPVTagOrig, SCTPVTagR uint32
	DCCPState, DCCPRole     uint8
	DCCPHandshakeSeq        uint64
}

// Flow is one conntrack entry.
type Flow struct {
	Orig, Reply Tuple
	Zone        uint16
	Status      uint32 // Status* bits
	Timeout     uint32 // seconds left
	Mark        uint32
	TCP         TCPInfo
	Extra       *Extra
}

// Key returns the flow's identity.
func (f *Flow) Key() Key { return Key{Orig: f.Orig, Zone: f.Zone} }

// SrcNAT reports whether the flow's source is translated: its reply comes
// back to another address or port than it left from.
func (f *Flow) SrcNAT() bool {
	return f.Reply.Dst != f.Orig.Src || (!f.Orig.IsICMP() && f.Reply.DstPort != f.Orig.SrcPort)
}

// DstNAT reports whether the flow's destination is translated.
func (f *Flow) DstNAT() bool {
	return f.Reply.Src != f.Orig.Dst || (!f.Orig.IsICMP() && f.Reply.SrcPort != f.Orig.DstPort)
}

// Equal reports whether two flows are the same in every replicated field.
func (f *Flow) Equal(g *Flow) bool {
	if f.Orig != g.Orig || f.Reply != g.Reply || f.Zone != g.Zone || f.Status != g.Status ||
		f.Timeout != g.Timeout || f.Mark != g.Mark || f.TCP != g.TCP {
		return false
	}
	switch {
	case f.Extra == nil && g.Extra == nil:
		return true
	case f.Extra == nil:
		return *g.Extra == Extra{}
	case g.Extra == nil:
		return *f.Extra == Extra{}
	}
	return *f.Extra == *g.Extra
}

func (f *Flow) String() string {
	s := fmt.Sprintf("%v zone %d status %#x timeout %ds mark %#x", f.Orig, f.Zone, f.Status, f.Timeout, f.Mark)
	if f.SrcNAT() || f.DstNAT() {
		s += fmt.Sprintf(" reply %v", f.Reply)
	}
	if f.Orig.Proto == ProtoTCP {
		s += fmt.Sprintf(" tcp state %d", f.TCP.State)
	}
	return s
}
