package ctdwire

// State: the attributes of a flow message, as conntrackd sends them.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Attribute presence bits of State.Has: bit n is attribute type n.
const (
	HasIPv4 uint64 = 1 << iota
	HasIPv6
	HasL4Proto
	HasPort
	HasTCPState
	HasStatus
	HasTimeout
	HasMark
	HasMasterIPv4
	HasMasterIPv6
	HasMasterL4Proto
	HasMasterPort
	HasSNATIPv4
	HasDNATIPv4
	HasSPATPort
	HasDPATPort
	HasNATSeqAdj
	HasSCTPState
	HasSCTPVTagOrig
	HasSCTPVTagRepl
	HasDCCPState
	HasDCCPRole
	HasICMPType
	HasICMPCode
	HasICMPID
	HasWScaleOrig
	HasWScaleRepl
	HasHelper
	HasLabels
	HasSNATIPv6
	HasDNATIPv6
	HasSynproxy
	HasZone
)

// State is the content of a flow message (CT_NEW, CT_UPD, CT_DEL): every
// attribute conntrackd 1.4.7 knows, with Has saying which were present.
// Decoding and encoding a State is lossless, in conntrackd's order.
type State struct {
	Has uint64 // Has* bits

	Src, Dst         netip.Addr // NTA_IPV4 or NTA_IPV6
	Proto            uint8      // NTA_L4PROTO
	SrcPort, DstPort uint16     // NTA_PORT
	TCPState         uint8
	Status           uint32
	Timeout          uint32
	Mark             uint32

	// The master of a related flow (NTA_MASTER_*).
	MasterSrc, MasterDst         netip.Addr
	MasterProto                  uint8
	MasterSrcPort, MasterDstPort uint16

	// NAT: the reply tuple's addresses and ports where they are not the
	// original tuple's swapped.
	SNAT, DNAT netip.Addr // reply destination, reply source (NTA_SNAT_*, NTA_DNAT_*)
	SPAT, DPAT uint16     // reply destination port, reply source port

	SeqAdj [6]uint32 // orig position, offset before, after; the same for reply

	SCTPState              uint8
	SCTPVTagOrig, VTagRepl uint32
	DCCPState, DCCPRole    uint8
	ICMPType, ICMPCode     uint8
	ICMPID                 uint16
	WScaleOrig, WScaleRepl uint8
	Helper                 string
	Labels                 []uint32 // word i holds labels 32i..32i+31
	Synproxy               [3]uint32
	Zone                   uint16
}

func (s *State) has(bits uint64) bool { return s.Has&bits == bits }

// swap16 is how conntrackd on a little-endian host writes the NAT ports
// and the ICMP identifier: it byte-swaps a value libnetfilter_conntrack
// already holds in network order. x86 peers agree with each other; the
// bytes on the wire are the value in little-endian order.
func swap16(v uint16) uint16 { return v<<8 | v>>8 }

