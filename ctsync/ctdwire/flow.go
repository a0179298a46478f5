package ctdwire

// The mapping between a flow message's State and ct.Flow.

import (
	"strings"

	"github.com/ctha/ctha/ctsync/ct"
)

// Dropped says what of a flow or an expectation could not be carried
// from one side to the other. The mapping never fails for it: the caller
// counts it (and may refuse the object, as for an expectation in a zone).
type Dropped uint16

// What can be dropped.
const (
	// DroppedMaster: a related flow's master tuple (NTA_MASTER_*); ct.Flow
	// has none, the kernel finds the master through the expectation.
	DroppedMaster Dropped = 1 << iota
	// DroppedSynproxy: non-zero SYNPROXY offsets (conntrackd sends zeros
	// for every flow; those are not counted).
	DroppedSynproxy
	// DroppedLabels: labels above bit 127 (ct.Extra holds 128).
	DroppedLabels
	// DroppedZone: an expectation's zone other than 0; expectation
	// messages have no zone attribute (flows have one).
	DroppedZone
	// DroppedTCPFlags: the TCP window flags, which conntrackd does not carry.
	DroppedTCPFlags
	// DroppedDCCPSeq: the DCCP handshake sequence, likewise.
	DroppedDCCPSeq
	// DroppedReply: a reply tuple the NAT attributes cannot express (an
	// ICMP identifier or type changed by NAT, another protocol).
	DroppedReply
	// DroppedHelper: a helper name over 11 bytes, which conntrackd rejects.
	DroppedHelper
	// DroppedExpectNAT: an expectation's NAT tuple and direction.
	DroppedExpectNAT
)

func (d Dropped) String() string {
	names := []string{"master", "synproxy", "labels", "zone", "tcp-flags", "dccp-seq", "reply", "helper", "expect-nat"}
	var s []string
	for i, n := range names {
		if d&(1<<i) != 0 {
			s = append(s, n)
		}
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ",")
}

// Flow maps a flow message to a ct.Flow. The reply tuple is the original
// one inverted (as the kernel does for a flow without NAT), with the NAT
// attributes applied. It fails with ErrIncomplete without
// addresses or protocol.
func (s *State) Flow() (ct.Flow, Dropped, error) {
	var f ct.Flow
	var d Dropped
	if s.Has&(HasIPv4|HasIPv6) == 0 || !s.has(HasL4Proto) {
		return f, 0, ErrIncomplete
	}
	v6 := s.has(HasIPv6)
	f.Orig = ct.Tuple{Src: s.Src.As16(), Dst: s.Dst.As16(), Proto: s.Proto, V6: v6}
	if isICMP(s.Proto) {
		f.Orig.SrcPort = s.ICMPID
		f.Orig.DstPort = uint16(s.ICMPType)<<8 | uint16(s.ICMPCode)
	} else if s.has(HasPort) {
		f.Orig.SrcPort, f.Orig.DstPort = s.SrcPort, s.DstPort
	}
	invert(&f.Reply, &f.Orig)
	if s.Has&(HasSNATIPv4|HasSNATIPv6) != 0 {
		f.Reply.Dst = s.SNAT.As16()
	}
	if s.Has&(HasDNATIPv4|HasDNATIPv6) != 0 {
		f.Reply.Src = s.DNAT.As16()
	}
	if s.has(HasSPATPort) {
		f.Reply.DstPort = s.SPAT
	}
	if s.has(HasDPATPort) {
		f.Reply.SrcPort = s.DPAT
	}
	f.Status, f.Timeout, f.Mark, f.Zone = s.Status, s.Timeout, s.Mark, s.Zone
	if s.Proto == ct.ProtoTCP {
		f.TCP = ct.TCPInfo{State: s.TCPState, WScaleOrig: s.WScaleOrig, WScaleRepl: s.WScaleRepl}
	}
	var x ct.Extra
	x.Helper = s.Helper
	for i, w := range s.Labels {
		if i >= 4 {
			if w != 0 {
				d |= DroppedLabels
			}
			continue
		}
		// ct.Extra.Labels is the kernel's bitmap: label n is bit n%8 of
		// byte n/8.
		x.Labels[4*i], x.Labels[4*i+1], x.Labels[4*i+2], x.Labels[4*i+3] = byte(w), byte(w>>8), byte(w>>16), byte(w>>24)
	}
	if s.has(HasNATSeqAdj) {
		x.SeqAdjOrig = ct.SeqAdj{Position: s.SeqAdj[0], OffsetBefore: s.SeqAdj[1], OffsetAfter: s.SeqAdj[2]}
		x.SeqAdjRepl = ct.SeqAdj{Position: s.SeqAdj[3], OffsetBefore: s.SeqAdj[4], OffsetAfter: s.SeqAdj[5]}
	}
	// Attributes of another protocol than the flow's are ignored.
	switch s.Proto {
	case ct.ProtoSCTP:
		x.SCTPState, x.SCTPVTagOrig, x.SCTPVTagR = s.SCTPState, s.SCTPVTagOrig, s.VTagRepl
	case ct.ProtoDCCP:
		x.DCCPState, x.DCCPRole = s.DCCPState, s.DCCPRole
	}
	if x != (ct.Extra{}) {
		f.Extra = &x
	}
	if s.Has&(HasMasterIPv4|HasMasterIPv6) != 0 {
		d |= DroppedMaster
	}
	if s.Synproxy != [3]uint32{} {
		d |= DroppedSynproxy
	}
	return f, d, nil
}

