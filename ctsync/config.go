package ctsync

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/ctha/ctha/ctsync/auth"
)

// Config is what an Engine replicates, and how: the conntrack_sync part
// of ctha's configuration, validated and with its defaults applied
// (cmd/ctha translates it from package cfg).
type Config struct {
	Mode     Mode
	Cache    Cache
	Topology Topology
	// Protocol is what goes on the wire: ctha's own, or conntrackd 1.4's
	// FTFW to replicate with a running conntrackd (ctdpeer.go).
	Protocol Protocol
	// NodeName is this node's name (node_name), which its peers show.
	NodeName string
	// SNATPorts is the range of ports this node's SNAT rules translate
	// to (snat_port_range; multiprimary, where nodes share an address):
	// announced to the peers, whose overlap is reported. Zero: none.
	SNATPorts PortRange
	Links     []Link // 1..4, in order of preference
	// Defer (multiprimary) is the longest a packet that creates or
	// advances a state waits until every live peer has written it (0:
	// off); DeferQueue, the NFQUEUE it waits in (defer.go).
	Defer      time.Duration
	DeferQueue uint16

	// Key authenticates the protocol; the zero key is the
	// insecure_no_auth mode's.
	Key auth.Key

	TCPWindowTracking bool // written states keep the kernel's window checks
	Filter            Filter
	Expectations      bool // replicate the expectation table too
	// StartupSyncTimeout bounds how long a starting node waits for the
	// peer's copy before its first dump (0: DefaultStartupSyncTimeout).
	StartupSyncTimeout time.Duration
	RefreshInterval    time.Duration // Alarm mode: how often each flow is sent again
	CacheTimeout       time.Duration // Alarm mode: a peer flow not refreshed for this long expires
}

// DefaultStartupSyncTimeout is Config.StartupSyncTimeout's default.
const DefaultStartupSyncTimeout = 30 * time.Second

// Mode is the replication protocol.
type Mode uint8

// Modes.
const (
	// Reliable: sequenced, acknowledged, retransmitted (the default).
	Reliable Mode = iota
	// Alarm: every flow is resent periodically, nothing is acknowledged.
	Alarm
)