// AppendState appends s's attributes to b, in the order conntrackd's
// ct2msg writes them.
func AppendState(b []byte, s *State) []byte {
	if s.has(HasIPv4) {
		a, d := s.Src.As4(), s.Dst.As4()
		b = appendAttr(b, ntaIPv4, append(a[:], d[:]...)...)
	} else if s.has(HasIPv6) {
		a, d := s.Src.As16(), s.Dst.As16()
		b = appendAttr(b, ntaIPv6, append(a[:], d[:]...)...)
	}
	if s.has(HasStatus) {
		b = appendU32(b, ntaStatus, s.Status)
	}
	if s.has(HasL4Proto) {
		b = appendU8(b, ntaL4Proto, s.Proto)
	}
	if s.has(HasPort) {
		b = appendAttr(b, ntaPort, byte(s.SrcPort>>8), byte(s.SrcPort), byte(s.DstPort>>8), byte(s.DstPort))
	}
	if s.has(HasTCPState) {
		b = appendU8(b, ntaTCPState, s.TCPState)
	}
	if s.has(HasWScaleOrig) {
		b = appendU8(b, ntaWScaleOrig, s.WScaleOrig)
	}
	if s.has(HasWScaleRepl) {
		b = appendU8(b, ntaWScaleRepl, s.WScaleRepl)
	}
	if s.has(HasSCTPState) {
		b = appendU8(b, ntaSCTPState, s.SCTPState)
	}
	if s.has(HasSCTPVTagOrig) {
		b = appendU32(b, ntaSCTPVTagOrig, s.SCTPVTagOrig)
	}
	if s.has(HasSCTPVTagRepl) {
		b = appendU32(b, ntaSCTPVTagRepl, s.VTagRepl)
	}
	if s.has(HasDCCPState) {
		b = appendU8(b, ntaDCCPState, s.DCCPState)
	}
	if s.has(HasDCCPRole) {
		b = appendU8(b, ntaDCCPRole, s.DCCPRole)
	}
	if s.has(HasICMPType) {
		b = appendU8(b, ntaICMPType, s.ICMPType)
	}
	if s.has(HasICMPCode) {
		b = appendU8(b, ntaICMPCode, s.ICMPCode)
	}
	if s.has(HasICMPID) {
		b = appendU16(b, ntaICMPID, swap16(s.ICMPID))
	}
	if s.has(HasTimeout) {
		b = appendU32(b, ntaTimeout, s.Timeout)
	}
	if s.has(HasMark) {
		b = appendU32(b, ntaMark, s.Mark)
	}
	if s.has(HasMasterIPv4) {
		a, d := s.MasterSrc.As4(), s.MasterDst.As4()
		b = appendAttr(b, ntaMasterIPv4, append(a[:], d[:]...)...)
	} else if s.has(HasMasterIPv6) {
		a, d := s.MasterSrc.As16(), s.MasterDst.As16()
		b = appendAttr(b, ntaMasterIPv6, append(a[:], d[:]...)...)
	}
	if s.has(HasMasterL4Proto) {
		b = appendU8(b, ntaMasterL4, s.MasterProto)
	}
	if s.has(HasMasterPort) {
		b = appendAttr(b, ntaMasterPort, byte(s.MasterSrcPort>>8), byte(s.MasterSrcPort), byte(s.MasterDstPort>>8), byte(s.MasterDstPort))
	}
	if s.has(HasSNATIPv4) {
		a := s.SNAT.As4()
		b = appendAttr(b, ntaSNATIPv4, a[:]...)
	}
	if s.has(HasDNATIPv4) {
		a := s.DNAT.As4()
		b = appendAttr(b, ntaDNATIPv4, a[:]...)
	}
	if s.has(HasSNATIPv6) {
		a := s.SNAT.As16()
		b = appendAttr(b, ntaSNATIPv6, a[:]...)
	}
	if s.has(HasDNATIPv6) {
		a := s.DNAT.As16()
		b = appendAttr(b, ntaDNATIPv6, a[:]...)
	}
	if s.has(HasSPATPort) {
		b = appendU16(b, ntaSPATPort, swap16(s.SPAT))
	}
	if s.has(HasDPATPort) {
		b = appendU16(b, ntaDPATPort, swap16(s.DPAT))
	}
	if s.has(HasNATSeqAdj) {
		var v []byte
		for _, x := range s.SeqAdj {
			v = binary.BigEndian.AppendUint32(v, x)
		}
		b = appendAttr(b, ntaNATSeqAdj, v...)
	}
	if s.has(HasHelper) {
		b = appendAttr(b, ntaHelper, append([]byte(s.Helper), 0)...)
	}
	if s.has(HasLabels) {
		var v []byte
		for _, w := range s.Labels {
			v = binary.BigEndian.AppendUint32(v, w)
		}
		b = appendAttr(b, ntaLabels, v...)
	}
	if s.has(HasSynproxy) {
		var v []byte
		for _, x := range s.Synproxy {
			v = binary.BigEndian.AppendUint32(v, x)
		}
		b = appendAttr(b, ntaSynproxy, v...)
	}
	if s.has(HasZone) {
		b = appendU16(b, ntaZone, s.Zone)
	}
	return b
}

// ParseState decodes a flow message's attributes. It rejects what
// conntrackd 1.4.7 rejects (msg2ct): an attribute of an unknown type, a
// fixed-size attribute of another size, a string or label set over its
// limit. It does not require any attribute: see Flow.
func ParseState(b []byte) (State, error) {
	var s State
	a := attrs{b: b}
	for typ, v, ok := a.next(); ok; typ, v, ok = a.next() {
		if typ >= ntaMax {
			return s, fmt.Errorf("%w: unknown type %d", ErrAttr, typ)
		}
		if typ == ntaLabels && (len(v) == 0 || len(v)%4 != 0) {
			// conntrackd ignores labels that are not whole words.
			continue
		}
		if !s.parse(&a, typ, v) {
			return s, a.err
		}
		// One of a pair of alternatives replaces the other, as the
		// fields they share.
		if alt, ok := alternative[typ]; ok {
			s.Has &^= 1 << alt
		}
		s.Has |= 1 << typ
	}
	return s, a.err
}

// alternative maps an attribute to the one it excludes.
var alternative = map[uint16]uint16{
	ntaIPv4: ntaIPv6, ntaIPv6: ntaIPv4,
	ntaMasterIPv4: ntaMasterIPv6, ntaMasterIPv6: ntaMasterIPv4,
	ntaSNATIPv4: ntaSNATIPv6, ntaSNATIPv6: ntaSNATIPv4,
	ntaDNATIPv4: ntaDNATIPv6, ntaDNATIPv6: ntaDNATIPv4,
}

