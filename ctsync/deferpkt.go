package ctsync

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/wire"
)

// Which packets defer holds (the rules of deferRules), and what state each
// one creates or advances, read from its headers where the kernel cannot
// give the conntrack entry (no CONFIG_NETFILTER_NETLINK_GLUE_CT).
//
// With each direction of a TCP connection crossing another node:
//   - the SYN creates the state (SYN_SENT): the node that forwards it
//     holds it until its peers have the state, or the SYN-ACK, reaching a
//     peer without it, is INVALID there;
//   - the SYN-ACK advances it to SYN_RECV: the node that forwards it holds
//     it until its peers have SYN_RECV, or the client's ACK, reaching the
//     first node in SYN_SENT, is INVALID there (an ACK in SYN_SENT is
//     invalid even for a liberal entry);
//   - the client's ACK (ESTABLISHED) and every later packet need no wait:
//     each node's entry accepts them in SYN_RECV or later, and the
//     replicated updates follow.
//
// A UDP or ICMP flow's first packet creates its state; the reply, on
// another node, would otherwise be a new flow in the wrong direction (an
// ICMP echo reply without its request is INVALID). Data never waits.

// heldKind is what a held packet does to its flow's state.
type heldKind uint8

const (
	heldFirst  heldKind = iota + 1 // a UDP or ICMP flow's first packet
	heldSYN                        // a TCP SYN: SYN_SENT
	heldSYNACK                     // a TCP SYN-ACK: SYN_RECV
)

// Timeouts of the states written from headers: the kernel's defaults
// (nf_conntrack_tcp_timeout_syn_sent, ..._syn_recv, nf_conntrack_udp_timeout,
// nf_conntrack_icmp_timeout). The peer's own events bring the real ones.
const (
	timeoutSynSent = 120
	timeoutSynRecv = 60
	timeoutUDP     = 30
	timeoutICMP    = 30
)

// errNotHeld: the packet is not one defer holds (a fragment, TCP without
// SYN, an ICMP error, another protocol): it passes at once.
var errNotHeld = errors.New("not a packet that creates or advances a state")

var errShort = errors.New("packet headers truncated")

// headerFlow derives from a packet's network and transport headers the
// flow state it creates or advances, without NAT: for a SYN-ACK the
// original tuple is the packet's reversed.
func headerFlow(b []byte) (ct.Flow, heldKind, error) {
	proto, src, dst, l4, err := ipHeader(b)
	if err != nil {
		return ct.Flow{}, 0, err
	}
	var f ct.Flow
	switch proto {
	case ct.ProtoTCP:
		if len(l4) < 14 {
			return ct.Flow{}, 0, errShort
		}
		sport, dport := binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
		const fin, syn, rst, ack = 0x01, 0x02, 0x04, 0x10
		t := ct.NewTuple(proto, src, dst, sport, dport)
		switch l4[13] & (fin | syn | rst | ack) {
		case syn:
			f = ct.Flow{Orig: t, Reply: t.Reverse(), Timeout: timeoutSynSent}
			f.TCP.State = ct.TCPSynSent
			return f, heldSYN, nil
		case syn | ack:
			f = ct.Flow{Orig: t.Reverse(), Reply: t, Timeout: timeoutSynRecv, Status: ct.StatusSeenReply}
			f.TCP.State = ct.TCPSynRecv
			return f, heldSYNACK, nil
		}
		return ct.Flow{}, 0, errNotHeld
	case ct.ProtoUDP, ct.ProtoUDPLite:
		if len(l4) < 4 {
			return ct.Flow{}, 0, errShort
		}
		t := ct.NewTuple(proto, src, dst, binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:]))
		return ct.Flow{Orig: t, Reply: t.Reverse(), Timeout: timeoutUDP}, heldFirst, nil
	case ct.ProtoICMP, ct.ProtoICMPv6:
		if len(l4) < 8 {
			return ct.Flow{}, 0, errShort
		}
		typ, code := l4[0], l4[1]
		if !(proto == ct.ProtoICMP && typ == 8 || proto == ct.ProtoICMPv6 && typ == 128) {
			return ct.Flow{}, 0, errNotHeld // only an echo request starts a flow here
		}
		t := ct.NewICMPTuple(src, dst, typ, code, binary.BigEndian.Uint16(l4[4:]))
		return ct.Flow{Orig: t, Reply: wire.Inverse(t), Timeout: timeoutICMP}, heldFirst, nil
	}
	return ct.Flow{}, 0, errNotHeld
}

// ipHeader parses an IPv4 or IPv6 header (IPv6 extension headers
// skipped) and returns the transport protocol, the addresses and the
// transport header. A fragment other than the first is not held.
func ipHeader(b []byte) (proto uint8, src, dst netip.Addr, l4 []byte, err error) {
	if len(b) < 1 {
		return 0, src, dst, nil, errShort
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return 0, src, dst, nil, errShort
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < 20 || len(b) < ihl {
			return 0, src, dst, nil, errShort
		}
		if binary.BigEndian.Uint16(b[6:])&0x1fff != 0 {
			return 0, src, dst, nil, errNotHeld // a later fragment
		}
		src, dst = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
		return b[9], src, dst, b[ihl:], nil
	case 6:
		if len(b) < 40 {
			return 0, src, dst, nil, errShort
		}
		src, dst = netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
		next, rest := b[6], b[40:]
		for {
			switch next {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if len(rest) < 8 {
					return 0, src, dst, nil, errShort
				}
				n := (int(rest[1]) + 1) * 8
				if len(rest) < n {
					return 0, src, dst, nil, errShort
				}
				next, rest = rest[0], rest[n:]
			case 44: // fragment
				if len(rest) < 8 {
					return 0, src, dst, nil, errShort
				}
				if binary.BigEndian.Uint16(rest[2:])&0xfff8 != 0 {
					return 0, src, dst, nil, errNotHeld
				}
				next, rest = rest[0], rest[8:]
			default:
				return next, src, dst, rest, nil
			}
		}
	}
	return 0, src, dst, nil, errNotHeld
}
