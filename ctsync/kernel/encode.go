package kernel

import (
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"

	"github.com/ctha/ctha/ctsync/ct"
)

// Op is a write operation on the conntrack table.
type Op uint8

// Write operations.
const (
	// Create adds a flow (NLM_F_CREATE|NLM_F_EXCL, IPCTNL_MSG_CT_NEW). Write
	// replaces a flow that already exists (EEXIST) by deleting and
	// recreating it in the same batch.
	Create Op = iota + 1
	// Update changes an existing flow (IPCTNL_MSG_CT_NEW without
	// NLM_F_CREATE): ENOENT if it does not exist. The kernel cannot change
	// an existing flow's tuples or NAT binding, clear its ASSURED or
	// SEEN_REPLY bits, or swap its helper (EBUSY/EOPNOTSUPP): use Create to
	// replace a flow in full.
	Update
	// Delete removes a flow found by its original tuple and zone.
	Delete
)

func (o Op) String() string {
	switch o {
	case Create:
		return "create"
	case Update:
		return "update"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// ErrInvalidFlow is returned (wrapped) for a flow that cannot be encoded:
// tuples of different families or protocols, an unknown Op.
var ErrInvalidFlow = errors.New("invalid flow")

// Status bits the kernel refuses (EBUSY) to change through ctnetlink:
// EXPECTED and DYING can never be set by a write; CONFIRMED must be present
// (the kernel marks a flow created by ctnetlink confirmed before it applies
// CTA_STATUS, and an update must not clear it). Other bits the kernel
// manages itself (NAT, NAT_DONE, SEQ_ADJUST, TEMPLATE, UNTRACKED, OFFLOAD)
// are ignored by the kernel when sent; they are stripped for clarity. The
// NAT and NAT_DONE bits come back from the NAT binding, SEQ_ADJUST from
// CTA_SEQ_ADJ_*.
const statusStrip = ct.StatusExpected | ct.StatusDying | ct.StatusSrcNAT | ct.StatusDstNAT |
	ct.StatusSrcNATDone | ct.StatusDstNATDone | ct.StatusSeqAdjust | ct.StatusTemplate |
	ct.StatusUntracked | ct.StatusOffload | ct.StatusHWOffload

// statusKnown are the bits ct defines (up to HW_OFFLOAD); the kernel's
// attribute policy refuses (EINVAL) unknown ones.
const statusKnown = ct.StatusHWOffload<<1 - 1

// writeStatus is the CTA_STATUS a write sends for status. Measured on
// 6.18: EXPECTED and DYING give EBUSY; NAT, NAT_DONE, SEQ_ADJUST, TEMPLATE,
// UNTRACKED, OFFLOAD and HW_OFFLOAD are ignored; SEEN_REPLY, ASSURED,
// FIXED_TIMEOUT and HELPER are kept (HELPER is also set by CTA_HELP).
func writeStatus(status uint32) uint32 {
	return status&statusKnown&^statusStrip | ct.StatusConfirmed
}

// encodeFlow appends to w the ctnetlink request that applies op to f (on
// an error, nothing). The sequence number, port id and ACK flag are left
// to exchange.
//
// What is sent, by op:
//   - Create: both tuples (for a NAT flow the reply tuple without NAT, plus
//     CTA_NAT_DST/CTA_NAT_SRC from which the kernel derives the translated
//     reply tuple), status (see writeStatus), timeout, mark (always, even
//     0), zone, protocol info, helper, sequence adjustment, labels.
//   - Update: the original tuple and zone to find the flow, status, mark
//     (always, so an update restores a mark of 0), protocol info, helper
//     (an existing flow's helper cannot change: the kernel reports the
//     mismatch), sequence adjustment and labels; the timeout unless it is 0,
//     which means "keep the current one" (0 would expire the flow).
//   - Delete: the original tuple and zone.
//
// Labels are sent only when some bit is set (with an all-ones mask): in a
// namespace whose ruleset has no `ct label`, flows carry no label storage
// and the kernel refuses any CTA_LABELS with ENOSPC; so an Update cannot
// clear labels.
func encodeFlow(w *nlBuf, op Op, f *ct.Flow, opts WriteOptions) error {
	if f.Orig.V6 != f.Reply.V6 || f.Orig.Proto != f.Reply.Proto {
		return fmt.Errorf("%w: tuples %v and %v differ in family or protocol", ErrInvalidFlow, f.Orig, f.Reply)
	}
	h := netfilter.Header{SubsystemID: netfilter.NFSubsysCTNetlink, Family: flowFamily(f)}
	switch op {
	case Create:
		h.MessageType = msgCTNew
		h.Flags = netlink.Request | netlink.Acknowledge | netlink.Create | netlink.Excl
	case Update:
		h.MessageType = msgCTNew
		h.Flags = netlink.Request | netlink.Acknowledge
	case Delete:
		h.MessageType = msgCTDelete
		h.Flags = netlink.Request | netlink.Acknowledge
	default:
		return fmt.Errorf("%w: %v", ErrInvalidFlow, op)
	}
	ae := w
	ae.begin(h)
	switch op {
	case Create:
		encodeTuple(ae, ctaTupleOrig, f.Orig)
		encodeTuple(ae, ctaTupleReply, natFreeReply(f))
		ae.Uint32(ctaStatus, writeStatus(f.Status))
		ae.Uint32(ctaTimeout, f.Timeout)
		encodeCommon(ae, f, opts)
		encodeNAT(ae, f)
	case Update:
		encodeTuple(ae, ctaTupleOrig, f.Orig)
		ae.Uint32(ctaStatus, writeStatus(f.Status))
		if f.Timeout != 0 {
			ae.Uint32(ctaTimeout, f.Timeout)
		}
		encodeCommon(ae, f, opts)
	case Delete:
		// The tuple is always present: a delete without one flushes the table.
		encodeTuple(ae, ctaTupleOrig, f.Orig)
		if f.Zone != 0 {
			ae.Uint16(ctaZone, f.Zone)
		}
	}
	if err := w.end(); err != nil {
		return fmt.Errorf("encode %v %v: %w", op, f.Orig, err)
	}
	return nil
}

func flowFamily(f *ct.Flow) netfilter.ProtoFamily {
	if f.Orig.V6 {
		return netfilter.ProtoIPv6
	}
	return netfilter.ProtoIPv4
}

// encodeCommon adds what Create and Update share.
func encodeCommon(ae *nlBuf, f *ct.Flow, opts WriteOptions) {
	ae.Uint32(ctaMark, f.Mark)
	if f.Zone != 0 {
		ae.Uint16(ctaZone, f.Zone)
	}
	encodeProtoInfo(ae, f, opts.Liberal)
	x := f.Extra
	if x == nil {
		return
	}
	if x.Helper != "" {
		ae.Nested(ctaHelp, func(nae *nlBuf) {
			nae.String(ctaHelpName, x.Helper)
		})
	}
	// The kernel reports both directions whenever SEQ_ADJUST is set, one of
	// them possibly all zero: send both so that the bit comes back.
	if f.Status&ct.StatusSeqAdjust != 0 || x.SeqAdjOrig != (ct.SeqAdj{}) || x.SeqAdjRepl != (ct.SeqAdj{}) {
		encodeSeqAdj(ae, ctaSeqAdjOrig, x.SeqAdjOrig)
		encodeSeqAdj(ae, ctaSeqAdjReply, x.SeqAdjRepl)
	}
	if x.Labels != ([16]byte{}) {
		ae.Bytes(ctaLabels, x.Labels[:])
		mask := [16]byte{}
		for i := range mask {
			mask[i] = 0xff
		}
		ae.Bytes(ctaLabelsMask, mask[:])
	}
}

func encodeTuple(ae *nlBuf, typ uint16, t ct.Tuple) {
	ae.Nested(typ, func(nae *nlBuf) {
		nae.Nested(ctaTupleIP, func(ipae *nlBuf) {
			if t.V6 {
				ipae.Bytes(ctaIPv6Src, t.Src[:])
				ipae.Bytes(ctaIPv6Dst, t.Dst[:])
			} else {
				ipae.Bytes(ctaIPv4Src, t.Src[12:])
				ipae.Bytes(ctaIPv4Dst, t.Dst[12:])
			}
		})
		nae.Nested(ctaTupleProto, func(pae *nlBuf) {
			pae.Uint8(ctaProtoNum, t.Proto)
			switch t.Proto {
			case ct.ProtoICMP:
				typ, code, id := t.ICMP()
				pae.Uint16(ctaProtoICMPID, id)
				pae.Uint8(ctaProtoICMPType, typ)
				pae.Uint8(ctaProtoICMPCode, code)
			case ct.ProtoICMPv6:
				typ, code, id := t.ICMP()
				pae.Uint16(ctaProtoICMPv6ID, id)
				pae.Uint8(ctaProtoICMPv6Type, typ)
				pae.Uint8(ctaProtoICMPv6Code, code)
			default:
				pae.Uint16(ctaProtoSrcPort, t.SrcPort)
				pae.Uint16(ctaProtoDstPort, t.DstPort)
			}
		})
	})
}

func encodeProtoInfo(ae *nlBuf, f *ct.Flow, liberal bool) {
	x := f.Extra
	if x == nil {
		x = &ct.Extra{}
	}
	switch f.Orig.Proto {
	case ct.ProtoTCP:
		fo, fr := tcpFlags(f, liberal)
		if needsWScaleFixup(f) {
			// Let the kernel take the window scales; wscaleFixup then
			// clears the flag again.
			fo |= ct.TCPFlagWindowScale
			fr |= ct.TCPFlagWindowScale
		}
		ae.Nested(ctaProtoInfo, func(pae *nlBuf) {
			pae.Nested(ctaProtoInfoTCP, func(tae *nlBuf) {
				tae.Uint8(ctaTCPState, f.TCP.State)
				// The kernel applies the flags first, then the window scales
				// if both directions have TCPFlagWindowScale.
				tae.Bytes(ctaTCPFlagsOrig, []byte{fo, tcpMask(fo)}) // struct nf_ct_tcp_flags {flags, mask}
				tae.Bytes(ctaTCPFlagsRepl, []byte{fr, tcpMask(fr)})
				tae.Uint8(ctaTCPWScaleOrig, f.TCP.WScaleOrig)
				tae.Uint8(ctaTCPWScaleRepl, f.TCP.WScaleRepl)
			})
		})
	case ct.ProtoSCTP:
		ae.Nested(ctaProtoInfo, func(pae *nlBuf) {
			pae.Nested(ctaProtoInfoSCTP, func(sae *nlBuf) {
				sae.Uint8(ctaSCTPState, x.SCTPState)
				sae.Uint32(ctaSCTPVTagOrig, x.SCTPVTagOrig)
				sae.Uint32(ctaSCTPVTagRepl, x.SCTPVTagR)
			})
		})
	case ct.ProtoDCCP:
		ae.Nested(ctaProtoInfo, func(pae *nlBuf) {
			pae.Nested(ctaProtoInfoDCCP, func(dae *nlBuf) {
				dae.Uint8(ctaDCCPState, x.DCCPState)
				dae.Uint8(ctaDCCPRole, x.DCCPRole)
				dae.Uint64(ctaDCCPHandshakeSeq, x.DCCPHandshakeSeq)
			})
		})
	}
}

func encodeSeqAdj(ae *nlBuf, typ uint16, s ct.SeqAdj) {
	ae.Nested(typ, func(sae *nlBuf) {
		sae.Uint32(ctaSeqAdjCorrectionPos, s.Position)
		sae.Uint32(ctaSeqAdjOffsetBefore, s.OffsetBefore)
		sae.Uint32(ctaSeqAdjOffsetAfter, s.OffsetAfter)
	})
}

// tcpFlags returns the TCP flags written for f. TCPFlagMaxackSet is
// cleared: it says the entry's td_maxack is valid, and ctnetlink cannot
// write td_maxack, so a written entry with the flag would have the kernel
// check an RST's sequence against a td_maxack of 0 and drop about half of
// the flows' RSTs as INVALID ("invalid rst"). The mask (tcpMask) includes
// it, so that a replaced entry loses it too.
func tcpFlags(f *ct.Flow, liberal bool) (orig, repl uint8) {
	orig, repl = f.TCP.FlagsOrig&^ct.TCPFlagMaxackSet, f.TCP.FlagsRepl&^ct.TCPFlagMaxackSet
	if liberal {
		orig |= ct.TCPFlagBeLiberal
		repl |= ct.TCPFlagBeLiberal
	}
	return orig, repl
}

// tcpMask is the mask of the written flags fl: the flags themselves, and
// TCPFlagMaxackSet, which is always cleared.
func tcpMask(fl uint8) uint8 { return fl | ct.TCPFlagMaxackSet }

// needsWScaleFixup reports whether a TCP flow has a window scale the kernel
// would skip: it takes CTA_PROTOINFO_TCP_WSCALE_* only when both
// directions have TCPFlagWindowScale (after applying the flags of the same
// message), which a flow in its handshake has not.
func needsWScaleFixup(f *ct.Flow) bool {
	const ws = ct.TCPFlagWindowScale
	return f.Orig.Proto == ct.ProtoTCP && (f.TCP.WScaleOrig != 0 || f.TCP.WScaleRepl != 0) &&
		(f.TCP.FlagsOrig&ws == 0 || f.TCP.FlagsRepl&ws == 0)
}

// wscaleFixup returns, for a flow that needsWScaleFixup, the update that
// follows its create or update: it clears the TCPFlagWindowScale the first
// message set to have the window scales taken, leaving them in place.
func wscaleFixup(w *nlBuf, f *ct.Flow, opts WriteOptions) error {
	fo, fr := tcpFlags(f, opts.Liberal)
	const ws = ct.TCPFlagWindowScale
	ae := w
	ae.begin(netfilter.Header{SubsystemID: netfilter.NFSubsysCTNetlink, MessageType: msgCTNew,
		Family: flowFamily(f), Flags: netlink.Request | netlink.Acknowledge})
	encodeTuple(ae, ctaTupleOrig, f.Orig)
	if f.Zone != 0 {
		ae.Uint16(ctaZone, f.Zone)
	}
	ae.Nested(ctaProtoInfo, func(pae *nlBuf) {
		pae.Nested(ctaProtoInfoTCP, func(tae *nlBuf) {
			tae.Bytes(ctaTCPFlagsOrig, []byte{fo, tcpMask(fo) | ws})
			tae.Bytes(ctaTCPFlagsRepl, []byte{fr, tcpMask(fr) | ws})
		})
	})
	if err := w.end(); err != nil {
		return fmt.Errorf("encode window scale fixup %v: %w", f.Orig, err)
	}
	return nil
}

// appendFlow appends to w the messages that apply op to f: the one of
// encodeFlow, followed by its wscaleFixup if it needs one. On an error
// it appends nothing.
func appendFlow(w *nlBuf, op Op, f *ct.Flow, opts WriteOptions) error {
	if err := encodeFlow(w, op, f, opts); err != nil {
		return err
	}
	if (op == Create || op == Update) && needsWScaleFixup(f) {
		if err := wscaleFixup(w, f, opts); err != nil {
			w.drop()
			return err
		}
	}
	return nil
}
