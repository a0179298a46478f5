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

// encodeFlow builds the ctnetlink request that applies op to f. The netlink
// header's length, sequence number and port id are left to the caller.
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
func encodeFlow(op Op, f *ct.Flow, opts WriteOptions) (netlink.Message, error) {
	if f.Orig.V6 != f.Reply.V6 || f.Orig.Proto != f.Reply.Proto {
		return netlink.Message{}, fmt.Errorf("%w: tuples %v and %v differ in family or protocol", ErrInvalidFlow, f.Orig, f.Reply)
	}
	family := netfilter.ProtoIPv4
	if f.Orig.V6 {
		family = netfilter.ProtoIPv6
	}
	h := netfilter.Header{SubsystemID: netfilter.NFSubsysCTNetlink, Family: family}
	ae := netfilter.NewAttributeEncoder()

	switch op {
	case Create:
		h.MessageType = msgCTNew
		h.Flags = netlink.Request | netlink.Acknowledge | netlink.Create | netlink.Excl
		encodeTuple(ae, ctaTupleOrig, f.Orig)
		encodeTuple(ae, ctaTupleReply, natFreeReply(f))
		ae.Uint32(ctaStatus, writeStatus(f.Status))
		ae.Uint32(ctaTimeout, f.Timeout)
		encodeCommon(ae, f, opts)
		encodeNAT(ae, f)
	case Update:
		h.MessageType = msgCTNew
		h.Flags = netlink.Request | netlink.Acknowledge
		encodeTuple(ae, ctaTupleOrig, f.Orig)
		ae.Uint32(ctaStatus, writeStatus(f.Status))
		if f.Timeout != 0 {
			ae.Uint32(ctaTimeout, f.Timeout)
		}
		encodeCommon(ae, f, opts)
	case Delete:
		h.MessageType = msgCTDelete
		h.Flags = netlink.Request | netlink.Acknowledge
		// The tuple is always present: a delete without one flushes the table.
		encodeTuple(ae, ctaTupleOrig, f.Orig)
		if f.Zone != 0 {
			ae.Uint16(ctaZone, f.Zone)
		}
	default:
		return netlink.Message{}, fmt.Errorf("%w: %v", ErrInvalidFlow, op)
	}
	m, err := netfilter.EncodeNetlink(h, ae)
	if err != nil {
		return netlink.Message{}, fmt.Errorf("encode %v %v: %w", op, f.Orig, err)
	}
	return m, nil
}