// StateOf maps a ct.Flow to the attributes conntrackd 1.4.7 sends for it,
// in its order: addresses, status, protocol, the protocol's own (ports,
// TCP state and window scales, SCTP, DCCP, ICMP), timeout (if not 0),
// mark, NAT, sequence adjustment, helper, labels, zone (if not 0). No
// master, no SYNPROXY.
func StateOf(f *ct.Flow) (State, Dropped) {
	var d Dropped
	s := State{Has: HasStatus | HasL4Proto | HasMark, Status: f.Status, Proto: f.Orig.Proto, Mark: f.Mark}
	s.Src, s.Dst = f.Orig.SrcAddr(), f.Orig.DstAddr()
	if f.Orig.V6 {
		s.Has |= HasIPv6
	} else {
		s.Has |= HasIPv4
	}
	var x ct.Extra
	if f.Extra != nil {
		x = *f.Extra
	}
	switch p := f.Orig.Proto; {
	case isICMP(p):
		s.Has |= HasICMPType | HasICMPCode | HasICMPID
		s.ICMPType, s.ICMPCode, s.ICMPID = f.Orig.ICMP()
	case p == ct.ProtoTCP, p == ct.ProtoUDP, p == ct.ProtoUDPLite, p == ct.ProtoSCTP, p == ct.ProtoDCCP:
		s.Has |= HasPort
		s.SrcPort, s.DstPort = f.Orig.SrcPort, f.Orig.DstPort
	}
	switch f.Orig.Proto {
	case ct.ProtoTCP:
		s.Has |= HasTCPState | HasWScaleOrig | HasWScaleRepl
		s.TCPState, s.WScaleOrig, s.WScaleRepl = f.TCP.State, f.TCP.WScaleOrig, f.TCP.WScaleRepl
		if f.TCP.FlagsOrig|f.TCP.FlagsRepl != 0 {
			d |= DroppedTCPFlags
		}
	case ct.ProtoSCTP:
		s.Has |= HasSCTPState | HasSCTPVTagOrig | HasSCTPVTagRepl
		s.SCTPState, s.SCTPVTagOrig, s.VTagRepl = x.SCTPState, x.SCTPVTagOrig, x.SCTPVTagR
	case ct.ProtoDCCP:
		s.Has |= HasDCCPState | HasDCCPRole
		s.DCCPState, s.DCCPRole = x.DCCPState, x.DCCPRole
		if x.DCCPHandshakeSeq != 0 {
			d |= DroppedDCCPSeq
		}
	}
	if f.Timeout != 0 {
		s.Has |= HasTimeout
		s.Timeout = f.Timeout
	}
	var inv ct.Tuple
	invert(&inv, &f.Orig)
	snat, dnat := HasSNATIPv4, HasDNATIPv4
	if f.Orig.V6 {
		snat, dnat = HasSNATIPv6, HasDNATIPv6
	}
	if f.Reply.Dst != inv.Dst {
		s.SNAT = f.Reply.DstAddr()
		s.Has |= snat
	}
	if f.Reply.Src != inv.Src {
		s.DNAT = f.Reply.SrcAddr()
		s.Has |= dnat
	}
	if s.has(HasPort) {
		if f.Reply.DstPort != inv.DstPort {
			s.Has |= HasSPATPort
			s.SPAT = f.Reply.DstPort
		}
		if f.Reply.SrcPort != inv.SrcPort {
			s.Has |= HasDPATPort
			s.DPAT = f.Reply.SrcPort
		}
	}
	if x.SeqAdjOrig != (ct.SeqAdj{}) || x.SeqAdjRepl != (ct.SeqAdj{}) {
		s.Has |= HasNATSeqAdj
		s.SeqAdj = [6]uint32{x.SeqAdjOrig.Position, x.SeqAdjOrig.OffsetBefore, x.SeqAdjOrig.OffsetAfter,
			x.SeqAdjRepl.Position, x.SeqAdjRepl.OffsetBefore, x.SeqAdjRepl.OffsetAfter}
	}
	if x.Helper != "" {
		if 4+len(x.Helper)+1 > helperMaxLen || strings.IndexByte(x.Helper, 0) >= 0 {
			d |= DroppedHelper
		} else {
			s.Has |= HasHelper
			s.Helper = x.Helper
		}
	}
	if x.Labels != ([16]byte{}) {
		s.Has |= HasLabels
		s.Labels = make([]uint32, 4)
		for i := range s.Labels {
			l := x.Labels[4*i:]
			s.Labels[i] = uint32(l[0]) | uint32(l[1])<<8 | uint32(l[2])<<16 | uint32(l[3])<<24
		}
	}
	if f.Zone != 0 {
		s.Has |= HasZone
		s.Zone = f.Zone
	}
	if g, _, err := s.Flow(); err != nil || g.Reply != f.Reply {
		d |= DroppedReply
	}
	return s, d
}

