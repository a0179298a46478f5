package vrrp

import (
	"net"

	vnl "github.com/vishvananda/netlink"
	"net/netip"
	"slices"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// routeMsg builds an rtnetlink route message.
func routeMsg(typ uint16, family byte, table int, dst netip.Prefix) netlink.Message {
	b := make([]byte, unix.SizeofRtMsg)
	b[0], b[1] = family, byte(dst.Bits())
	b[4] = byte(min(table, 255))
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(unix.RTA_DST, dst.Addr().AsSlice())
	ae.Uint32(unix.RTA_TABLE, uint32(table))
	attrs, _ := ae.Encode()
	return netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ)}, Data: append(b, attrs...)}
}

// TestRouteWatchConcerns: only a route added or deleted where one of ours
// goes (or a link or rule change) wakes the groups; a routing daemon's churn does not.
func TestRouteWatchConcerns(t *testing.T) {
	ours := netip.MustParsePrefix("198.51.100.0/24")
	routes := []routeKey{{table: unix.RT_TABLE_MAIN, to: ours}, {table: 1000, to: netip.MustParsePrefix("2001:db8:5::/48")}}
	other := netip.MustParsePrefix("203.0.113.0/24")
	for _, tc := range []struct {
		name string
		m    netlink.Message
		want bool
	}{
		{"ours deleted", routeMsg(unix.RTM_DELROUTE, unix.AF_INET, unix.RT_TABLE_MAIN, ours), true},
		{"ours added or replaced", routeMsg(unix.RTM_NEWROUTE, unix.AF_INET, unix.RT_TABLE_MAIN, ours), true},
		{"another added", routeMsg(unix.RTM_NEWROUTE, unix.AF_INET, unix.RT_TABLE_MAIN, other), false},
		{"another deleted", routeMsg(unix.RTM_DELROUTE, unix.AF_INET, unix.RT_TABLE_MAIN, other), false},
		{"ours in another table", routeMsg(unix.RTM_DELROUTE, unix.AF_INET, 100, ours), false},
		{"IPv6 in a table over 255", routeMsg(unix.RTM_DELROUTE, unix.AF_INET6, 1000, netip.MustParsePrefix("2001:db8:5::/48")), true},
		{"a link", netlink.Message{Header: netlink.Header{Type: unix.RTM_NEWLINK}}, true},
		{"a rule", netlink.Message{Header: netlink.Header{Type: unix.RTM_DELRULE}}, true},
		{"garbage", netlink.Message{Header: netlink.Header{Type: unix.RTM_DELROUTE}, Data: []byte{2}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := concerns(tc.m, routes); got != tc.want {
				t.Errorf("concerns = %t, want %t", got, tc.want)
			}
		})
	}
}