func (s *State) parse(a *attrs, typ uint16, v []byte) bool {
	u8 := func(p *uint8) bool {
		if a.fixed(typ, v, 1) {
			*p = v[0]
			return true
		}
		return false
	}
	u16 := func(p *uint16) bool {
		if a.fixed(typ, v, 2) {
			*p = binary.BigEndian.Uint16(v)
			return true
		}
		return false
	}
	u32 := func(p *uint32) bool {
		if a.fixed(typ, v, 4) {
			*p = binary.BigEndian.Uint32(v)
			return true
		}
		return false
	}
	addrs := func(src, dst *netip.Addr, n int) bool {
		if !a.fixed(typ, v, 2*n) {
			return false
		}
		*src, _ = netip.AddrFromSlice(v[:n])
		*dst, _ = netip.AddrFromSlice(v[n:])
		return true
	}
	addr := func(p *netip.Addr, n int) bool {
		if !a.fixed(typ, v, n) {
			return false
		}
		*p, _ = netip.AddrFromSlice(v)
		return true
	}
	ports := func(sp, dp *uint16) bool {
		if !a.fixed(typ, v, 4) {
			return false
		}
		*sp, *dp = binary.BigEndian.Uint16(v), binary.BigEndian.Uint16(v[2:])
		return true
	}
	words := func(dst []uint32) bool {
		if !a.fixed(typ, v, 4*len(dst)) {
			return false
		}
		for i := range dst {
			dst[i] = binary.BigEndian.Uint32(v[4*i:])
		}
		return true
	}
	switch typ {
	case ntaIPv4:
		return addrs(&s.Src, &s.Dst, 4)
	case ntaIPv6:
		return addrs(&s.Src, &s.Dst, 16)
	case ntaL4Proto:
		return u8(&s.Proto)
	case ntaPort:
		return ports(&s.SrcPort, &s.DstPort)
	case ntaTCPState:
		return u8(&s.TCPState)
	case ntaStatus:
		return u32(&s.Status)
	case ntaTimeout:
		return u32(&s.Timeout)
	case ntaMark:
		return u32(&s.Mark)
	case ntaMasterIPv4:
		return addrs(&s.MasterSrc, &s.MasterDst, 4)
	case ntaMasterIPv6:
		return addrs(&s.MasterSrc, &s.MasterDst, 16)
	case ntaMasterL4:
		return u8(&s.MasterProto)
	case ntaMasterPort:
		return ports(&s.MasterSrcPort, &s.MasterDstPort)
	case ntaSNATIPv4:
		return addr(&s.SNAT, 4)
	case ntaDNATIPv4:
		return addr(&s.DNAT, 4)
	case ntaSNATIPv6:
		return addr(&s.SNAT, 16)
	case ntaDNATIPv6:
		return addr(&s.DNAT, 16)
	case ntaSPATPort:
		ok := u16(&s.SPAT)
		s.SPAT = swap16(s.SPAT)
		return ok
	case ntaDPATPort:
		ok := u16(&s.DPAT)
		s.DPAT = swap16(s.DPAT)
		return ok
	case ntaNATSeqAdj:
		return words(s.SeqAdj[:])
	case ntaSCTPState:
		return u8(&s.SCTPState)
	case ntaSCTPVTagOrig:
		return u32(&s.SCTPVTagOrig)
	case ntaSCTPVTagRepl:
		return u32(&s.VTagRepl)
	case ntaDCCPState:
		return u8(&s.DCCPState)
	case ntaDCCPRole:
		return u8(&s.DCCPRole)
	case ntaICMPType:
		return u8(&s.ICMPType)
	case ntaICMPCode:
		return u8(&s.ICMPCode)
	case ntaICMPID:
		ok := u16(&s.ICMPID)
		s.ICMPID = swap16(s.ICMPID)
		return ok
	case ntaWScaleOrig:
		return u8(&s.WScaleOrig)
	case ntaWScaleRepl:
		return u8(&s.WScaleRepl)
	case ntaHelper:
		// conntrackd takes the bytes up to the first NUL, and a name
		// without one within the attribute would read past it: refused,
		// as one that leaves no room for its NUL (it could not be sent
		// back).
		name, ok := cString(v, helperMaxLen)
		if !ok {
			a.err = fmt.Errorf("%w: helper name of %d bytes", ErrAttr, len(v))
			return false
		}
		s.Helper = name
		return true
	case ntaLabels:
		if 4+len(v) > labelsMaxLen {
			a.err = fmt.Errorf("%w: labels of %d bytes", ErrAttr, len(v))
			return false
		}
		s.Labels = make([]uint32, len(v)/4)
		return words(s.Labels)
	case ntaSynproxy:
		return words(s.Synproxy[:])
	case ntaZone:
		return u16(&s.Zone)
	}
	return true
}

// cString is the NUL-terminated string of an attribute's value v, whose
// attribute (4 bytes of header, the string and its NUL) must fit in
// limit bytes; ok is false when it does not, or v holds no NUL.
func cString(v []byte, limit int) (string, bool) {
	i := bytes.IndexByte(v, 0)
	if i < 0 || 4+i+1 > limit {
		return "", false
	}
	return string(v[:i]), true
}
