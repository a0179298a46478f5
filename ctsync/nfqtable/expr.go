package nfqtable

import (
	"encoding/binary"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
)

// The xtables NFQUEUE target, revision 3 (linux/netfilter/xt_NFQUEUE.h).
const (
	xtNFQueueName = "NFQUEUE"
	xtNFQueueRev  = 3
	nfqFlagBypass = 0x01 // NFQ_FLAG_BYPASS
)

// QueueExpr returns the expression that queues a packet to queue num with
// bypass: nft's `queue num N bypass` (ModeNative), or the xt NFQUEUE
// target through the compat expression (ModeCompat), which `nft list`
// shows the same way.
func QueueExpr(num uint16, m Mode) expr.Any {
	if m == ModeNative {
		return &expr.Queue{Num: num, Total: 1, Flag: expr.QueueFlagBypass}
	}
	info := xt.Unknown(NFQInfoV3(num))
	return &expr.Target{Name: xtNFQueueName, Rev: xtNFQueueRev, Info: &info}
}

// NFQInfoV3 returns struct xt_NFQ_info_v3 {__u16 queuenum; __u16
// queues_total; __u16 flags;} for one queue with bypass, in host byte
// order and padded to 8 bytes (XT_ALIGN), as iptables-nft sends it.
func NFQInfoV3(num uint16) []byte {
	b := make([]byte, 8)
	binary.NativeEndian.PutUint16(b[0:], num)
	binary.NativeEndian.PutUint16(b[2:], 1)
	binary.NativeEndian.PutUint16(b[4:], nfqFlagBypass)
	return b
}

// Match selects the packets the rule queues: nftables expressions that
// run before the queue expression. Nil queues every packet.
type Match []expr.Any

// MatchTCPSyn matches TCP packets whose flags among FIN, SYN, RST and ACK
// are SYN alone: a connection's first packet (`tcp flags & (fin|syn|rst|ack)
// == syn`).
func MatchTCPSyn() Match { return MatchTCPFlags(tcpFIN|tcpSYN|tcpRST|tcpACK, tcpSYN) }

// TCP flag bits.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// MatchTCPFlags matches TCP packets with flags & mask == value.
func MatchTCPFlags(mask, value uint8) Match {
	return Match{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{mask}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{value}},
	}
}

// MatchCTState matches packets whose conntrack state is one of bits
// (expr.CtStateBitNEW, ...): `ct state new`.
func MatchCTState(bits uint32) Match {
	return Match{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// And concatenates matches: a packet must match all.
func And(ms ...Match) Match {
	var out Match
	for _, m := range ms {
		out = append(out, m...)
	}
	return out
}

// MatchL4Proto matches packets of IP protocol proto (`meta l4proto N`).
func MatchL4Proto(proto uint8) Match {
	return Match{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
	}
}

// MatchCTStatusClear matches packets whose conntrack entry has none of the
// IPS_* status bits (`ct status & bits == 0`), e.g. IPS_DST_NAT (0x20):
// not destination-NATed.
func MatchCTStatusClear(bits uint32) Match {
	return Match{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: make([]byte, 4)},
	}
}