// encodeCommon adds what Create and Update share.
func encodeCommon(ae *netlink.AttributeEncoder, f *ct.Flow, opts WriteOptions) {
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
		ae.Nested(ctaHelp, func(nae *netlink.AttributeEncoder) error {
			nae.String(ctaHelpName, x.Helper)
			return nil
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

func encodeTuple(ae *netlink.AttributeEncoder, typ uint16, t ct.Tuple) {
	ae.Nested(typ, func(nae *netlink.AttributeEncoder) error {
		nae.Nested(ctaTupleIP, func(ipae *netlink.AttributeEncoder) error {
			if t.V6 {
				ipae.Bytes(ctaIPv6Src, t.Src[:])
				ipae.Bytes(ctaIPv6Dst, t.Dst[:])
			} else {
				ipae.Bytes(ctaIPv4Src, t.Src[12:])
				ipae.Bytes(ctaIPv4Dst, t.Dst[12:])
			}
			return nil
		})
		nae.Nested(ctaTupleProto, func(pae *netlink.AttributeEncoder) error {
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
			return nil
		})
		return nil
	})
}

func encodeProtoInfo(ae *netlink.AttributeEncoder, f *ct.Flow, liberal bool) {
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
		ae.Nested(ctaProtoInfo, func(pae *netlink.AttributeEncoder) error {
			pae.Nested(ctaProtoInfoTCP, func(tae *netlink.AttributeEncoder) error {
				tae.Uint8(ctaTCPState, f.TCP.State)
				// The kernel applies the flags first, then the window scales
				// if both directions have TCPFlagWindowScale.
				tae.Bytes(ctaTCPFlagsOrig, []byte{fo, tcpMask(fo)}) // struct nf_ct_tcp_flags {flags, mask}
				tae.Bytes(ctaTCPFlagsRepl, []byte{fr, tcpMask(fr)})
				tae.Uint8(ctaTCPWScaleOrig, f.TCP.WScaleOrig)
				tae.Uint8(ctaTCPWScaleRepl, f.TCP.WScaleRepl)
				return nil
			})
			return nil
		})
	case ct.ProtoSCTP:
		ae.Nested(ctaProtoInfo, func(pae *netlink.AttributeEncoder) error {
			pae.Nested(ctaProtoInfoSCTP, func(sae *netlink.AttributeEncoder) error {
				sae.Uint8(ctaSCTPState, x.SCTPState)
				sae.Uint32(ctaSCTPVTagOrig, x.SCTPVTagOrig)
				sae.Uint32(ctaSCTPVTagRepl, x.SCTPVTagR)
				return nil
			})
			return nil
		})
	case ct.ProtoDCCP:
		ae.Nested(ctaProtoInfo, func(pae *netlink.AttributeEncoder) error {
			pae.Nested(ctaProtoInfoDCCP, func(dae *netlink.AttributeEncoder) error {
				dae.Uint8(ctaDCCPState, x.DCCPState)
				dae.Uint8(ctaDCCPRole, x.DCCPRole)
				dae.Uint64(ctaDCCPHandshakeSeq, x.DCCPHandshakeSeq)
				return nil
			})
			return nil
		})
	}
}

func encodeSeqAdj(ae *netlink.AttributeEncoder, typ uint16, s ct.SeqAdj) {
	ae.Nested(typ, func(sae *netlink.AttributeEncoder) error {
		sae.Uint32(ctaSeqAdjCorrectionPos, s.Position)
		sae.Uint32(ctaSeqAdjOffsetBefore, s.OffsetBefore)
		sae.Uint32(ctaSeqAdjOffsetAfter, s.OffsetAfter)
		return nil
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
func wscaleFixup(f *ct.Flow, opts WriteOptions) (netlink.Message, error) {
	fo, fr := tcpFlags(f, opts.Liberal)
	const ws = ct.TCPFlagWindowScale
	h := netfilter.Header{SubsystemID: netfilter.NFSubsysCTNetlink, MessageType: msgCTNew,
		Family: netfilter.ProtoIPv4, Flags: netlink.Request | netlink.Acknowledge}
	if f.Orig.V6 {
		h.Family = netfilter.ProtoIPv6
	}
	ae := netfilter.NewAttributeEncoder()
	encodeTuple(ae, ctaTupleOrig, f.Orig)
	if f.Zone != 0 {
		ae.Uint16(ctaZone, f.Zone)
	}
	ae.Nested(ctaProtoInfo, func(pae *netlink.AttributeEncoder) error {
		pae.Nested(ctaProtoInfoTCP, func(tae *netlink.AttributeEncoder) error {
			tae.Bytes(ctaTCPFlagsOrig, []byte{fo, tcpMask(fo) | ws})
			tae.Bytes(ctaTCPFlagsRepl, []byte{fr, tcpMask(fr) | ws})
			return nil
		})
		return nil
	})
	m, err := netfilter.EncodeNetlink(h, ae)
	if err != nil {
		return netlink.Message{}, fmt.Errorf("encode window scale fixup %v: %w", f.Orig, err)
	}
	return m, nil
}

// appendFlowMessages appends the messages that apply op to f: the one of
// encodeFlow, followed by its wscaleFixup if it needs one.
func appendFlowMessages(msgs []netlink.Message, op Op, f *ct.Flow, opts WriteOptions) ([]netlink.Message, error) {
	m, err := encodeFlow(op, f, opts)
	if err != nil {
		return msgs, err
	}
	msgs = append(msgs, m)
	if (op == Create || op == Update) && needsWScaleFixup(f) {
		if m, err = wscaleFixup(f, opts); err != nil {
			return msgs[:len(msgs)-1], err
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}
