package kernel

import (
	"net/netip"

	"github.com/ctha/ctha/ctsync/ct"
)

// Builders of realistic flows for the tests.

const (
	stEst  = ct.StatusConfirmed | ct.StatusSeenReply | ct.StatusAssured
	natBit = ct.StatusSrcNATDone | ct.StatusDstNATDone
	tcpWS  = ct.TCPFlagWindowScale | ct.TCPFlagSACKPerm
)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// plain returns a flow without NAT.
func plain(proto uint8, src, dst string, sport, dport uint16) ct.Flow {
	o := ct.NewTuple(proto, ip(src), ip(dst), sport, dport)
	f := ct.Flow{Orig: o, Reply: o.Reverse(), Status: stEst, Timeout: 300}
	if proto == ct.ProtoTCP {
		f.TCP = ct.TCPInfo{State: ct.TCPEstablished, WScaleOrig: 7, WScaleRepl: 8, FlagsOrig: tcpWS, FlagsRepl: tcpWS}
	}
	return f
}

// echo returns an ICMP or ICMPv6 echo flow.
func echo(src, dst string, id uint16) ct.Flow {
	req, rep := uint8(8), uint8(0)
	if ip(src).Is6() {
		req, rep = 128, 129
	}
	return ct.Flow{
		Orig:    ct.NewICMPTuple(ip(src), ip(dst), req, 0, id),
		Reply:   ct.NewICMPTuple(ip(dst), ip(src), rep, 0, id),
		Status:  ct.StatusConfirmed | ct.StatusSeenReply,
		Timeout: 30,
	}
}

// snat translates f's source to to:port (masquerade: replies come back to
// it).
func snat(f ct.Flow, to string, port uint16) ct.Flow {
	f.Reply.Dst = ip(to).As16()
	if f.Orig.IsICMP() {
		f.Reply.SrcPort = port
	} else {
		f.Reply.DstPort = port
	}
	f.Status |= ct.StatusSrcNAT | natBit
	return f
}

// dnat translates f's destination to to:port (port forward: replies come
// from it).
func dnat(f ct.Flow, to string, port uint16) ct.Flow {
	f.Reply.Src = ip(to).As16()
	if !f.Orig.IsICMP() {
		f.Reply.SrcPort = port
	}
	f.Status |= ct.StatusDstNAT | natBit
	return f
}

func with(f ct.Flow, fn func(*ct.Flow)) ct.Flow {
	fn(&f)
	return f
}

func extra(f *ct.Flow) *ct.Extra {
	if f.Extra == nil {
		f.Extra = &ct.Extra{}
	}
	return f.Extra
}

// roundTripCases is a table of every kind of flow ctha replicates.
func roundTripCases() []struct {
	name string
	flow ct.Flow
} {
	return []struct {
		name string
		flow ct.Flow
	}{
		{"tcp4 established", plain(ct.ProtoTCP, "10.1.0.1", "10.2.0.1", 40001, 80)},
		{"tcp4 syn sent", with(plain(ct.ProtoTCP, "10.1.0.1", "10.2.0.1", 40002, 80), func(f *ct.Flow) {
			f.Status = ct.StatusConfirmed
			f.TCP = ct.TCPInfo{State: ct.TCPSynSent, WScaleOrig: 7, FlagsOrig: tcpWS}
			f.Timeout = 120
		})},
		{"udp4", plain(ct.ProtoUDP, "10.1.0.1", "10.2.0.1", 40003, 53)},
		{"icmp4 echo", echo("10.1.0.1", "10.2.0.1", 1234)},
		{"tcp6", plain(ct.ProtoTCP, "fd00:1::1", "fd00:2::1", 40004, 443)},
		{"udp6", plain(ct.ProtoUDP, "fd00:1::1", "fd00:2::1", 40005, 123)},
		{"icmp6 echo", echo("fd00:1::1", "fd00:2::1", 4321)},
		{"snat tcp4 masquerade", snat(plain(ct.ProtoTCP, "10.1.0.1", "198.51.100.1", 40006, 443), "192.0.2.1", 50006)},
		{"snat tcp4 same port", snat(plain(ct.ProtoTCP, "10.1.0.1", "198.51.100.1", 40007, 443), "192.0.2.1", 40007)},
		{"snat udp6", snat(plain(ct.ProtoUDP, "fd00:1::1", "2001:db8::1", 40008, 53), "2001:db8:ff::1", 50008)},
		{"snat icmp4", snat(echo("10.1.0.2", "198.51.100.1", 77), "192.0.2.1", 77)},
		{"snat icmp4 id remapped", snat(echo("10.1.0.3", "198.51.100.1", 78), "192.0.2.1", 900)},
		{"dnat udp4 port forward", dnat(plain(ct.ProtoUDP, "198.51.100.7", "192.0.2.1", 40009, 53), "10.3.0.5", 5353)},
		{"dnat tcp6", dnat(plain(ct.ProtoTCP, "2001:db8::7", "2001:db8:ff::1", 40010, 80), "fd00:3::5", 8080)},
		{"snat+dnat tcp4", snat(dnat(plain(ct.ProtoTCP, "10.1.0.1", "192.0.2.80", 40011, 80), "10.3.0.80", 8080), "10.3.0.254", 60011)},
		{"null nat binding", with(plain(ct.ProtoTCP, "10.1.0.1", "10.2.0.1", 40012, 80), func(f *ct.Flow) { f.Status |= natBit })},
		{"mark", with(plain(ct.ProtoTCP, "10.1.0.1", "10.2.0.1", 40013, 80), func(f *ct.Flow) { f.Mark = 0x1234abcd })},
		{"zone 7", with(plain(ct.ProtoTCP, "10.1.0.1", "10.2.0.1", 40014, 80), func(f *ct.Flow) { f.Zone = 7 })},
		{"zone 7 same tuple as zone 0", with(plain(ct.ProtoTCP, "10.1.0.1", "10.2.0.1", 40013, 80), func(f *ct.Flow) { f.Zone = 7 })},
		{"labels", with(plain(ct.ProtoUDP, "10.1.0.1", "10.2.0.1", 40015, 80), func(f *ct.Flow) {
			extra(f).Labels = [16]byte{0: 0x02, 5: 0x80, 15: 0x01}
		})},
		{"helper ftp", with(plain(ct.ProtoTCP, "10.1.0.1", "10.2.0.21", 40016, 21), func(f *ct.Flow) {
			extra(f).Helper = "ftp"
			f.Status |= ct.StatusHelper
		})},
		{"seqadj on snat ftp", with(snat(plain(ct.ProtoTCP, "10.1.0.1", "198.51.100.21", 40017, 21), "192.0.2.1", 50017), func(f *ct.Flow) {
			extra(f).Helper = "ftp"
			f.Status |= ct.StatusHelper
			f.Extra.SeqAdjOrig = ct.SeqAdj{Position: 1000, OffsetBefore: 0, OffsetAfter: 3}
			f.Extra.SeqAdjRepl = ct.SeqAdj{Position: 2000, OffsetBefore: 5, OffsetAfter: 7}
			f.Status |= ct.StatusSeqAdjust
		})},
		{"sctp established", with(plain(ct.ProtoSCTP, "10.1.0.1", "10.2.0.1", 40018, 3868), func(f *ct.Flow) {
			x := extra(f)
			x.SCTPState, x.SCTPVTagOrig, x.SCTPVTagR = 4, 0x11223344, 0x55667788 // SCTP_CONNTRACK_ESTABLISHED
		})},
	}
}
