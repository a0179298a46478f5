package kernel

import (
	"github.com/ctha/ctha/ctsync/ct"
)

// The NAT binding of a flow is not a field of ct.Flow: it is how its reply
// tuple differs from the reverse of its original tuple. ctnetlink cannot
// take a translated reply tuple as such: given one, the flow is created
// without the SRC_NAT/DST_NAT status bits and the kernel never rewrites its
// packets. What works (as conntrackd does it) is to create the flow with
// the reply tuple it would have without NAT and to ask for the translation
// with CTA_NAT_DST and CTA_NAT_SRC, each a single address (MINIP = MAXIP)
// and, for protocols with ports, a single port (PORT_MIN = PORT_MAX, so the
// kernel cannot choose another one); the kernel then derives the same
// translated reply tuple as the source node's, applying DST first, then SRC.
//
// A flow whose status says a NAT binding was set up (SRC_NAT_DONE,
// DST_NAT_DONE) without translating anything gets an empty CTA_NAT_* nest:
// a null binding, which sets the DONE bit like on the source node. When one
// of CTA_NAT_SRC/DST is sent, the kernel sets up a null binding for the
// other.

// natBinding is one direction of a flow's NAT as ctnetlink wants it.
type natBinding struct {
	send      bool // send the attribute (a translation or a null binding)
	translate bool
	addr      [16]byte
	port      uint16
	withPort  bool
}

// hasPorts reports whether the kernel NATs the protocol's ports.
func hasPorts(proto uint8) bool {
	switch proto {
	case ct.ProtoTCP, ct.ProtoUDP, ct.ProtoUDPLite, ct.ProtoSCTP, ct.ProtoDCCP:
		return true
	}
	return false
}

// natBindings returns the source and destination NAT of f.
func natBindings(f *ct.Flow) (src, dst natBinding) {
	o, r := f.Orig, f.Reply
	ports := hasPorts(o.Proto)
	// Source NAT: replies come back to another address or port. For ICMP the
	// kernel may also remap the identifier (it is kept in SrcPort of both
	// tuples).
	icmpID := o.IsICMP() && r.SrcPort != o.SrcPort
	if r.Dst != o.Src || (ports && r.DstPort != o.SrcPort) || icmpID {
		src = natBinding{send: true, translate: true, addr: r.Dst, port: r.DstPort, withPort: ports}
		if icmpID {
			src.port, src.withPort = r.SrcPort, true
		}
	} else if f.Status&ct.StatusSrcNATDone != 0 {
		src.send = true
	}
	if r.Src != o.Dst || (ports && r.SrcPort != o.DstPort) {
		dst = natBinding{send: true, translate: true, addr: r.Src, port: r.SrcPort, withPort: ports}
	} else if f.Status&ct.StatusDstNATDone != 0 {
		dst.send = true
	}
	return src, dst
}

// natFreeReply returns the reply tuple f would have without NAT: the one to
// create it with, next to its CTA_NAT_* attributes.
func natFreeReply(f *ct.Flow) ct.Tuple {
	src, dst := natBindings(f)
	r := f.Reply
	if src.translate {
		r.Dst = f.Orig.Src
		if hasPorts(r.Proto) {
			r.DstPort = f.Orig.SrcPort
		}
		if r.IsICMP() {
			r.SrcPort = f.Orig.SrcPort
		}
	}
	if dst.translate {
		r.Src = f.Orig.Dst
		if hasPorts(r.Proto) {
			r.SrcPort = f.Orig.DstPort
		}
	}
	return r
}

// encodeNAT adds CTA_NAT_DST and CTA_NAT_SRC as f needs them.
func encodeNAT(ae *nlBuf, f *ct.Flow) {
	src, dst := natBindings(f)
	encodeNATBinding(ae, ctaNATDst, dst, f.Orig.V6)
	encodeNATBinding(ae, ctaNATSrc, src, f.Orig.V6)
}

func encodeNATBinding(ae *nlBuf, typ uint16, b natBinding, v6 bool) {
	if !b.send {
		return
	}
	ae.Nested(typ, func(nae *nlBuf) {
		if !b.translate {
			return
		}
		if v6 {
			nae.Bytes(ctaNATV6MinIP, b.addr[:])
			nae.Bytes(ctaNATV6MaxIP, b.addr[:])
		} else {
			nae.Bytes(ctaNATV4MinIP, b.addr[12:])
			nae.Bytes(ctaNATV4MaxIP, b.addr[12:])
		}
		if b.withPort {
			nae.Nested(ctaNATProto, func(pae *nlBuf) {
				pae.Uint16(ctaProtoNATPortMin, b.port)
				pae.Uint16(ctaProtoNATPortMax, b.port)
			})
		}
	})
}
