package control

import (
	"encoding/json"
	"time"

	"github.com/ctha/ctha/ctsync"
)

// The JSON documents below are a contract: scripts and monitoring read them.
// Fields are only ever added, never renamed or removed.

// Status is the answer to the "status" operation and what
// `ctha status --json` prints.
type Status struct {
	Node      string           `json:"node"`
	Version   string           `json:"version"`
	Started   time.Time        `json:"started"`
	Config    string           `json:"config"`
	Groups    []GroupStatus    `json:"groups"`
	Instances []InstanceStatus `json:"instances"`
	// Realtime is the VRRP timing threads' scheduling.
	Realtime RealtimeStatus `json:"realtime"`
	// Sync is null when the configuration has no conntrack_sync block.
	Sync *SyncStatus `json:"sync"`
}

// RealtimeStatus is the scheduling of the VRRP timing threads.
type RealtimeStatus struct {
	// Priority is realtime_priority: the SCHED_FIFO priority asked for,
	// 0 for none.
	Priority int `json:"priority"`
	// State: "off" (none asked), "on", or "refused" (the kernel said no;
	// the threads run at normal priority).
	State string `json:"state"`
	// Error is the kernel's refusal, "" otherwise.
	Error string `json:"error"`
}

// GroupStatus is one sync group.
type GroupStatus struct {
	Name            string    `json:"name"`
	State           string    `json:"state"` // INIT, BACKUP, MASTER, FAULT
	Since           time.Time `json:"since"`
	Conntrack       bool      `json:"conntrack"`
	PreemptDeferred bool      `json:"preempt_deferred"`
	Demoted         string    `json:"demoted"` // why the group is demoted; "" when it is not
	Instances       []string  `json:"instances"`
	// SplitBrain: another node claims MASTER of this group too (in
	// primary-backup, the conntrack group while sync.split_brain).
	SplitBrain bool `json:"split_brain"`
}

// InstanceStatus is one VRRP instance.
type InstanceStatus struct {
	Name              string   `json:"name"`
	Interface         string   `json:"interface"`
	VRID              uint8    `json:"vrid"`
	Version           int      `json:"version"`
	State             string   `json:"state"`
	Priority          uint8    `json:"priority"`
	EffectivePriority uint8    `json:"effective_priority"`
	Master            string   `json:"master"` // address of the current master; "" when unknown
	VIPs              []string `json:"vips"`
	// LastTakeoverMS is how long the last takeover took from the
	// Master_Down timer to the first gratuitous ARP / NA; 0 before any.
	LastTakeoverMS float64 `json:"last_takeover_ms"`
}

// Topologies, as SyncStatus.Topology names them.
const (
	TopologyPrimaryBackup = "primary-backup"
	TopologyMultiprimary  = "multiprimary"
)

// SyncStatus is the conntrack replication engine.
type SyncStatus struct {
	Mode     string `json:"mode"`
	Cache    string `json:"cache"`
	Topology string `json:"topology"` // TopologyPrimaryBackup or TopologyMultiprimary
	// Protocol is what the sync speaks: "ctha", or "conntrackd" with a
	// conntrackd 1.4 peer ("" from a daemon older than protocols).
	Protocol string `json:"protocol"`
	Running  bool   `json:"running"`
	// PeerUp: every peer is up.
	PeerUp bool `json:"peer_up"`
	// PeerRole is the peer's role in primary-backup; in multiprimary,
	// where each group has its own master, it is null in JSON (see
	// GroupStatus.SplitBrain and Peers).
	PeerRole     string `json:"peer_role"`
	BulkComplete bool   `json:"bulk_complete"`
	// BulkReceived is how many entries of the peer's complete copy have
	// arrived: of the copy under way, or else of the last complete one.
	// BulkExpected is how many that copy holds, when the peer said so
	// (omitted for a peer of an older version).
	BulkReceived    int           `json:"bulk_received"`
	BulkExpected    int           `json:"bulk_expected,omitempty"`
	InternalEntries int           `json:"internal_entries"`
	ExternalEntries int           `json:"external_entries"`
	Links           []LinkStatus  `json:"links"`
	LastCommit      *CommitStatus `json:"last_commit"`
	SplitBrain      bool          `json:"split_brain"`
	KeyFingerprint  string        `json:"key_fingerprint"` // "" without authentication
	// Peers are the peers one by one (one in primary-backup).
	Peers []PeerStatus `json:"peers"`
	// SNATPortRange is this node's snat_port_range ("" for none), and
	// SNATOverlap whether a peer's overlaps it.
	SNATPortRange string `json:"snat_port_range"`
	SNATOverlap   bool   `json:"snat_overlap"`
	// Defer is multiprimary's defer; null when it is off.
	Defer *DeferStatus `json:"defer"`
}

