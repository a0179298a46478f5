package nfq

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
)

// The protocol of nfnetlink_queue (linux/netfilter/nfnetlink_queue.h).
// Attribute payloads are in network byte order; the netlink headers in the
// host's.
const (
	subsysQueue = 3 // NFNL_SUBSYS_QUEUE

	msgPacket       = 0 // NFQNL_MSG_PACKET: kernel to user
	msgVerdict      = 1 // NFQNL_MSG_VERDICT
	msgConfig       = 2 // NFQNL_MSG_CONFIG
	msgVerdictBatch = 3 // NFQNL_MSG_VERDICT_BATCH: every id up to the given one

	attrPacketHdr  = 1  // NFQA_PACKET_HDR: nfqnl_msg_packet_hdr
	attrVerdictHdr = 2  // NFQA_VERDICT_HDR: nfqnl_msg_verdict_hdr
	attrMark       = 3  // NFQA_MARK
	attrInDev      = 5  // NFQA_IFINDEX_INDEV
	attrOutDev     = 6  // NFQA_IFINDEX_OUTDEV
	attrPayload    = 10 // NFQA_PAYLOAD
	attrCT         = 11 // NFQA_CT: nested ctnetlink flow attributes
	attrCTInfo     = 12 // NFQA_CT_INFO: enum ip_conntrack_info
	attrCapLen     = 13 // NFQA_CAP_LEN: the packet's length when truncated
	attrSKBInfo    = 14 // NFQA_SKB_INFO

	cfgCmd    = 1 // NFQA_CFG_CMD: nfqnl_msg_config_cmd
	cfgParams = 2 // NFQA_CFG_PARAMS: nfqnl_msg_config_params
	cfgMaxLen = 3 // NFQA_CFG_QUEUE_MAXLEN
	cfgMask   = 4 // NFQA_CFG_MASK
	cfgFlags  = 5 // NFQA_CFG_FLAGS

	cmdBind   = 1 // NFQNL_CFG_CMD_BIND
	cmdUnbind = 2 // NFQNL_CFG_CMD_UNBIND

	copyPacket = 2 // NFQNL_COPY_PACKET

	flagFailOpen  = 1 << 0 // NFQA_CFG_F_FAIL_OPEN: accept, not drop, when the queue is full
	flagConntrack = 1 << 1 // NFQA_CFG_F_CONNTRACK: NFQA_CT with every packet
	flagGSO       = 1 << 2 // NFQA_CFG_F_GSO: GSO packets are not segmented for us

	// MaxCopyRange is the most of a packet the kernel copies
	// (NFQNL_MAX_COPY_RANGE: an attribute's 16-bit length).
	MaxCopyRange = 0xffff - nlaHeaderLen
)

// Netlink framing.
const (
	nlmsgHeaderLen = 16
	nfgenHeaderLen = 4
	nlaHeaderLen   = 4
	nlaTypeMask    = 0x3fff // masks NLA_F_NESTED and NLA_F_NET_BYTEORDER off

	nlmsgError = 2 // NLMSG_ERROR
	nlmsgDone  = 3 // NLMSG_DONE

	nlmFRequest = 0x1 // NLM_F_REQUEST
	nlmFAck     = 0x4 // NLM_F_ACK
)

// Hook is the netfilter hook a packet was queued from.
type Hook uint8

// The hooks of the inet families (enum nf_inet_hooks).
const (
	HookPrerouting  Hook = 0
	HookInput       Hook = 1
	HookForward     Hook = 2
	HookOutput      Hook = 3
	HookPostrouting Hook = 4
)

func (h Hook) String() string {
	switch h {
	case HookPrerouting:
		return "prerouting"
	case HookInput:
		return "input"
	case HookForward:
		return "forward"
	case HookOutput:
		return "output"
	case HookPostrouting:
		return "postrouting"
	}
	return fmt.Sprintf("hook(%d)", uint8(h))
}

