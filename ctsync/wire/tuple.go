package wire

import (
	"encoding/binary"

	"github.com/ctha/ctha/ctsync/ct"
)

// appendTuple appends t's addresses (4 or 16 bytes each) and ports.
func appendTuple(b []byte, t *ct.Tuple, v6 bool) []byte {
	if v6 {
		b = append(b, t.Src[:]...)
		b = append(b, t.Dst[:]...)
	} else {
		b = append(b, t.Src[12:]...)
		b = append(b, t.Dst[12:]...)
	}
	b = binary.BigEndian.AppendUint16(b, t.SrcPort)
	return binary.BigEndian.AppendUint16(b, t.DstPort)
}

// tuple reads what appendTuple wrote; IPv4 addresses come back v4-mapped.
func (d *decoder) tuple(proto uint8, v6 bool, what string) (t ct.Tuple) {
	n := 4
	if v6 {
		n = 16
	}
	p := d.take(2*n+4, what)
	if p == nil {
		return t
	}
	t.Proto, t.V6 = proto, v6
	if v6 {
		copy(t.Src[:], p[:16])
		copy(t.Dst[:], p[16:32])
	} else {
		t.Src[10], t.Src[11], t.Dst[10], t.Dst[11] = 0xff, 0xff, 0xff, 0xff
		copy(t.Src[12:], p[:4])
		copy(t.Dst[12:], p[4:8])
	}
	t.SrcPort = binary.BigEndian.Uint16(p[2*n:])
	t.DstPort = binary.BigEndian.Uint16(p[2*n+2:])
	return t
}

// invert sets r to the reply tuple the kernel gives a flow that is not
// NATed (nf_ct_invert_tuple): o with addresses and ports swapped and, for
// the ICMP and ICMPv6 query types, the request type turned into its reply
// type (and back), with the code and identifier kept. An update omits a
// reply tuple equal to it.
func invert(r, o *ct.Tuple) {
	*r = o.Reverse()
	if o.IsICMP() {
		typ, code, _ := o.ICMP()
		r.DstPort = uint16(icmpInverse(o.Proto, typ))<<8 | uint16(code)
	}
}

// isInverse reports whether r is the inverse of o (invert).
func isInverse(r, o *ct.Tuple) bool {
	var inv ct.Tuple
	invert(&inv, o)
	return *r == inv
}

// icmpInverse maps an ICMP query type to its answer and back, as the
// kernel's invmap tables do (nf_conntrack_proto_icmp.c, ..._icmpv6.c).
// Other types map to themselves.
func icmpInverse(proto, typ uint8) uint8 {
	if proto == ct.ProtoICMP {
		switch typ {
		case 8, 0: // echo request, echo reply
			return 8 - typ
		case 13, 15, 17: // timestamp, information, address mask request
			return typ + 1
		case 14, 16, 18: // and their replies
			return typ - 1
		}
		return typ
	}
	switch typ {
	case 128, 139: // echo request, node information query
		return typ + 1
	case 129, 140: // and their replies
		return typ - 1
	}
	return typ
}

// Inverse returns the reply tuple the kernel gives a flow of original
// tuple o that is not NATed (see invert).
func Inverse(o ct.Tuple) ct.Tuple {
	var r ct.Tuple
	invert(&r, &o)
	return r
}
