package vrrp

import (
	"net/netip"
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

// TestRouteWatchConcerns: only the deletion of one of ours (or a link or
// rule change) wakes the groups; a routing daemon's churn does not.
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
		{"ours added", routeMsg(unix.RTM_NEWROUTE, unix.AF_INET, unix.RT_TABLE_MAIN, ours), false},
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
