package ctdwire

// Expectation messages (EXP_NEW, EXP_UPD, EXP_DEL).

import (
	"fmt"
	"net/netip"

	"github.com/ctha/ctha/ctsync/ct"
)

// ExpectTuple is one of an expectation message's tuples. Ports are
// present only for TCP, UDP, SCTP and DCCP masters.
type ExpectTuple struct {
	Src, Dst         netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16
}

// ExpectState is the content of an expectation message: every attribute
// of conntrackd 1.4.7's exp2msg. Has bit n is attribute type n
// (NTA_EXP_*: 0-3 master, 4-7 expected, 8-11 mask, each addresses IPv4,
// IPv6, protocol, ports; 12 timeout, 13 flags, 14 class, 15-17 NAT
// addresses, ports, protocol, 18 NAT direction, 19 helper, 20 function).
type ExpectState struct {
	Has                           uint32
	Master, Expected, Mask, NAT   ExpectTuple
	Timeout, Flags, Class, NATDir uint32
	Helper, Fn                    string
}

// AppendExpectState appends s's attributes to b in exp2msg's order.
func AppendExpectState(b []byte, s *ExpectState) []byte {
	tuple := func(base uint16, t *ExpectTuple) {
		if s.Has&(1<<base) != 0 {
			a, d := t.Src.As4(), t.Dst.As4()
			b = appendAttr(b, base, append(a[:], d[:]...)...)
		} else if s.Has&(1<<(base+1)) != 0 {
			a, d := t.Src.As16(), t.Dst.As16()
			b = appendAttr(b, base+1, append(a[:], d[:]...)...)
		}
		if s.Has&(1<<(base+2)) != 0 {
			b = appendU8(b, base+2, t.Proto)
		}
		if s.Has&(1<<(base+3)) != 0 {
			b = appendAttr(b, base+3, byte(t.SrcPort>>8), byte(t.SrcPort), byte(t.DstPort>>8), byte(t.DstPort))
		}
	}
	tuple(ntaExpMasterIPv4, &s.Master)
	tuple(ntaExpIPv4, &s.Expected)
	tuple(ntaExpMaskIPv4, &s.Mask)
	for _, u := range []struct {
		typ uint16
		v   uint32
	}{{ntaExpTimeout, s.Timeout}, {ntaExpFlags, s.Flags}, {ntaExpClass, s.Class}} {
		if s.Has&(1<<u.typ) != 0 {
			b = appendU32(b, u.typ, u.v)
		}
	}
	if s.Has&(1<<ntaExpNATIPv4) != 0 {
		a, d := s.NAT.Src.As4(), s.NAT.Dst.As4()
		b = appendAttr(b, ntaExpNATIPv4, append(a[:], d[:]...)...)
	}
	if s.Has&(1<<ntaExpNATL4) != 0 {
		b = appendU8(b, ntaExpNATL4, s.NAT.Proto)
	}
	if s.Has&(1<<ntaExpNATPort) != 0 {
		b = appendAttr(b, ntaExpNATPort, byte(s.NAT.SrcPort>>8), byte(s.NAT.SrcPort), byte(s.NAT.DstPort>>8), byte(s.NAT.DstPort))
	}
	if s.Has&(1<<ntaExpNATDir) != 0 {
		b = appendU32(b, ntaExpNATDir, s.NATDir)
	}
	if s.Has&(1<<ntaExpHelper) != 0 {
		b = appendAttr(b, ntaExpHelper, append([]byte(s.Helper), 0)...)
	}
	if s.Has&(1<<ntaExpFn) != 0 {
		b = appendAttr(b, ntaExpFn, append([]byte(s.Fn), 0)...)
	}
	return b
}