// DeferStatus is defer's part of the sync status: the packets that create
// or advance a state held until every live peer has written it.
type DeferStatus struct {
	TimeoutMS float64 `json:"timeout_ms"` // defer
	Queue     uint16  `json:"queue"`      // defer_queue
	// Source is where a held packet's state comes from: "conntrack" (the
	// kernel's glue, NAT included) or "headers" (flows without NAT).
	Source string `json:"source"`
	// Rule is how ctha's nftables rules queue packets: "native" or "compat".
	Rule string `json:"rule"`
	// Held counts the packets held; ReleasedAcked those released when
	// every live peer had written their state; ReleasedTimeout those
	// released at the timeout; NotDeferred those passed at once.
	Held            uint64 `json:"held"`
	ReleasedAcked   uint64 `json:"released_acked"`
	ReleasedTimeout uint64 `json:"released_timeout"`
	NotDeferred     uint64 `json:"not_deferred"`
	Pending         int    `json:"pending"`
	// P99US is the 99th percentile of the time the latest packets were
	// held, in microseconds.
	P99US float64 `json:"p99_us"`
	// Reinstalls counts ctha's tables found missing or changed and put back.
	Reinstalls uint64 `json:"reinstalls"`
}

// MarshalJSON writes peer_role as null in multiprimary; the document is
// otherwise the struct's.
func (s SyncStatus) MarshalJSON() ([]byte, error) {
	type plain SyncStatus // without this method
	if s.Topology != TopologyMultiprimary {
		return json.Marshal(plain(s))
	}
	return json.Marshal(struct {
		plain
		PeerRole *string `json:"peer_role"` // shadows plain's
	}{plain: plain(s)})
}

// PeerStatus is one sync peer.
type PeerStatus struct {
	Node    string `json:"node"`    // its node_name; "" until heard
	Address string `json:"address"` // its address on the active link
	Up      bool   `json:"up"`
	// BulkComplete: this node holds a complete copy of the peer's flows.
	BulkComplete bool `json:"bulk_complete"`
	Entries      int  `json:"entries"` // the peer's flows this node holds
	// LastSeenMS is how long ago the peer was last heard, in
	// milliseconds; null when it never was.
	LastSeenMS *float64 `json:"last_seen_ms"`
	// BulkReceived and BulkExpected are as SyncStatus's, for this peer.
	BulkReceived int `json:"bulk_received"`
	BulkExpected int `json:"bulk_expected,omitempty"`
	// SNATPortRange is the SNAT port range the peer announces ("" for
	// none, or a peer of an older version).
	SNATPortRange string `json:"snat_port_range"`
}

// LinkStatus is one sync link, in the order of preference.
type LinkStatus struct {
	Name      string `json:"name"`
	Interface string `json:"interface"`
	Peer      string `json:"peer"`    // the peers' addresses (comma-separated), or the multicast group
	Carrier   bool   `json:"carrier"` // the interface is up with carrier
	Up        bool   `json:"up"`      // the peer is heard on it and hears this node
	Active    bool   `json:"active"`  // it carries the traffic (the first link that is up)
}

// CommitStatus describes the last commit of the external cache.
type CommitStatus struct {
	Entries int     `json:"entries"`
	Failed  int     `json:"failed"`
	TookMS  float64 `json:"took_ms"`
}

// Tuple is one direction of a flow in `ctha dump --json`: source and
// destination as address:port (for ICMP the port is the identifier, and
// the destination port the type and code).
type Tuple struct {
	Src string `json:"src"`
	Dst string `json:"dst"`
}

// TCPState is a TCP flow's tracking state in `ctha dump --json`.
type TCPState struct {
	State       uint8 `json:"state"`
	WScaleOrig  uint8 `json:"wscale_orig"`
	WScaleReply uint8 `json:"wscale_reply"`
}

// Stats is the answer to the "stats" operation and what `ctha stats --json`
// prints.
type Stats struct {
	VRRP []VRRPStats `json:"vrrp"`
	// Sync is null without conntrack_sync.
	Sync *ctsync.Stats `json:"sync"`
}

// VRRPStats are one VRRP instance's counters.
type VRRPStats struct {
	Instance        string            `json:"instance"`
	Group           string            `json:"group"` // "" outside a sync group
	AdvertsSent     uint64            `json:"adverts_sent"`
	AdvertsReceived uint64            `json:"adverts_received"`
	SendErrors      uint64            `json:"send_errors"`
	AddrMismatch    uint64            `json:"address_list_mismatch"`
	Transitions     uint64            `json:"transitions"`
	VIPErrors       uint64            `json:"vip_errors"`
	VIPsRestored    uint64            `json:"vips_restored"` // removed under the master by someone else, put back
	VIPsRemoved     uint64            `json:"vips_removed"`  // found on a node that is not master, removed
	Drops           map[string]uint64 `json:"drops"`         // by reason
}
