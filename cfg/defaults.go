package cfg

import (
	"net/netip"
	"time"
)

// Every default of the configuration, in one place. The README's
// configuration reference lists the same values.
const (
	DefaultConfigPath = "/etc/ctha/ctha.hcl"
	DefaultSocket     = "/run/ctha/ctha.sock"
	DefaultStateDir   = "/var/lib/ctha"
	DefaultMetrics    = "127.0.0.1:9477"
	DefaultLogLevel   = "info"
	DefaultLogFormat  = "text"

	DefaultPriority       = 100
	DefaultVersion        = 3
	DefaultAdvertInterval = time.Second
	DefaultPreempt        = true
	DefaultPreemptDelay   = time.Duration(0)

	DefaultGARPRepeat   = 5
	DefaultGARPInterval = 100 * time.Millisecond
	DefaultGARPDelay    = 5 * time.Second
	DefaultGARPRefresh  = time.Duration(0)

	DefaultScriptInterval = 2 * time.Second
	DefaultScriptTimeout  = time.Second // capped at the interval
	DefaultScriptRise     = 2
	DefaultScriptFall     = 3

	DefaultNotifyTimeout = 10 * time.Second

	// keepalived's defaults for track_file and track_process.
	DefaultTrackFileWeight = 1
	DefaultProcessQuorum   = 1

	// MaxHookTimeout bounds the timeout of a track script and of a
	// notify command: past it, a hung command is a stuck tracker or a
	// group whose later notifications wait behind it. Neither needs more.
	MaxHookTimeout = time.Hour

	DefaultSyncMode           = ModeReliable
	DefaultCacheMode          = CacheDirect
	DefaultTopology           = TopologyPrimaryBackup
	DefaultSyncProtocol       = ProtocolCtha
	DefaultSyncPort           = 3780
	DefaultCommitTimeout      = 5 * time.Second
	DefaultPurgeDelay         = 60 * time.Second
	DefaultStartupSyncTimeout = 30 * time.Second
	DefaultRefreshInterval    = 15 * time.Second  // alarm mode
	DefaultCacheTimeout       = 180 * time.Second // alarm mode
	DefaultExpectations       = true
	// DefaultDeferQueue is defer_queue's default NFQUEUE number; MaxDefer
	// bounds defer (a SYN's first retransmission comes after 1 s).
	DefaultDeferQueue = 3170
	MaxDefer          = time.Second

	// MaxPeers is the most addresses a link's peers may list (8 nodes).
	MaxPeers = 7
)

// DefaultIgnoreAddresses are the prefixes whose flows are not replicated when
// the filter does not say otherwise. The node's own addresses are ignored
// in any case.
var DefaultIgnoreAddresses = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("::1/128"),
}