// ParseExpectState decodes an expectation message's attributes, with
// conntrackd's checks (msg2exp).
func ParseExpectState(b []byte) (ExpectState, error) {
	var s ExpectState
	a := attrs{b: b}
	for typ, v, ok := a.next(); ok; typ, v, ok = a.next() {
		if typ >= ntaExpMax {
			return s, fmt.Errorf("%w: unknown expectation attribute %d", ErrAttr, typ)
		}
		var t *ExpectTuple
		switch {
		case typ < ntaExpMaskIPv4+4:
			t = []*ExpectTuple{&s.Master, &s.Expected, &s.Mask}[typ/4]
		case typ >= ntaExpNATIPv4 && typ <= ntaExpNATL4:
			t = &s.NAT
		}
		switch {
		case typ == ntaExpNATIPv4 || (typ < 12 && typ%4 == 0):
			if !a.fixed(typ, v, 8) {
				return s, a.err
			}
			t.Src, t.Dst = netip.AddrFrom4([4]byte(v[:4])), netip.AddrFrom4([4]byte(v[4:]))
			if typ < 12 {
				s.Has &^= 1 << (typ + 1)
			}
		case typ < 12 && typ%4 == 1:
			if !a.fixed(typ, v, 32) {
				return s, a.err
			}
			t.Src, t.Dst = netip.AddrFrom16([16]byte(v[:16])), netip.AddrFrom16([16]byte(v[16:]))
			s.Has &^= 1 << (typ - 1)
		case typ == ntaExpNATL4 || (typ < 12 && typ%4 == 2):
			if !a.fixed(typ, v, 1) {
				return s, a.err
			}
			t.Proto = v[0]
		case typ == ntaExpNATPort || (typ < 12 && typ%4 == 3):
			if !a.fixed(typ, v, 4) {
				return s, a.err
			}
			t.SrcPort, t.DstPort = uint16(v[0])<<8|uint16(v[1]), uint16(v[2])<<8|uint16(v[3])
		case typ == ntaExpHelper || typ == ntaExpFn:
			limit := helperMaxLen
			p := &s.Helper
			if typ == ntaExpFn {
				limit, p = expFnMaxLen, &s.Fn
			}
			name, ok := cString(v, limit)
			if !ok {
				return s, fmt.Errorf("%w: expectation string %d of %d bytes", ErrAttr, typ, len(v))
			}
			*p = name
		default: // 12, 13, 14, 18: u32
			if !a.fixed(typ, v, 4) {
				return s, a.err
			}
			x := uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3])
			*map[uint16]*uint32{ntaExpTimeout: &s.Timeout, ntaExpFlags: &s.Flags, ntaExpClass: &s.Class, ntaExpNATDir: &s.NATDir}[typ] = x
		}
		s.Has |= 1 << typ
	}
	return s, a.err
}

func (t *ExpectTuple) tuple(v6 bool) ct.Tuple {
	return ct.Tuple{Src: t.Src.As16(), Dst: t.Dst.As16(), SrcPort: t.SrcPort, DstPort: t.DstPort, Proto: t.Proto, V6: v6}
}

// Expect maps an expectation message to a ct.Expect (zone 0). The NAT
// tuple is dropped (DroppedExpectNAT). It fails with ErrIncomplete
// without the master's and the expected tuple's addresses.
func (s *ExpectState) Expect() (ct.Expect, Dropped, error) {
	var d Dropped
	if s.Has&(3<<ntaExpMasterIPv4) == 0 || s.Has&(3<<ntaExpIPv4) == 0 {
		return ct.Expect{}, 0, ErrIncomplete
	}
	v6 := s.Has&(1<<ntaExpMasterIPv6) != 0
	e := ct.Expect{
		Master: s.Master.tuple(v6), Tuple: s.Expected.tuple(v6), Mask: s.Mask.tuple(v6),
		Timeout: s.Timeout, Flags: s.Flags, Class: s.Class, Helper: s.Helper, Fn: s.Fn,
	}
	if s.Has&(0xf<<ntaExpNATIPv4) != 0 {
		d |= DroppedExpectNAT
	}
	return e, d, nil
}

// ExpectStateOf maps a ct.Expect to the attributes conntrackd sends.
func ExpectStateOf(e *ct.Expect) (ExpectState, Dropped) {
	var d Dropped
	var s ExpectState
	ports := e.Master.Proto == ct.ProtoTCP || e.Master.Proto == ct.ProtoUDP || e.Master.Proto == ct.ProtoSCTP || e.Master.Proto == ct.ProtoDCCP
	fam := uint32(0)
	if e.Master.V6 {
		fam = 1
	}
	for i, t := range []*ct.Tuple{&e.Master, &e.Tuple, &e.Mask} {
		base := uint32(4 * i)
		s.Has |= 1<<(base+fam) | 1<<(base+2)
		if ports {
			s.Has |= 1 << (base + 3)
		}
		*[]*ExpectTuple{&s.Master, &s.Expected, &s.Mask}[i] = ExpectTuple{
			Src: t.SrcAddr(), Dst: t.DstAddr(), Proto: t.Proto, SrcPort: t.SrcPort, DstPort: t.DstPort}
	}
	s.Has |= 1 << ntaExpFlags
	s.Flags = e.Flags
	if e.Timeout != 0 {
		s.Has |= 1 << ntaExpTimeout
		s.Timeout = e.Timeout
	}
	if e.Class != 0 {
		s.Has |= 1 << ntaExpClass
		s.Class = e.Class
	}
	if e.Helper != "" {
		if 4+len(e.Helper)+1 > helperMaxLen {
			d |= DroppedHelper
		} else {
			s.Has |= 1 << ntaExpHelper
			s.Helper = e.Helper
		}
	}
	if e.Fn != "" && 4+len(e.Fn)+1 <= expFnMaxLen {
		s.Has |= 1 << ntaExpFn
		s.Fn = e.Fn
	}
	if e.Zone != 0 {
		d |= DroppedZone
	}
	return s, d
}

// Expect decodes an expectation message.
func (m *Msg) Expect() (ct.Expect, Dropped, error) {
	if !m.Type.IsExpect() {
		return ct.Expect{}, 0, ErrType
	}
	s, err := ParseExpectState(m.Attrs)
	if err != nil {
		return ct.Expect{}, 0, err
	}
	return s.Expect()
}