func (m Mode) String() string {
	switch m {
	case Reliable:
		return "reliable"
	case Alarm:
		return "alarm"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// Cache is where the peer's states are kept.
type Cache uint8

// Caches.
const (
	// Direct: the peer's states are written into the kernel as they
	// arrive (the default).
	Direct Cache = iota
	// External: they are kept in userspace and committed into the kernel
	// on becoming master.
	External
)

func (c Cache) String() string {
	switch c {
	case Direct:
		return "direct"
	case External:
		return "external"
	}
	return fmt.Sprintf("Cache(%d)", uint8(c))
}

// Topology is how the nodes share the traffic.
type Topology uint8

// Topologies.
const (
	// PrimaryBackup: one node forwards, the others stand by; the role of
	// the sync group with conntrack = true drives the engine (SetRole).
	PrimaryBackup Topology = iota
	// Multiprimary: every node forwards its own flows and replicates them
	// to every peer; any node's update of a flow counts, and no role
	// drives the engine. Direct cache only.
	Multiprimary
)

func (t Topology) String() string {
	switch t {
	case PrimaryBackup:
		return "primary-backup"
	case Multiprimary:
		return "multiprimary"
	}
	return fmt.Sprintf("Topology(%d)", uint8(t))
}

// Protocol is the wire protocol of the sync.
type Protocol uint8

// Protocols.
const (
	// ProtocolCtha: ctha's own, authenticated (the default).
	ProtocolCtha Protocol = iota
	// ProtocolConntrackd: conntrackd 1.4's FTFW over UDP, to replicate
	// with a running conntrackd: primary-backup, one unicast link, one
	// peer, reliable mode, no authentication (package ctdwire).
	ProtocolConntrackd
)

func (p Protocol) String() string {
	switch p {
	case ProtocolCtha:
		return "ctha"
	case ProtocolConntrackd:
		return "conntrackd"
	}
	return fmt.Sprintf("Protocol(%d)", uint8(p))
}

// PortRange is a range of ports, both ends included; the zero value is
// no range.
type PortRange struct{ Lo, Hi uint16 }

// IsZero reports whether r is no range.
func (r PortRange) IsZero() bool { return r == PortRange{} }

// Contains reports whether port p is in r.
func (r PortRange) Contains(p uint16) bool { return p >= r.Lo && p <= r.Hi }

// Overlaps reports whether r and o share a port (neither is zero).
func (r PortRange) Overlaps(o PortRange) bool {
	return !r.IsZero() && !o.IsZero() && r.Lo <= o.Hi && o.Lo <= r.Hi
}

func (r PortRange) String() string {
	if r.IsZero() {
		return ""
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// Link is one sync link.
type Link struct {
	Name      string
	Interface string
	Local     netip.Addr
	// Either Peers lists the peers' addresses on this link (unicast;
	// every link lists the same nodes in the same order), or
	// MulticastGroup is valid (two nodes only).
	Peers          []netip.Addr
	MulticastGroup netip.Addr
	Port           uint16
}

// Filter selects what is replicated.
type Filter struct {
	Protocols       []string // lower-case names (tcp, udp, ...); empty: every protocol
	IgnoreAddresses []netip.Prefix
	TCPStates       []string // upper-case names (ESTABLISHED, ...); empty: every state
}

// check reports what New cannot run with.
func (c *Config) check() error {
	if len(c.Links) == 0 {
		return fmt.Errorf("conntrack sync: no link")
	}
	if c.Mode > Alarm {
		return fmt.Errorf("conntrack sync: unknown mode %v", c.Mode)
	}
	if c.Cache > External {
		return fmt.Errorf("conntrack sync: unknown cache %v", c.Cache)
	}
	if c.Topology > Multiprimary {
		return fmt.Errorf("conntrack sync: unknown topology %v", c.Topology)
	}
	if c.Topology == Multiprimary && c.Cache != Direct {
		return fmt.Errorf("conntrack sync: multiprimary needs the direct cache")
	}
	if c.Protocol > ProtocolConntrackd {
		return fmt.Errorf("conntrack sync: unknown protocol %v", c.Protocol)
	}
	if c.Protocol == ProtocolConntrackd && (c.Topology != PrimaryBackup || c.Mode != Reliable || len(c.Links) != 1 ||
		len(c.Links[0].Peers) != 1 || c.Links[0].MulticastGroup.IsValid()) {
		return fmt.Errorf("conntrack sync: protocol conntrackd needs primary-backup, the reliable mode and one unicast link to one peer")
	}
	if c.Defer > 0 && (c.Topology != Multiprimary || c.Mode != Reliable) {
		return fmt.Errorf("conntrack sync: defer needs the multiprimary topology and the reliable mode")
	}
	n := len(c.Links[0].Peers)
	for _, l := range c.Links {
		switch {
		case l.MulticastGroup.IsValid() && len(l.Peers) > 0:
			return fmt.Errorf("conntrack sync: link %s: peers and a multicast group", l.Name)
		case l.MulticastGroup.IsValid():
			if n > 1 {
				return fmt.Errorf("conntrack sync: link %s: a multicast link serves two nodes only", l.Name)
			}
		case len(l.Peers) == 0:
			return fmt.Errorf("conntrack sync: link %s: no peer", l.Name)
		case len(l.Peers) != max(n, 1):
			return fmt.Errorf("conntrack sync: link %s lists %d peers, link %s %d: every link lists the same nodes",
				l.Name, len(l.Peers), c.Links[0].Name, n)
		}
	}
	if n > MaxPeers {
		return fmt.Errorf("conntrack sync: %d peers, at most %d", n, MaxPeers)
	}
	if n > 1 && c.Topology != Multiprimary {
		return fmt.Errorf("conntrack sync: %d peers: primary-backup has one", n)
	}
	if n > 1 && c.Mode == Alarm {
		return fmt.Errorf("conntrack sync: %d peers: alarm mode replicates to one", n)
	}
	for _, p := range c.Filter.Protocols {
		if _, ok := protocolNumbers[p]; !ok {
			return fmt.Errorf("conntrack sync: filter: unknown protocol %q", p)
		}
	}
	for _, s := range c.Filter.TCPStates {
		if _, ok := tcpStateNumbers[s]; !ok {
			return fmt.Errorf("conntrack sync: filter: unknown TCP state %q", s)
		}
	}
	return nil
}
