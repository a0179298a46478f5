package vrrp

import (
	"net/netip"
	"time"
)

// Config is what a Runner runs. It is the VRRP part of ctha's
// configuration, validated and with every default applied (cmd/ctha
// translates it from package cfg).
type Config struct {
	Instances    []Instance
	TrackScripts []TrackScript
	SyncGroups   []SyncGroup
	// RealtimePriority is the SCHED_FIFO priority (1..99) of the groups'
	// timing threads; 0 leaves them at normal priority.
	RealtimePriority int
}

// Family is an instance's address family.
type Family uint8

// Address families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	}
	return "unknown family"
}

// Instance is one VRRP instance: a virtual router on one interface.
type Instance struct {
	Name           string
	Interface      string
	VRID           uint8
	Priority       uint8 // 1..255; 255: the address owner
	Version        int   // 2 or 3
	Family         Family
	AdvertInterval time.Duration
	Preempt        bool
	PreemptDelay   time.Duration
	VIPs           []netip.Prefix
	UnicastPeers   []netip.Addr // empty: multicast
	VirtualMAC     bool
	TrackInterface []TrackInterface
	TrackScripts   []string // names of Config.TrackScripts entries
	GARP           GARP
	Auth           Auth // version 2 only
	// keepalived's everyday extras (config_extras.go).
	ExtraVIPs      []ExtraVIP
	Routes         []Route
	Rules          []Rule
	TrackFiles     []TrackFile
	TrackProcesses []TrackProcess
}

// TrackInterface makes an instance follow an interface's carrier.
type TrackInterface struct {
	Name string
	// Weight 0 puts the instance in FAULT while the link is down; a
	// negative weight is added to the priority while the link is down, a
	// positive one while it is up (as in keepalived).
	Weight int
}

// GARP says how gratuitous ARP / unsolicited NA are sent on becoming
// master.
type GARP struct {
	Repeat   int           // messages per burst
	Interval time.Duration // between the messages of a burst
	Delay    time.Duration // a second burst after this; 0: none
	Refresh  time.Duration // a periodic burst while master; 0: off
}

// TrackScript is a health check run periodically.
type TrackScript struct {
	Name     string
	Command  []string // argv; Command[0] is an absolute path
	Interval time.Duration
	Timeout  time.Duration
	Rise     int // successes before it counts as up
	Fall     int // failures before it counts as down
	// Weight 0 puts the tracking instances in FAULT while the script
	// fails; a negative weight is added to their priority while it fails,
	// a positive one while it succeeds.
	Weight int
}

// SyncGroup is a set of instances that fail over together.
type SyncGroup struct {
	Name      string
	Instances []string
	// Conntrack: the group's hooks drive conntrack replication. It is
	// fixed for a Runner's life (a reload that changes it needs a restart).
	Conntrack bool
}