// CTInfo is the relation of a packet to its conntrack entry (enum
// ip_conntrack_info).
type CTInfo uint32

// The values of CTInfo.
const (
	CTEstablished      CTInfo = 0
	CTRelated          CTInfo = 1
	CTNew              CTInfo = 2
	CTEstablishedReply CTInfo = 3
	CTRelatedReply     CTInfo = 4
	CTUntracked        CTInfo = 7
)

func (c CTInfo) String() string {
	switch c {
	case CTEstablished:
		return "established"
	case CTRelated:
		return "related"
	case CTNew:
		return "new"
	case CTEstablishedReply:
		return "established-reply"
	case CTRelatedReply:
		return "related-reply"
	case CTUntracked:
		return "untracked"
	}
	return fmt.Sprintf("ctinfo(%d)", uint32(c))
}

// Verdict is what becomes of a queued packet.
type Verdict uint32

// The verdicts a queue client gives (NF_DROP, NF_ACCEPT).
const (
	Drop   Verdict = 0
	Accept Verdict = 1
)

func (v Verdict) String() string {
	switch v {
	case Drop:
		return "drop"
	case Accept:
		return "accept"
	}
	return fmt.Sprintf("verdict(%d)", uint32(v))
}

// Packet is a packet the kernel queued (NFQNL_MSG_PACKET).
type Packet struct {
	// Queue is the queue number.
	Queue uint16
	// Family is the packet's protocol family: 2 (NFPROTO_IPV4) or 10
	// (NFPROTO_IPV6) from an inet, ip or ip6 table.
	Family uint8
	// ID identifies the packet in the queue for its verdict. Ids increase
	// by one per queued packet (modulo 2^32).
	ID uint32
	// HWProto is the link-layer protocol (EtherType), e.g. 0x0800.
	HWProto uint16
	// Hook is where the packet was queued.
	Hook Hook
	// Mark is the packet's mark (0 if the kernel sent none).
	Mark uint32
	// InDev and OutDev are interface indexes, 0 where the hook has none.
	InDev, OutDev uint32
	// CapLen is the packet's whole length when Payload holds only its
	// first bytes (the copy range), else 0.
	CapLen uint32
	// SKBInfo holds NFQA_SKB_* flags (checksum not ready, GSO).
	SKBInfo uint32
	// Payload is the copied start of the packet, network header first.
	Payload []byte
	// CT is the packet's conntrack entry, decoded from NFQA_CT: only where
	// the queue was bound with the conntrack glue (Queue.Glue), else nil.
	// A packet queued before its entry is confirmed (the first packet of a
	// flow, in postrouting) carries the entry as it will be confirmed,
	// NAT bindings included.
	CT *ct.Flow
	// CTAttrs is NFQA_CT undecoded: the ctnetlink attributes CT was
	// decoded from.
	CTAttrs []byte
	// CTInfo relates the packet to CT (valid when CT is not nil).
	CTInfo CTInfo
}

// Errors of the codec.
var (
	// ErrMalformed is wrapped by every error for a message that is not a
	// valid nfnetlink_queue message.
	ErrMalformed = errors.New("malformed nfqueue message")
	// ErrNotPacket is returned by UnmarshalBinary for a well-formed netlink
	// message of another type than NFQNL_MSG_PACKET.
	ErrNotPacket = errors.New("not an nfqueue packet message")
)

// UnmarshalBinary decodes a whole netlink message (header, nfgenmsg,
// attributes) of type NFQNL_MSG_PACKET. Payload and CTAttrs point into b.
// A message without NFQA_PACKET_HDR is malformed; on an error, p.ID is
// set if the header could be read, so the packet can still be given a
// verdict.
func (p *Packet) UnmarshalBinary(b []byte) error {
	*p = Packet{}
	typ, _, _, body, err := splitMessage(b)
	if err != nil {
		return err
	}
	if typ != subsysQueue<<8|msgPacket {
		return fmt.Errorf("message type %#x: %w", typ, ErrNotPacket)
	}
	return p.decode(body)
}

