package kernel

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/ctha/ctha/ctsync/ct"
)

// The flow decoder walks a message's attributes in place. It replaced
// ti-mo/conntrack's decoding on the hot path: that copies every
// attribute's data and allocates a decoder per nest (38 allocations and
// about 1.2 µs per IPv4 TCP event), which was a third of the sender's CPU
// while replicating 100k new flows. ti-mo still decodes expectations, and
// remains the reference the tests compare this decoder with.

// attrIter iterates over a run of netlink attributes without copying.
type attrIter struct {
	b    []byte
	typ  uint16 // type, flag bits masked off
	data []byte // payload of the current attribute
	err  error
}

// nlaTypeMask masks NLA_F_NESTED and NLA_F_NET_BYTEORDER off a type.
const nlaTypeMask = 0x3fff

// next advances to the next attribute; false at the end or on a malformed
// attribute (it.err).
func (it *attrIter) next() bool {
	for it.err == nil && len(it.b) > 0 {
		if len(it.b) < 4 {
			it.err = fmt.Errorf("%d bytes left, an attribute header is 4: %w", len(it.b), errMalformed)
			return false
		}
		l := int(binary.NativeEndian.Uint16(it.b))
		typ := binary.NativeEndian.Uint16(it.b[2:])
		switch {
		case l > len(it.b):
			it.err = fmt.Errorf("attribute %d of %d bytes in %d: %w", typ&nlaTypeMask, l, len(it.b), errMalformed)
			return false
		case l == 0:
			// An empty attribute (no header even): skipped, as netlink does.
			it.b = it.b[4:]
			continue
		case l < 4:
			it.err = fmt.Errorf("attribute %d of length %d: %w", typ&nlaTypeMask, l, errMalformed)
			return false
		}
		it.typ, it.data = typ&nlaTypeMask, it.b[4:l]
		it.b = it.b[min(len(it.b), (l+3)&^3):]
		return true
	}
	return false
}

// sized returns the payload if it is n bytes long, else records an error.
func (it *attrIter) sized(n int) []byte {
	if len(it.data) != n {
		it.err = fmt.Errorf("attribute %d has %d bytes, want %d: %w", it.typ, len(it.data), n, errMalformed)
		return make([]byte, n)
	}
	return it.data
}

func (it *attrIter) u8() uint8   { return it.sized(1)[0] }
func (it *attrIter) u16() uint16 { return binary.BigEndian.Uint16(it.sized(2)) }
func (it *attrIter) u32() uint32 { return binary.BigEndian.Uint32(it.sized(4)) }
func (it *attrIter) u64() uint64 { return binary.BigEndian.Uint64(it.sized(8)) }

// nested returns an iterator over the current attribute's children.
func (it *attrIter) nested() attrIter { return attrIter{b: it.data} }

// decodeFlow decodes the attributes of a ctnetlink flow message (after
// its nfgenmsg) into f. Attributes it does not replicate (counters,
// timestamps, id, use, security context) are skipped.
func decodeFlow(f *ct.Flow, b []byte) error {
	var x ct.Extra
	f.Orig, f.Reply = noTuple, noTuple // a DESTROY or a request may lack one
	it := attrIter{b: b}
	for it.next() {
		var err error
		switch it.typ {
		case ctaTupleOrig:
			f.Orig, err = decodeTuple(it.nested())
		case ctaTupleReply:
			f.Reply, err = decodeTuple(it.nested())
		case ctaStatus:
			f.Status = it.u32()
		case ctaTimeout:
			f.Timeout = it.u32()
		case ctaMark:
			f.Mark = it.u32()
		case ctaZone:
			f.Zone = it.u16()
		case ctaProtoInfo:
			err = decodeProtoInfo(it.nested(), &f.TCP, &x)
		case ctaLabels:
			copy(x.Labels[:], it.data)
		case ctaHelp:
			err = decodeHelper(it.nested(), &x)
		case ctaSeqAdjOrig:
			err = decodeSeqAdj(it.nested(), &x.SeqAdjOrig)
		case ctaSeqAdjReply:
			err = decodeSeqAdj(it.nested(), &x.SeqAdjRepl)
		}
		if err != nil {
			return fmt.Errorf("attribute %d: %w", it.typ, err)
		}
	}
	if it.err != nil {
		return it.err
	}
	if x != (ct.Extra{}) {
		f.Extra = &x
	}
	return nil
}

// noTuple stands for a tuple the message lacks: protocol 0 between
// unspecified IPv4 addresses, as decodeTuple makes of an empty nest.
var noTuple = ct.NewTuple(0, netip.IPv4Unspecified(), netip.IPv4Unspecified(), 0, 0)

