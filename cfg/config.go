package cfg

import (
	"log/slog"
	"net/netip"
	"time"

	"github.com/ctha/ctha/ctsync/auth"
)

// Config is a validated configuration with every default applied.
type Config struct {
	// Path is the file it was read from, as given to Load.
	Path string

	NodeName string
	// StateDir holds what must survive a restart (the sync protocol's
	// epochs).
	StateDir string
	// RealtimePriority is the SCHED_FIFO priority of the VRRP timing
	// threads; 0: normal priority.
	RealtimePriority int
	Control          Control
	Log              Log
	Instances        []Instance
	TrackScripts     []TrackScript
	SyncGroups       []SyncGroup
	// Sync is nil when the file has no conntrack_sync block.
	Sync *Sync
}

// Control is where the daemon can be reached.
type Control struct {
	Socket  string // absolute path of the control socket
	Metrics string // host:port of the Prometheus endpoint; "" disables it
}

// Log says how the daemon logs.
type Log struct {
	Level  slog.Level
	Format string // "text" or "json"
}

// Family is an address family.
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

// Instance is one VRRP instance (a virtual router on one interface).
type Instance struct {
	Name           string
	Interface      string
	VRID           uint8
	Priority       uint8 // 1..255; 255 = address owner
	Version        int   // 2 or 3
	Family         Family
	AdvertInterval time.Duration
	Preempt        bool
	PreemptDelay   time.Duration
	VIPs           []netip.Prefix
	UnicastPeers   []netip.Addr // empty: multicast
	VirtualMAC     bool
	TrackInterface []TrackInterface
	TrackScripts   []string // names of TrackScript entries
	GARP           GARP
	Notify         Notify
	Auth           Auth // version 2 only
	// keepalived's everyday extras (config_extras.go).
	ExtraVIPs      []ExtraVIP
	Routes         []Route
	Rules          []Rule
	TrackFiles     []TrackFile
	TrackProcesses []TrackProcess
}

// Authentication types (Auth.Type).
const (
	AuthNone = ""
	AuthPass = "pass" // a clear-text password in each advert
	AuthAH   = "ah"   // an IP Authentication Header (protocol 51), HMAC-MD5-96
)

// Auth is an instance's VRRPv2 authentication, as keepalived implements
// it.
type Auth struct {
	Type string // AuthNone, AuthPass or AuthAH
	// Password as written; only its first PasswordLen bytes are used.
	Password string
}

// PasswordLen is how much of a password VRRPv2 carries (keepalived cuts
// a longer one).
const PasswordLen = 8

// TrackInterface makes an instance follow an interface's carrier.
type TrackInterface struct {
	Name string
	// Weight 0 puts the instance in FAULT while the link is down. As in
	// keepalived, a negative weight is added to the priority while the link
	// is down, a positive one while it is up.
	Weight int
}

// GARP says how gratuitous ARP / unsolicited NA are sent on becoming master.
type GARP struct {
	Repeat   int           // messages per burst
	Interval time.Duration // between the messages of a burst
	Delay    time.Duration // second burst after this; 0 = none
	Refresh  time.Duration // periodic burst while master; 0 = off
}

// TrackScript is a health check run periodically.
type TrackScript struct {
	Name     string
	Command  []string // argv; Command[0] is an absolute path
	Interval time.Duration
	Timeout  time.Duration
	Rise     int // successes before it counts as up
	Fall     int // failures before it counts as down
	// Weight 0 puts the tracking instances in FAULT while the script fails.
	// As in keepalived, a negative weight is added to their priority while
	// it fails, a positive one while it succeeds.
	Weight int
}

// SyncGroup is a set of instances that fail over together.
type SyncGroup struct {
	Name      string
	Instances []string
	// Conntrack says this group's role drives conntrack replication.
	Conntrack bool
	Notify    Notify
}

// Notify lists the commands run, in order, after an instance or a sync
// group changes state, and when the daemon stops. Each command is an
// argv (SplitCommand's words of the entry as written); its first word is
// an absolute path.
type Notify struct {
	Master, Backup, Fault, Stop [][]string
	// Generic are the `notify` entries: each runs at every change with
	// keepalived's four arguments appended (type, name, state, priority).
	Generic [][]string
	Timeout time.Duration
}

// Sync modes.
const (
	ModeReliable = "reliable"
	ModeAlarm    = "alarm"
)

// Cache modes.
const (
	CacheDirect   = "direct"
	CacheExternal = "external"
)

// Sync protocols.
const (
	ProtocolCtha       = "ctha"
	ProtocolConntrackd = "conntrackd"
)

// Topologies.
const (
	// TopologyPrimaryBackup: one node forwards, the other stands by; the
	// sync group with conntrack = true drives the engine.
	TopologyPrimaryBackup = "primary-backup"
	// TopologyMultiprimary: every node forwards its own flows and
	// replicates them to its peer; no group drives the engine.
	TopologyMultiprimary = "multiprimary"
)

// Sync configures conntrack replication.
type Sync struct {
	Mode     string // ModeReliable or ModeAlarm
	Cache    string // CacheDirect or CacheExternal
	Topology string // TopologyPrimaryBackup or TopologyMultiprimary
	// Protocol is what goes on the wire: ProtocolCtha, or
	// ProtocolConntrackd to replicate with a running conntrackd 1.4
	// (primary-backup, one unicast link, no authentication).
	Protocol string
	Links    []Link // 1..4, in order of preference
	// SNATPorts is snat_port_range, the ports this node's SNAT rules
	// translate to ([0, 0]: none).
	SNATPorts [2]uint16
	// Defer is how long, at most, a packet that creates or advances a
	// state waits until every live peer has written it (multiprimary's
	// defer; 0: off). DeferQueue is the NFQUEUE number it uses.
	Defer      time.Duration
	DeferQueue uint16

	// Key authenticates the sync protocol; zero when InsecureNoAuth.
	Key            auth.Key
	KeyFile        string // the key file's path, resolved against the config file
	InsecureNoAuth bool

	TCPWindowTracking  bool
	Filter             Filter
	Expectations       bool
	CommitTimeout      time.Duration
	PurgeDelay         time.Duration
	StartupSyncTimeout time.Duration
	RefreshInterval    time.Duration // alarm mode
	CacheTimeout       time.Duration // alarm mode
}

// Link is one sync link.
type Link struct {
	Name      string
	Interface string
	Local     netip.Addr
	// Either Peers lists the peers' addresses (peer, or peers: every
	// link lists the same nodes in the same order) and Peer is the
	// first, or MulticastGroup is valid (two nodes).
	Peer           netip.Addr
	Peers          []netip.Addr
	MulticastGroup netip.Addr
	Port           uint16
}

// Filter selects what is replicated.
type Filter struct {
	Protocols       []string // empty: every protocol
	IgnoreAddresses []netip.Prefix
	TCPStates       []string // upper case; empty: every state
}

// Multiprimary reports whether the file's topology is multiprimary.
func (c *Config) Multiprimary() bool {
	return c.Sync != nil && c.Sync.Topology == TopologyMultiprimary
}

// ConntrackGroup returns the sync group whose role drives conntrack
// replication, if any.
func (c *Config) ConntrackGroup() (SyncGroup, bool) {
	for _, g := range c.SyncGroups {
		if g.Conntrack {
			return g, true
		}
	}
	return SyncGroup{}, false
}
