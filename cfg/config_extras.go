package cfg

import "net/netip"

// ExtraVIP is a virtual IP that lives elsewhere than on the instance's
// VRRP interface ("ADDR/LEN dev IFACE" in virtual_ips), or that the
// adverts leave out (excluded_virtual_ips). It follows the role like the
// other virtual IPs.
type ExtraVIP struct {
	Prefix    netip.Prefix
	Interface string // where it is added
	// Excluded: from excluded_virtual_ips, not listed in adverts (and of
	// any family).
	Excluded bool
}

// Route is a route the master holds (virtual_routes).
type Route struct {
	To     netip.Prefix
	Via    netip.Addr // the gateway; invalid: none (a link route on Dev)
	Dev    string     // "": the kernel picks the interface from Via
	Table  int        // 0: main
	Metric int        // the route's priority; 0: the kernel's default
}

// Rule is a policy routing rule the master holds (virtual_rules).
type Rule struct {
	From, To netip.Prefix // invalid: any
	Table    int
	Priority int // 0: the kernel chooses one
}

// TrackFile makes an instance's priority follow a number in a file
// (keepalived's track_file): the value times Weight (negated with
// Reverse) is added to the priority; with Weight 0 a non-zero value (a
// zero one with Reverse) puts the instance in FAULT.
type TrackFile struct {
	Path    string
	Weight  int
	Reverse bool
}

// TrackProcess makes an instance follow a process (keepalived's
// track_process): it is up while from Quorum to QuorumMax processes
// match Name. Weight and Reverse act as a track_script's.
type TrackProcess struct {
	Name string
	// FullCommand: Name is matched against the command line (its words
	// joined by spaces), not the process name (comm).
	FullCommand bool
	Quorum      int
	QuorumMax   int // -1: no maximum
	Weight      int
	Reverse     bool
}