// decodeTuple decodes a CTA_TUPLE_* nest. A missing address is the IPv4
// unspecified address; the family is that of the source address.
func decodeTuple(it attrIter) (ct.Tuple, error) {
	var src, dst netip.Addr
	var proto, icmpType, icmpCode uint8
	var sport, dport, icmpID uint16
	for it.next() {
		switch it.typ {
		case ctaTupleIP:
			ip := it.nested()
			for ip.next() {
				a, ok := netip.AddrFromSlice(ip.data)
				if !ok {
					return ct.Tuple{}, fmt.Errorf("address attribute %d of %d bytes: %w", ip.typ, len(ip.data), errMalformed)
				}
				switch ip.typ {
				case ctaIPv4Src, ctaIPv6Src:
					src = a
				case ctaIPv4Dst, ctaIPv6Dst:
					dst = a
				}
			}
			if ip.err != nil {
				return ct.Tuple{}, ip.err
			}
		case ctaTupleProto:
			p := it.nested()
			for p.next() {
				switch p.typ {
				case ctaProtoNum:
					proto = p.u8()
				case ctaProtoSrcPort:
					sport = p.u16()
				case ctaProtoDstPort:
					dport = p.u16()
				case ctaProtoICMPID, ctaProtoICMPv6ID:
					icmpID = p.u16()
				case ctaProtoICMPType, ctaProtoICMPv6Type:
					icmpType = p.u8()
				case ctaProtoICMPCode, ctaProtoICMPv6Code:
					icmpCode = p.u8()
				}
			}
			if p.err != nil {
				return ct.Tuple{}, p.err
			}
		}
	}
	if it.err != nil {
		return ct.Tuple{}, it.err
	}
	if !src.IsValid() {
		src = netip.IPv4Unspecified()
	}
	if !dst.IsValid() {
		dst = netip.IPv4Unspecified()
	}
	if proto == ct.ProtoICMP || proto == ct.ProtoICMPv6 {
		return ct.NewICMPTuple(src, dst, icmpType, icmpCode, icmpID), nil
	}
	return ct.NewTuple(proto, src, dst, sport, dport), nil
}

// decodeProtoInfo decodes CTA_PROTOINFO: TCP's state goes into tcp, SCTP's
// and DCCP's into x.
func decodeProtoInfo(it attrIter, tcp *ct.TCPInfo, x *ct.Extra) error {
	for it.next() {
		c := it.nested()
		switch it.typ {
		case ctaProtoInfoTCP:
			for c.next() {
				switch c.typ {
				case ctaTCPState:
					tcp.State = c.u8()
				case ctaTCPWScaleOrig:
					tcp.WScaleOrig = c.u8()
				case ctaTCPWScaleRepl:
					tcp.WScaleRepl = c.u8()
				// struct nf_ct_tcp_flags {flags, mask}: the flags byte.
				case ctaTCPFlagsOrig:
					tcp.FlagsOrig = c.sized(2)[0]
				case ctaTCPFlagsRepl:
					tcp.FlagsRepl = c.sized(2)[0]
				}
			}
		case ctaProtoInfoSCTP:
			for c.next() {
				switch c.typ {
				case ctaSCTPState:
					x.SCTPState = c.u8()
				case ctaSCTPVTagOrig:
					x.SCTPVTagOrig = c.u32()
				case ctaSCTPVTagRepl:
					x.SCTPVTagR = c.u32()
				}
			}
		case ctaProtoInfoDCCP:
			for c.next() {
				switch c.typ {
				case ctaDCCPState:
					x.DCCPState = c.u8()
				case ctaDCCPRole:
					x.DCCPRole = c.u8()
				case ctaDCCPHandshakeSeq:
					x.DCCPHandshakeSeq = c.u64()
				}
			}
		}
		if c.err != nil {
			return c.err
		}
	}
	return it.err
}

// decodeHelper decodes CTA_HELP: the helper's name, NUL-terminated.
func decodeHelper(it attrIter, x *ct.Extra) error {
	for it.next() {
		if it.typ == ctaHelpName {
			x.Helper = string(bytes.TrimRight(it.data, "\x00"))
		}
	}
	return it.err
}

// decodeSeqAdj decodes a CTA_SEQ_ADJ_* nest.
func decodeSeqAdj(it attrIter, s *ct.SeqAdj) error {
	for it.next() {
		switch it.typ {
		case ctaSeqAdjCorrectionPos:
			s.Position = it.u32()
		case ctaSeqAdjOffsetBefore:
			s.OffsetBefore = it.u32()
		case ctaSeqAdjOffsetAfter:
			s.OffsetAfter = it.u32()
		}
	}
	return it.err
}
