package ctsync

import (
	"net"
	"net/netip"
	"slices"

	"github.com/ctha/ctha/cfg"
	"github.com/ctha/ctha/ctsync/ct"
)

var protocolNumbers = map[string]uint8{
	"tcp": ct.ProtoTCP, "udp": ct.ProtoUDP, "udplite": ct.ProtoUDPLite, "icmp": ct.ProtoICMP,
	"icmpv6": ct.ProtoICMPv6, "sctp": ct.ProtoSCTP, "dccp": ct.ProtoDCCP, "gre": ct.ProtoGRE,
}

var tcpStateNumbers = map[string]uint8{
	"SYN_SENT": ct.TCPSynSent, "SYN_RECV": ct.TCPSynRecv, "ESTABLISHED": ct.TCPEstablished,
	"FIN_WAIT": ct.TCPFinWait, "CLOSE_WAIT": ct.TCPCloseWait, "LAST_ACK": ct.TCPLastAck,
	"TIME_WAIT": ct.TCPTimeWait, "CLOSE": ct.TCPClose, "SYN_SENT2": ct.TCPSynSent2,
}

// protoVRRP is VRRP's IP protocol: its adverts are never replicated.
const protoVRRP = 112

// filter decides which flows are replicated.
type filter struct {
	protos    map[uint8]bool // nil: all
	tcpStates map[uint8]bool // nil: all
	ignore    []netip.Prefix
	own       map[netip.Addr]bool // this node's addresses, its VIPs excepted
}

func newFilter(f cfg.Filter) *filter {
	flt := &filter{ignore: f.IgnoreAddresses, own: map[netip.Addr]bool{}}
	if len(f.Protocols) > 0 {
		flt.protos = map[uint8]bool{}
		for _, p := range f.Protocols {
			flt.protos[protocolNumbers[p]] = true
		}
	}
	if len(f.TCPStates) > 0 {
		flt.tcpStates = map[uint8]bool{}
		for _, s := range f.TCPStates {
			flt.tcpStates[tcpStateNumbers[s]] = true
		}
	}
	return flt
}

// setOwn records this node's addresses, except those in exclude (VIPs:
// flows to a VIP are the pair's, not this node's).
func (f *filter) setOwn(addrs []netip.Addr, exclude []netip.Addr) {
	clear(f.own)
	for _, a := range addrs {
		if !slices.Contains(exclude, a) {
			f.own[a.Unmap()] = true
		}
	}
}

// keep reports whether a flow is replicated: not VRRP, not of this node's
// own addresses (original or reply source), not ignored, of a replicated
// protocol and TCP state.
func (f *filter) keep(fl *ct.Flow) bool {
	if fl.Orig.Proto == protoVRRP {
		return false // the pair's own election, tracked when not notracked
	}
	if f.protos != nil && !f.protos[fl.Orig.Proto] {
		return false
	}
	if fl.Orig.Proto == ct.ProtoTCP && f.tcpStates != nil && !f.tcpStates[fl.TCP.State] {
		return false
	}
	src, dst, rsrc := fl.Orig.SrcAddr(), fl.Orig.DstAddr(), fl.Reply.SrcAddr()
	if f.own[src] || f.own[rsrc] {
		return false
	}
	for _, p := range f.ignore {
		if p.Contains(src) || p.Contains(dst) {
			return false
		}
	}
	return true
}

// interfaceAddrs lists every address of this host (its namespace).
func interfaceAddrs() ([]netip.Addr, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}