// decode decodes the part of a packet message after the netlink header.
func (p *Packet) decode(body []byte) error {
	if len(body) < nfgenHeaderLen {
		return fmt.Errorf("nfgenmsg in %d bytes: %w", len(body), ErrMalformed)
	}
	p.Family = body[0]
	p.Queue = binary.BigEndian.Uint16(body[2:])
	it := attrIter{b: body[nfgenHeaderLen:]}
	var hdr, info bool
	for it.next() {
		switch it.typ {
		case attrPacketHdr:
			if len(it.data) < 7 {
				return fmt.Errorf("packet header of %d bytes: %w", len(it.data), ErrMalformed)
			}
			p.ID = binary.BigEndian.Uint32(it.data)
			p.HWProto = binary.BigEndian.Uint16(it.data[4:])
			p.Hook = Hook(it.data[6])
			hdr = true
		case attrMark:
			p.Mark = it.u32()
		case attrInDev:
			p.InDev = it.u32()
		case attrOutDev:
			p.OutDev = it.u32()
		case attrCapLen:
			p.CapLen = it.u32()
		case attrSKBInfo:
			p.SKBInfo = it.u32()
		case attrPayload:
			p.Payload = it.data
		case attrCT:
			p.CTAttrs = it.data
		case attrCTInfo:
			p.CTInfo = CTInfo(it.u32())
			info = true
		}
	}
	if it.err != nil {
		return it.err
	}
	if !hdr {
		return fmt.Errorf("no packet header: %w", ErrMalformed)
	}
	if p.CTAttrs != nil {
		var f ct.Flow
		if err := kernel.DecodeFlowAttrs(&f, p.CTAttrs); err != nil {
			return fmt.Errorf("packet %d: conntrack attributes: %w: %w", p.ID, ErrMalformed, err)
		}
		if !info {
			return fmt.Errorf("packet %d: conntrack entry without its ctinfo: %w", p.ID, ErrMalformed)
		}
		p.CT = &f
	}
	return nil
}

// AppendBinary appends p as a netlink message of type NFQNL_MSG_PACKET,
// as the kernel builds it: what tests and fuzzing compare the decoder
// with. CT is encoded from CTAttrs (CT itself is not encoded); NFQA_CT_INFO
// is sent with NFQA_CT, or when not 0. Zero fields other than ID, HWProto and Hook are
// left out.
func (p *Packet) AppendBinary(b []byte) ([]byte, error) {
	if len(p.Payload) > MaxCopyRange || len(p.CTAttrs) > MaxCopyRange {
		return b, fmt.Errorf("payload of %d bytes or conntrack attributes of %d, at most %d each: %w",
			len(p.Payload), len(p.CTAttrs), MaxCopyRange, ErrMalformed)
	}
	start := len(b)
	b = appendHeader(b, subsysQueue<<8|msgPacket, 0, 0, p.Family, p.Queue)
	var hdr [7]byte
	binary.BigEndian.PutUint32(hdr[:], p.ID)
	binary.BigEndian.PutUint16(hdr[4:], p.HWProto)
	hdr[6] = uint8(p.Hook)
	b = appendAttr(b, attrPacketHdr, hdr[:])
	for _, a := range []struct {
		typ uint16
		v   uint32
	}{{attrInDev, p.InDev}, {attrOutDev, p.OutDev}, {attrMark, p.Mark}} {
		if a.v != 0 {
			b = appendU32(b, a.typ, a.v)
		}
	}
	if p.CTAttrs != nil {
		b = appendAttr(b, attrCT|nlaFNested, p.CTAttrs)
	}
	if p.CTAttrs != nil || p.CTInfo != 0 {
		b = appendU32(b, attrCTInfo, uint32(p.CTInfo))
	}
	if p.CapLen != 0 {
		b = appendU32(b, attrCapLen, p.CapLen)
	}
	if p.SKBInfo != 0 {
		b = appendU32(b, attrSKBInfo, p.SKBInfo)
	}
	if p.Payload != nil {
		b = appendAttr(b, attrPayload, p.Payload)
	}
	binary.NativeEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b, nil
}

