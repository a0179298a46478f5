package ctsync

import (
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
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

// Reasons a flow is not replicated, counted in Stats.Filtered.
const (
	filteredVRRP     = "vrrp"
	filteredProtocol = "protocol"
	filteredOwn      = "own_address"
	filteredAddress  = "ignored_address"
	filteredTCPState = "tcp_state"
)

var filterReasons = []string{filteredVRRP, filteredProtocol, filteredOwn, filteredAddress, filteredTCPState}

// filter decides which flows are replicated. It is the authority: the
// kernel's socket filter (kernelFilter) drops a subset of what it drops,
// so a fault there can only deliver more events, never lose one.
//
// A flow is replicated from the moment it is seen in a kept TCP state
// until it is destroyed: an update to a state that is not kept is not
// sent (the kernel drops it), but the flow stays replicated with its last
// kept state, and its end is always sent.
type filter struct {
	protos    map[uint8]bool // nil: all
	tcpStates map[uint8]bool // nil: all
	ignore    []netip.Prefix
	own       map[netip.Addr]bool // this node's addresses, its VIPs excepted

	filtered [5]atomic.Uint64 // events not replicated, by filterReasons
}

func newFilter(f Filter) *filter {
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

// kernelFilter is what of the filter the kernel applies to the event
// socket: protocols, VRRP, the ignored prefixes and the TCP states. This
// node's own addresses change at run time and stay in userspace.
func (f *filter) kernelFilter() kernel.EventFilter {
	kf := kernel.EventFilter{ExcludeProtocols: []uint8{protoVRRP}, Ignore: f.ignore}
	for p := range f.protos {
		kf.Protocols = append(kf.Protocols, p)
	}
	for s := range f.tcpStates {
		kf.TCPStates = append(kf.TCPStates, s)
	}
	slices.Sort(kf.Protocols)
	slices.Sort(kf.TCPStates)
	return kf
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
func (f *filter) keep(fl *ct.Flow) bool { return f.reason(fl) == "" }

// reason says why a flow is not replicated; "" when it is.
func (f *filter) reason(fl *ct.Flow) string {
	if r := f.staticReason(fl); r != "" {
		return r
	}
	if fl.Orig.Proto == ct.ProtoTCP && f.tcpStates != nil && !f.tcpStates[fl.TCP.State] {
		return filteredTCPState
	}
	return ""
}

// staticReason is reason without the TCP state: what holds for the
// flow's whole life (this node's addresses aside).
func (f *filter) staticReason(fl *ct.Flow) string {
	if fl.Orig.Proto == protoVRRP {
		return filteredVRRP // the pair's own election, tracked when not notracked
	}
	if f.protos != nil && !f.protos[fl.Orig.Proto] {
		return filteredProtocol
	}
	src, dst, rsrc := fl.Orig.SrcAddr(), fl.Orig.DstAddr(), fl.Reply.SrcAddr()
	if f.own[src] || f.own[rsrc] {
		return filteredOwn
	}
	for _, p := range f.ignore {
		if p.Contains(src) || p.Contains(dst) {
			return filteredAddress
		}
	}
	return ""
}

// admission is what to do with a flow seen in an event or a dump.
type admission uint8

const (
	admitStore  admission = iota + 1 // cache (and send) its state
	admitForget                      // not replicated: forget it if cached
	admitHold                        // keep the cached state as it is, if any
)

// admit decides for a flow seen in a NEW or UPDATE event or a dump, given
// whether it is cached (replicated) already. An event that is filtered is
// counted when count is set.
func (f *filter) admit(fl *ct.Flow, cached, count bool) admission {
	r := f.reason(fl)
	if r == "" {
		return admitStore
	}
	if count {
		f.filtered[slices.Index(filterReasons, r)].Add(1)
	}
	if r == filteredTCPState {
		return admitHold
	}
	return admitForget
}

// admitEvent applies the filter to a NEW or UPDATE event of a flow. An
// update that does not carry the TCP state (the kernel sends it only when
// it changed, e.g. not for a new mark) gets the cached one.
func (e *Engine) admitEvent(ev *kernel.Event, k ct.Key) admission {
	old, cached := e.internal.get(k)
	if cached && ev.Flow.Orig.Proto == ct.ProtoTCP && ev.Flow.TCP == (ct.TCPInfo{}) {
		ev.Flow.TCP = old.TCP
	}
	return e.flt.admit(&ev.Flow, cached, true)
}

// counts returns the filtered events by reason.
func (f *filter) counts() map[string]uint64 {
	m := make(map[string]uint64, len(filterReasons))
	for i, r := range filterReasons {
		m[r] = f.filtered[i].Load()
	}
	return m
}