func isICMP(p uint8) bool { return p == ct.ProtoICMP || p == ct.ProtoICMPv6 }

// invert sets r to the reply tuple the kernel gives a flow without NAT
// (nf_ct_invert_tuple): addresses and ports swapped; for ICMP and ICMPv6
// the identifier kept and a query type turned into its reply type.
func invert(r, o *ct.Tuple) {
	*r = o.Reverse()
	if o.IsICMP() {
		typ, code, _ := o.ICMP()
		r.DstPort = uint16(icmpInverse(o.Proto, typ))<<8 | uint16(code)
	}
}

// icmpInverse maps an ICMP query type to its answer and back, as the
// kernel's invmap tables do. Other types map to themselves.
func icmpInverse(proto, typ uint8) uint8 {
	if proto == ct.ProtoICMP {
		switch typ {
		case 8, 0:
			return 8 - typ
		case 13, 15, 17:
			return typ + 1
		case 14, 16, 18:
			return typ - 1
		}
		return typ
	}
	switch typ {
	case 128, 139:
		return typ + 1
	case 129, 140:
		return typ - 1
	}
	return typ
}

// AppendFlow appends a flow message of type t (TypeCTNew, TypeCTUpd or
// TypeCTDel) for f, with sequence number seq and flags, and reports what
// it could not carry.
func AppendFlow(b []byte, t Type, flags Flags, seq uint32, f *ct.Flow) ([]byte, Dropped) {
	s, d := StateOf(f)
	m := Msg{Type: t, Flags: flags, Seq: seq, Attrs: AppendState(nil, &s)}
	return AppendMsg(b, &m), d
}

// Flow decodes a flow message.
func (m *Msg) Flow() (ct.Flow, Dropped, error) {
	if m.Type > TypeCTDel {
		return ct.Flow{}, 0, ErrType
	}
	s, err := ParseState(m.Attrs)
	if err != nil {
		return ct.Flow{}, 0, err
	}
	return s.Flow()
}