func ipnet(s string) *net.IPNet {
	p := netip.MustParsePrefix(s)
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// TestRouteMatches: a route is ctha's only with ctha's protocol and
// exactly its gateway, interface (when configured) and metric; an IPv6
// route added without a metric has 1024.
func TestRouteMatches(t *testing.T) {
	v4 := Route{To: netip.MustParsePrefix("0.0.0.0/0"), Dev: "wan"}
	via := Route{To: netip.MustParsePrefix("198.51.100.0/24"), Via: netip.MustParseAddr("10.10.2.100")}
	v6 := Route{To: netip.MustParsePrefix("2001:db8:5::/48"), Dev: "wan", Table: 100}
	ours := func(r vnl.Route) vnl.Route { r.Protocol = RouteProtocol; return r }
	for _, tc := range []struct {
		name    string
		r       Route
		ifindex int
		got     vnl.Route
		want    bool
	}{
		{"ours, default route", v4, 3, ours(vnl.Route{Family: vnl.FAMILY_V4, Table: 254, LinkIndex: 3}), true},
		{"the admin's default via a gateway with a metric", v4, 3,
			vnl.Route{Family: vnl.FAMILY_V4, Table: 254, LinkIndex: 3, Gw: net.ParseIP("10.10.2.1"), Priority: 100, Protocol: unix.RTPROT_BOOT}, false},
		{"ours with a gateway we do not have", v4, 3, ours(vnl.Route{Family: vnl.FAMILY_V4, Table: 254, LinkIndex: 3, Gw: net.ParseIP("10.10.2.1")}), false},
		{"ours with another metric", v4, 3, ours(vnl.Route{Family: vnl.FAMILY_V4, Table: 254, LinkIndex: 3, Priority: 100}), false},
		{"an IPv6 default route of ours", v4, 3, ours(vnl.Route{Family: vnl.FAMILY_V6, Table: 254, LinkIndex: 3}), false},
		{"ours on another interface", v4, 3, ours(vnl.Route{Family: vnl.FAMILY_V4, Table: 254, LinkIndex: 4}), false},
		{"the same route, protocol boot", via, 0,
			vnl.Route{Family: vnl.FAMILY_V4, Table: 254, Dst: ipnet("198.51.100.0/24"), Gw: net.ParseIP("10.10.2.100"), Protocol: unix.RTPROT_BOOT}, false},
		{"ours via, any interface", via, 0, ours(vnl.Route{Family: vnl.FAMILY_V4, Table: 254, Dst: ipnet("198.51.100.0/24"), Gw: net.ParseIP("10.10.2.100").To4(), LinkIndex: 7}), true},
		{"ours via another gateway", via, 0, ours(vnl.Route{Family: vnl.FAMILY_V4, Table: 254, Dst: ipnet("198.51.100.0/24"), Gw: net.ParseIP("10.10.2.101")}), false},
		{"ours in another table", via, 0, ours(vnl.Route{Family: vnl.FAMILY_V4, Table: 100, Dst: ipnet("198.51.100.0/24"), Gw: net.ParseIP("10.10.2.100")}), false},
		{"IPv6 metric 1024 is the default", v6, 3, ours(vnl.Route{Family: vnl.FAMILY_V6, Table: 100, Dst: ipnet("2001:db8:5::/48"), LinkIndex: 3, Priority: 1024}), true},
		{"IPv6 metric 0 is not", v6, 3, ours(vnl.Route{Family: vnl.FAMILY_V6, Table: 100, Dst: ipnet("2001:db8:5::/48"), LinkIndex: 3}), false},
		{"IPv6 another prefix", v6, 3, ours(vnl.Route{Family: vnl.FAMILY_V6, Table: 100, Dst: ipnet("2001:db8:6::/48"), LinkIndex: 3, Priority: 1024}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := routeMatches(tc.r, tc.ifindex, tc.got); got != tc.want {
				t.Errorf("routeMatches = %t, want %t", got, tc.want)
			}
		})
	}
}

// TestRuleMatches: a rule is ctha's only with ctha's protocol and exactly
// its selectors: an administrator's `from A fwmark 1 table 100` is not.
func TestRuleMatches(t *testing.T) {
	r := Rule{From: netip.MustParsePrefix("10.10.1.0/24"), Table: 100}
	rp := Rule{To: netip.MustParsePrefix("2001:db8:7::/48"), Table: 100, Priority: 1001}
	base := func(family int, mod func(*vnl.Rule)) vnl.Rule {
		nr := vnl.NewRule()
		nr.Family, nr.Table, nr.Priority, nr.Protocol = family, 100, 1000, RouteProtocol
		if family == vnl.FAMILY_V4 {
			nr.Src = ipnet("10.10.1.0/24")
		} else {
			nr.Dst, nr.Priority = ipnet("2001:db8:7::/48"), 1001
		}
		if mod != nil {
			mod(nr)
		}
		return *nr
	}
	for _, tc := range []struct {
		name string
		r    Rule
		got  vnl.Rule
		want bool
	}{
		{"ours", r, base(vnl.FAMILY_V4, nil), true},
		{"the admin's, no protocol", r, base(vnl.FAMILY_V4, func(x *vnl.Rule) { x.Protocol = 0 }), false},
		{"with a fwmark", r, base(vnl.FAMILY_V4, func(x *vnl.Rule) { m := uint32(0xffffffff); x.Mark, x.Mask = 1, &m }), false},
		{"with an input interface", r, base(vnl.FAMILY_V4, func(x *vnl.Rule) { x.IifName = "lan" }), false},
		{"another table", r, base(vnl.FAMILY_V4, func(x *vnl.Rule) { x.Table = 101 }), false},
		{"another source", r, base(vnl.FAMILY_V4, func(x *vnl.Rule) { x.Src = ipnet("10.10.0.0/16") }), false},
		{"a destination besides", r, base(vnl.FAMILY_V4, func(x *vnl.Rule) { x.Dst = ipnet("10.0.0.0/8") }), false},
		{"IPv6 with its priority", rp, base(vnl.FAMILY_V6, nil), true},
		{"IPv6 another priority", rp, base(vnl.FAMILY_V6, func(x *vnl.Rule) { x.Priority = 1002 }), false},
		{"another family", rp, base(vnl.FAMILY_V4, func(x *vnl.Rule) { x.Src, x.Dst, x.Priority = nil, ipnet("2001:db8:7::/48"), 1001 }), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ruleMatches(tc.r, tc.got); got != tc.want {
				t.Errorf("ruleMatches = %t, want %t", got, tc.want)
			}
		})
	}
}