// MarshalBinary returns p as AppendBinary encodes it.
func (p *Packet) MarshalBinary() ([]byte, error) { return p.AppendBinary(nil) }

const nlaFNested = 0x8000 // NLA_F_NESTED

// splitMessage checks a netlink message's header against b and returns its
// type, flags, sequence number and the bytes after the header.
func splitMessage(b []byte) (typ, flags uint16, seq uint32, body []byte, err error) {
	if len(b) < nlmsgHeaderLen {
		return 0, 0, 0, nil, fmt.Errorf("netlink header in %d bytes: %w", len(b), ErrMalformed)
	}
	l := binary.NativeEndian.Uint32(b)
	if l < nlmsgHeaderLen || l > uint32(len(b)) {
		return 0, 0, 0, nil, fmt.Errorf("netlink message of length %d in %d bytes: %w", l, len(b), ErrMalformed)
	}
	typ = binary.NativeEndian.Uint16(b[4:])
	flags = binary.NativeEndian.Uint16(b[6:])
	seq = binary.NativeEndian.Uint32(b[8:])
	return typ, flags, seq, b[nlmsgHeaderLen:l], nil
}

// forEachMessage calls fn with the type and the bytes after the header of
// each netlink message of a datagram, and stops at the first malformed one.
func forEachMessage(d []byte, fn func(typ uint16, body []byte)) error {
	for len(d) > 0 {
		typ, _, _, body, err := splitMessage(d)
		if err != nil {
			return err
		}
		fn(typ, body)
		d = d[min(len(d), (nlmsgHeaderLen+len(body)+3)&^3):]
	}
	return nil
}

// parseError decodes an NLMSG_ERROR body: the errno (negative in the
// message, returned positive; 0 is an ACK) and the sequence number of the
// request it answers.
func parseError(body []byte) (errno int32, seq uint32, err error) {
	if len(body) < 4+nlmsgHeaderLen {
		return 0, 0, fmt.Errorf("netlink error in %d bytes: %w", len(body), ErrMalformed)
	}
	errno = -int32(binary.NativeEndian.Uint32(body))
	seq = binary.NativeEndian.Uint32(body[4+8:])
	return errno, seq, nil
}

// appendHeader appends a netlink header (its length to be set by the
// caller) and an nfgenmsg.
func appendHeader(b []byte, typ, flags uint16, seq uint32, family uint8, resID uint16) []byte {
	var h [nlmsgHeaderLen + nfgenHeaderLen]byte
	binary.NativeEndian.PutUint16(h[4:], typ)
	binary.NativeEndian.PutUint16(h[6:], flags)
	binary.NativeEndian.PutUint32(h[8:], seq)
	h[16] = family
	binary.BigEndian.PutUint16(h[18:], resID)
	return append(b, h[:]...)
}

