package vrrp

import (
	"errors"
	"net"
	"net/netip"

	vnl "github.com/vishvananda/netlink"
)

// RouteProtocol is the protocol number (rtm_protocol, FRA_PROTOCOL) that
// marks the routes and rules ctha adds: ctha only ever finds, replaces
// or deletes objects that carry it, never the administrator's (`ip route
// add` uses "boot", 3). keepalived uses 18; FRR 186-198. Add
// "167 ctha" to /etc/iproute2/rt_protos.d/ctha.conf for `ip route` to
// show the name.
const RouteProtocol = 167

// ErrRouteConflict: the kernel holds a route of someone else's where a
// virtual route goes (same table, destination and metric); ctha leaves
// it alone and does not add its own.
var ErrRouteConflict = errors.New("another route (not ctha's) holds the same table, destination and metric")

// kernelMetric is the metric the kernel gives r: IPv6 routes added
// without one get 1024.
func kernelMetric(r Route) int {
	if r.Metric == 0 && r.To.Addr().Is6() {
		return 1024
	}
	return r.Metric
}

// routeMatches reports whether the kernel's route got is ctha's form of
// r: ctha's protocol, the same table, destination, gateway (none when r
// has none) and metric, and the interface ifindex (any when 0: r leaves
// the choice to the kernel).
func routeMatches(r Route, ifindex int, got vnl.Route) bool {
	family := vnl.FAMILY_V4
	if r.To.Addr().Is6() {
		family = vnl.FAMILY_V6
	}
	switch {
	case got.Protocol != RouteProtocol, got.Family != family, got.Table != tableOrMain(r.Table),
		prefixOf(got.Dst, family) != r.To, got.Priority != kernelMetric(r),
		len(got.MultiPath) > 0:
		return false
	case ifindex != 0 && got.LinkIndex != ifindex:
		return false
	}
	if !r.Via.IsValid() {
		return len(got.Gw) == 0
	}
	a, ok := netip.AddrFromSlice(got.Gw)
	return ok && a.Unmap() == r.Via
}

// ruleMatches reports whether the kernel's rule got is ctha's form of r:
// ctha's protocol, exactly r's selectors (no mark, interface, tos, port
// or other selector besides), the same table, and the same priority
// when r sets one.
func ruleMatches(r Rule, got vnl.Rule) bool {
	switch {
	case got.Protocol != RouteProtocol, got.Family != ruleFamily(r), got.Table != r.Table,
		prefixOf2(got.Src) != r.From, prefixOf2(got.Dst) != r.To,
		r.Priority != 0 && got.Priority != r.Priority:
		return false
	case got.Mark != 0, got.Mask != nil, got.Tos != 0, got.TunID != 0, got.Goto > 0,
		got.Flow > 0, got.IifName != "", got.OifName != "", got.SuppressIfgroup >= 0,
		got.SuppressPrefixlen >= 0, got.Invert, got.Dport != nil, got.Sport != nil,
		got.IPProto != 0, got.UIDRange != nil:
		return false
	}
	return true
}

func ruleFamily(r Rule) int {
	p := r.From
	if !p.IsValid() {
		p = r.To
	}
	return familyOfPrefix(p)
}

// delRoute is what deletes exactly got: every field the kernel matches
// a deletion on, taken from the dump (a field left out is a wildcard).
func delRoute(got vnl.Route) *vnl.Route {
	dst := got.Dst
	if dst == nil {
		bits := 32
		ip := net.IPv4zero.To4()
		if got.Family == vnl.FAMILY_V6 {
			bits, ip = 128, net.IPv6zero
		}
		dst = &net.IPNet{IP: ip, Mask: net.CIDRMask(0, bits)}
	}
	return &vnl.Route{
		Family: got.Family, Dst: dst, Table: got.Table, Protocol: got.Protocol,
		Priority: got.Priority, Gw: got.Gw, LinkIndex: got.LinkIndex,
		Scope: got.Scope, Type: got.Type, Tos: got.Tos,
	}
}

// delRule is what deletes exactly got (listed with ctha's protocol).
func delRule(got vnl.Rule) *vnl.Rule {
	nr := vnl.NewRule()
	nr.Family, nr.Src, nr.Dst, nr.Table = got.Family, got.Src, got.Dst, got.Table
	nr.Priority, nr.Protocol = got.Priority, got.Protocol
	return nr
}