// TestDelRouteExact: a deletion names every field the kernel matches on
// (a zero one is a wildcard), and a default route's destination.
func TestDelRouteExact(t *testing.T) {
	got := vnl.Route{Family: vnl.FAMILY_V4, Table: 254, LinkIndex: 3, Priority: 5, Protocol: RouteProtocol, Gw: net.ParseIP("10.0.0.1")}
	d := delRoute(got)
	if d.Protocol != RouteProtocol || d.Priority != 5 || d.LinkIndex != 3 || !d.Gw.Equal(got.Gw) || d.Table != 254 {
		t.Errorf("delRoute = %+v, lacks fields of %+v", d, got)
	}
	if d.Dst == nil || d.Dst.String() != "0.0.0.0/0" {
		t.Errorf("delRoute of a default route: Dst %v, want 0.0.0.0/0", d.Dst)
	}
	rl := vnl.NewRule()
	rl.Family, rl.Table, rl.Priority, rl.Protocol = vnl.FAMILY_V4, 100, 1000, RouteProtocol
	if dr := delRule(*rl); dr.Priority != 1000 || dr.Protocol != RouteProtocol || dr.Table != 100 {
		t.Errorf("delRule = %+v", dr)
	}
}

// TestVIPsOn: what a reload keeps on an interface is what the new
// configuration places there: a VIP moved from wan to lan leaves wan.
func TestVIPsOn(t *testing.T) {
	a, b, c := netip.MustParsePrefix("10.10.1.1/24"), netip.MustParsePrefix("10.10.2.1/24"), netip.MustParsePrefix("203.0.113.5/32")
	in := Instance{Interface: "lan", VIPs: []netip.Prefix{a},
		ExtraVIPs: []ExtraVIP{{Prefix: b, Interface: "lan"}, {Prefix: c, Interface: "wan", Excluded: true}}}
	for _, tc := range []struct {
		iface string
		want  []netip.Prefix
	}{
		{"lan", []netip.Prefix{a, b}},
		{"wan", []netip.Prefix{c}},
		{"dmz", nil},
	} {
		t.Run(tc.iface, func(t *testing.T) {
			if got := in.vipsOn(tc.iface); !slices.Equal(got, tc.want) {
				t.Errorf("vipsOn(%s) = %v, want %v", tc.iface, got, tc.want)
			}
		})
	}
}
