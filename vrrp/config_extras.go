package vrrp

import "net/netip"

// ExtraVIP is a virtual IP on another interface than the instance's, or
// one left out of the adverts. It follows the role like the others.
type ExtraVIP struct {
	Prefix    netip.Prefix
	Interface string
	Excluded  bool // not listed in adverts; of either family
}

// Route is a route the master holds.
type Route struct {
	To     netip.Prefix
	Via    netip.Addr // invalid: none
	Dev    string     // "": the kernel picks it from Via
	Table  int        // 0: main
	Metric int        // 0: the kernel's default
}

// Rule is a policy routing rule the master holds.
type Rule struct {
	From, To netip.Prefix // invalid: any
	Table    int
	Priority int // 0: the kernel chooses
}

// TrackFile makes the priority follow a number in a file, as keepalived's
// track_file: the value times Weight (negated with Reverse) is added to
// the priority, and a result of -254 or less means FAULT; with Weight 0 a
// non-zero value (a zero one with Reverse) means FAULT.
type TrackFile struct {
	Path    string
	Weight  int
	Reverse bool
}

// TrackProcess makes an instance follow a process, as keepalived's
// track_process: it is up while from Quorum to QuorumMax processes match.
// Weight acts as a track script's; Reverse swaps up and down.
type TrackProcess struct {
	Name        string
	FullCommand bool // match the command line, not the process name
	Quorum      int
	QuorumMax   int // -1: no maximum
	Weight      int
	Reverse     bool
}

// AdvertVIPs returns the addresses adverts list: the VIPs and the extra
// ones that are not excluded, in configuration order.
func (in Instance) AdvertVIPs() []netip.Prefix {
	out := append([]netip.Prefix(nil), in.VIPs...)
	for _, e := range in.ExtraVIPs {
		if !e.Excluded {
			out = append(out, e.Prefix)
		}
	}
	return out
}

// allVIPs returns every address the master holds.
// vipsOn returns the VIPs (listed, other and excluded) in places on
// iface.
func (in Instance) vipsOn(iface string) []netip.Prefix {
	var out []netip.Prefix
	if iface == in.Interface {
		out = append(out, in.VIPs...)
	}
	for _, e := range in.ExtraVIPs {
		if e.Interface == iface {
			out = append(out, e.Prefix)
		}
	}
	return out
}

func (in Instance) allVIPs() []netip.Prefix {
	out := append([]netip.Prefix(nil), in.VIPs...)
	for _, e := range in.ExtraVIPs {
		out = append(out, e.Prefix)
	}
	return out
}