// appendAttr appends an attribute, padded to 4 bytes.
func appendAttr(b []byte, typ uint16, data []byte) []byte {
	var h [nlaHeaderLen]byte
	binary.NativeEndian.PutUint16(h[:], uint16(nlaHeaderLen+len(data)))
	binary.NativeEndian.PutUint16(h[2:], typ)
	b = append(b, h[:]...)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func appendU32(b []byte, typ uint16, v uint32) []byte {
	var d [4]byte
	binary.BigEndian.PutUint32(d[:], v)
	return appendAttr(b, typ, d[:])
}

// finish sets the length of the message that begins at start.
func finish(b []byte, start int) []byte {
	binary.NativeEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

// appendVerdict appends an NFQNL_MSG_VERDICT (batch false) or
// NFQNL_MSG_VERDICT_BATCH (batch true: every packet with an id up to id)
// for a queue.
func appendVerdict(b []byte, queue uint16, id uint32, v Verdict, batch bool, flags uint16, seq uint32) []byte {
	typ := uint16(subsysQueue<<8 | msgVerdict)
	if batch {
		typ = subsysQueue<<8 | msgVerdictBatch
	}
	start := len(b)
	b = appendHeader(b, typ, nlmFRequest|flags, seq, 0, queue)
	var d [8]byte
	binary.BigEndian.PutUint32(d[:], uint32(v))
	binary.BigEndian.PutUint32(d[4:], id)
	b = appendAttr(b, attrVerdictHdr, d[:])
	return finish(b, start)
}

// config is an NFQNL_MSG_CONFIG request; zero fields are left out.
type config struct {
	cmd       uint8  // cmdBind, cmdUnbind, or 0
	copyMode  uint8  // with copyRange: NFQA_CFG_PARAMS when not 0
	copyRange uint32 //
	maxLen    *uint32
	mask      uint32 // NFQA_CFG_MASK and NFQA_CFG_FLAGS when not 0
	flags     uint32
}

// appendConfig appends an NFQNL_MSG_CONFIG for a queue, asking for an ACK.
func appendConfig(b []byte, queue uint16, c config, seq uint32) []byte {
	start := len(b)
	b = appendHeader(b, subsysQueue<<8|msgConfig, nlmFRequest|nlmFAck, seq, 0, queue)
	if c.cmd != 0 {
		// nfqnl_msg_config_cmd: command, pad, pf (unused since 3.8).
		b = appendAttr(b, cfgCmd, []byte{c.cmd, 0, 0, 0})
	}
	if c.copyMode != 0 {
		var d [5]byte // nfqnl_msg_config_params, packed
		binary.BigEndian.PutUint32(d[:], c.copyRange)
		d[4] = c.copyMode
		b = appendAttr(b, cfgParams, d[:])
	}
	if c.maxLen != nil {
		b = appendU32(b, cfgMaxLen, *c.maxLen)
	}
	if c.mask != 0 {
		b = appendU32(b, cfgMask, c.mask)
		b = appendU32(b, cfgFlags, c.flags)
	}
	return finish(b, start)
}

// attrIter iterates over a run of netlink attributes without copying.
type attrIter struct {
	b    []byte
	typ  uint16
	data []byte
	err  error
}

func (it *attrIter) next() bool {
	for it.err == nil && len(it.b) > 0 {
		if len(it.b) < nlaHeaderLen {
			it.err = fmt.Errorf("%d bytes left, an attribute header is 4: %w", len(it.b), ErrMalformed)
			return false
		}
		l := int(binary.NativeEndian.Uint16(it.b))
		typ := binary.NativeEndian.Uint16(it.b[2:]) & nlaTypeMask
		switch {
		case l > len(it.b):
			it.err = fmt.Errorf("attribute %d of %d bytes in %d: %w", typ, l, len(it.b), ErrMalformed)
			return false
		case l == 0:
			it.b = it.b[nlaHeaderLen:] // an empty attribute: skipped, as netlink does
			continue
		case l < nlaHeaderLen:
			it.err = fmt.Errorf("attribute %d of length %d: %w", typ, l, ErrMalformed)
			return false
		}
		it.typ, it.data = typ, it.b[nlaHeaderLen:l]
		it.b = it.b[min(len(it.b), (l+3)&^3):]
		return true
	}
	return false
}

func (it *attrIter) u32() uint32 {
	if len(it.data) != 4 {
		it.err = fmt.Errorf("attribute %d has %d bytes, want 4: %w", it.typ, len(it.data), ErrMalformed)
		return 0
	}
	return binary.BigEndian.Uint32(it.data)
}
