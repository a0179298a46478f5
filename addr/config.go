package addr

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Config describes one VRRP instance's addresses. It is passed by value and
// never modified by the package.
type Config struct {
	// Interface is the name of the link the instance runs on.
	Interface string
	// VRID is the virtual router id, 1..255.
	VRID uint8
	// VIPs are the virtual addresses, all of one family. The prefix length
	// is the one the address is added with (10.0.0.1/24 gets the subnet
	// route of 10.0.0.0/24 if the interface has none).
	VIPs []netip.Prefix
	// VirtualMAC makes the instance own a macvlan link with the RFC 5798
	// virtual MAC (see VirtualMAC); the VIPs then live on that link.
	VirtualMAC bool
	// GARP tells how the VIPs are announced.
	GARP GARP
}

// GARP tells how the VIPs are announced: gratuitous ARP for IPv4,
// unsolicited neighbour advertisements for IPv6.
type GARP struct {
	// Repeat is the number of messages per burst, at least 1. A message is
	// one ARP request and one ARP reply per IPv4 VIP, or one neighbour
	// advertisement per IPv6 VIP.
	Repeat int
	// Interval is the time between the messages of a burst; 0 sends them
	// back to back.
	Interval time.Duration
	// Delay, when not 0, sends a second burst this long after the first.
	Delay time.Duration
	// Refresh, when not 0, sends a burst this often while the VIPs are up.
	Refresh time.Duration
}

// Errors returned by New for an invalid Config, and by the Manager's methods.
var (
	ErrInvalidConfig = errors.New("invalid addr config")
	ErrClosed        = errors.New("addr manager closed")
	ErrNotUp         = errors.New("VIPs are not up")
)

// VirtualMAC returns the virtual router MAC address of RFC 5798 section 7.3:
// 00:00:5e:00:01:vrid for IPv4, 00:00:5e:00:02:vrid for IPv6.
func VirtualMAC(vrid uint8, ipv6 bool) net.HardwareAddr {
	family := byte(0x01)
	if ipv6 {
		family = 0x02
	}
	return net.HardwareAddr{0x00, 0x00, 0x5e, 0x00, family, vrid}
}

// macvlanName is the name of the virtual MAC link of an instance, as
// keepalived names it.
func macvlanName(vrid uint8, ipv6 bool) string {
	if ipv6 {
		return fmt.Sprintf("vrrp6.%d", vrid)
	}
	return fmt.Sprintf("vrrp.%d", vrid)
}

// validate checks c and reports whether its VIPs are IPv6.
func (c Config) validate() (ipv6 bool, err error) {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, a...)...))
	}
	if c.Interface == "" {
		bad("no interface")
	}
	if c.VRID == 0 {
		bad("vrid 0 (want 1..255)")
	}
	seen := make(map[netip.Addr]bool, len(c.VIPs))
	for i, p := range c.VIPs {
		a := p.Addr()
		switch {
		case !p.IsValid():
			bad("VIP %d is not a valid prefix", i)
			continue
		case a.Is4In6():
			bad("VIP %s: IPv4-mapped IPv6 address", p)
		case a.IsUnspecified() || a.IsMulticast() || a.IsLoopback():
			bad("VIP %s: not a unicast address", p)
		case i > 0 && a.Is6() != ipv6:
			bad("VIP %s: VIPs of one instance must all be of one family", p)
		case seen[a]:
			bad("VIP %s: given twice", p)
		}
		if i == 0 {
			ipv6 = a.Is6()
		}
		seen[a] = true
	}
	g := c.GARP
	if g.Repeat < 1 {
		bad("garp repeat %d (want at least 1)", g.Repeat)
	}
	if g.Interval < 0 || g.Delay < 0 || g.Refresh < 0 {
		bad("negative garp interval, delay or refresh")
	}
	return ipv6, errors.Join(errs...)
}
