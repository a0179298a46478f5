package proto

// The Endpoint: its configuration, its state and the accessors the caller
// polls. The sending half is in sender.go, the receiving half in
// receiver.go, the wire format in msg.go.

import (
	"time"

	"github.com/ctha/ctha/ctsync/ct"
)

// Role is what a node says it is in its keep-alives.
type Role uint8

// Roles.
const (
	RoleUnknown Role = iota
	RoleBackup
	RoleMaster
)

func (r Role) String() string {
	switch r {
	case RoleBackup:
		return "BACKUP"
	case RoleMaster:
		return "MASTER"
	}
	return "UNKNOWN"
}

// Source gives the sender the latest state of an object when a message is
// (re)sent: it appends an update record for k, or a destroy record if k is
// gone (the wire package's format).
type Source interface {
	AppendRecord(b []byte, k ct.Key) []byte
}

// Config are an Endpoint's bounds and timers. The zero value of a field
// takes the default in DefaultConfig.
type Config struct {
	MaxPayload  int           // bytes of a payload (the datagram minus envelope and headers)
	Window      int           // reliable messages in flight before the sender waits for ACKs
	MaxPending  int           // objects owed before the sender gives up and resyncs by bulk
	Reorder     int           // messages the receiver buffers ahead of a gap
	AckDelay    time.Duration // longest an ACK waits to be coalesced
	AckEvery    int           // ACK at once after this many delivered messages
	NackRetry   time.Duration // a gap is asked for again after this
	RTO         time.Duration // the oldest unacknowledged message is resent after this
	Keepalive   time.Duration // interval of keep-alives
	PeerTimeout time.Duration // the peer is down after this long without a datagram
	// Coalesce holds new data back for up to this long after the last data
	// message while it would not fill a message, so a burst of events goes
	// out in full messages rather than one small datagram per wake-up.
	// Data after a quiet spell leaves at once. 0 never holds.
	Coalesce time.Duration
	// Epoch is this node's epoch (the envelope's): its bulk requests
	// carry it, and a peer's bulk copy that echoes another is stale (see
	// the package doc). 0: bulk copies are not checked.
	Epoch        uint32
	recordMargin int // room kept for one record's growth on resend

	// Unreliable (alarm mode): objects go in ALARM_DATA messages without
	// sequence numbers, never acknowledged nor resent; the caller
	// queues every object again periodically instead. Bulk markers are
	// not sent. Keep-alives, bulk requests and peer liveness work as usual.
	Unreliable bool
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		MaxPayload: 1400, Window: 8192, MaxPending: 1 << 21, Reorder: 8192,
		AckDelay: 5 * time.Millisecond, AckEvery: 64, NackRetry: 50 * time.Millisecond,
		RTO: 200 * time.Millisecond, Keepalive: 250 * time.Millisecond, PeerTimeout: time.Second,
		recordMargin: 160,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	set := func(v *int, dv int) {
		if *v <= 0 {
			*v = dv
		}
	}
	setD := func(v *time.Duration, dv time.Duration) {
		if *v <= 0 {
			*v = dv
		}
	}
	set(&c.MaxPayload, d.MaxPayload)
	set(&c.Window, d.Window)
	set(&c.MaxPending, d.MaxPending)
	set(&c.Reorder, d.Reorder)
	set(&c.AckEvery, d.AckEvery)
	set(&c.recordMargin, d.recordMargin)
	setD(&c.AckDelay, d.AckDelay)
	setD(&c.NackRetry, d.NackRetry)
	setD(&c.RTO, d.RTO)
	setD(&c.Keepalive, d.Keepalive)
	setD(&c.PeerTimeout, d.PeerTimeout)
	return c
}

// Stats are an Endpoint's counters.
type Stats struct {
	DataSent, Resent, AcksSent, NacksSent, KeepalivesSent uint64
	Delivered, Duplicates, OutOfWindow, Jumps, GaveUp     uint64
	Malformed                                             uint64
	// BulksStale counts the peer's bulk copies discarded because they
	// echo an earlier epoch of this node (begun for a run that is gone).
	BulksStale uint64
}

// Add adds o's counters to s (one peer's to a node's total).
func (s *Stats) Add(o Stats) {
	s.DataSent += o.DataSent
	s.Resent += o.Resent
	s.AcksSent += o.AcksSent
	s.NacksSent += o.NacksSent
	s.KeepalivesSent += o.KeepalivesSent
	s.Delivered += o.Delivered
	s.Duplicates += o.Duplicates
	s.OutOfWindow += o.OutOfWindow
	s.Jumps += o.Jumps
	s.GaveUp += o.GaveUp
	s.Malformed += o.Malformed
	s.BulksStale += o.BulksStale
}

// Endpoint is one side of a sync association.
type Endpoint struct {
	cfg Config
	src Source

	// Sender.
	role       Role
	nextSeq    uint64
	unacked    []sent // oldest first
	pending    []item // not yet sent, in order
	queued     map[ct.Key]struct{}
	lastKeep   time.Time
	lastData   time.Time // when the last new data message left
	urgent     bool      // the next Output does not hold data back (Urgent)
	recBytes   uint64    // bytes and count of the records sent, for
	recs       uint64    // the size estimate of holding
	bulkReq    bool      // ask the peer for a bulk in the next payload
	jumpTo     uint64    // announce a JUMP in the next payload; 0: none
	bulkNeeded bool      // the caller must start a bulk (peer asked, or we gave up)
	nextBulkID uint32
	bulk       bulkRun
	// The retransmission timer (RFC 6298): it restarts when an ACK
	// acknowledges new messages, and its length adapts to the measured
	// round-trip time, which includes the peer's queue.
	progressAt   time.Time
	srtt, rttvar time.Duration // 0: no sample yet

	// Receiver.
	peerEpoch   uint32
	haveBase    bool
	expected    uint64 // next sequence number to deliver
	peerNext    uint64 // the peer's next sequence number, as last heard
	buffered    map[uint64]msg
	unackedIn   int // delivered since the last ACK sent
	ackDue      time.Time
	gapAskedAt  time.Time
	lastHeard   time.Time
	peerRole    Role
	peerRestart bool
	lastStale   uint32 // the id of the last stale bulk counted

	stats Stats
}

// New returns an Endpoint whose resends read object states from src.
func New(cfg Config, src Source) *Endpoint {
	return &Endpoint{
		cfg: cfg.withDefaults(), src: src, nextSeq: 1,
		queued: map[ct.Key]struct{}{}, buffered: map[uint64]msg{},
	}
}

// SetRole sets the role the keep-alives announce.
func (e *Endpoint) SetRole(r Role) { e.role = r }

// Urgent makes the next Output send what is pending at once rather than
// hold it back to fill a datagram (Config.Coalesce): a packet waits for it
// (multiprimary's defer).
func (e *Endpoint) Urgent() { e.urgent = true }

// RequestBulk asks the peer for a complete copy.
func (e *Endpoint) RequestBulk() { e.bulkReq = true }

// BulkNeeded reports (once) that the caller must call StartBulk: the peer
// asked for a copy or restarted, or the sender gave up on owed changes.
func (e *Endpoint) BulkNeeded() bool {
	n := e.bulkNeeded
	e.bulkNeeded = false
	return n
}

// PeerRestarted reports (once) that the peer came back with a new epoch.
func (e *Endpoint) PeerRestarted() bool {
	r := e.peerRestart
	e.peerRestart = false
	return r
}

// PeerUp reports whether a datagram arrived within PeerTimeout.
func (e *Endpoint) PeerUp(now time.Time) bool {
	return !e.lastHeard.IsZero() && now.Sub(e.lastHeard) < e.cfg.PeerTimeout
}

// PeerRole is the role of the peer's last keep-alive.
func (e *Endpoint) PeerRole() Role { return e.peerRole }

// Idle reports whether nothing is owed or unacknowledged.
func (e *Endpoint) Idle() bool { return len(e.pending) == 0 && len(e.unacked) == 0 }

// Stats returns the counters.
func (e *Endpoint) Stats() Stats { return e.stats }

// NextTimeout is when Output must run again if nothing else happens.
func (e *Endpoint) NextTimeout(now time.Time) time.Time {
	t := e.lastKeep.Add(e.cfg.Keepalive)
	early := func(c time.Time) {
		if !c.IsZero() && c.Before(t) {
			t = c
		}
	}
	early(e.ackDue)
	if e.gap() {
		if e.gapAskedAt.IsZero() {
			return now
		}
		early(e.gapAskedAt.Add(e.cfg.NackRetry))
	}
	if len(e.unacked) > 0 {
		early(e.rtoDue())
	}
	if e.holding(now) { // not urgent: NextTimeout follows Output
		early(e.lastData.Add(e.cfg.Coalesce))
	}
	if t.Before(now) {
		return now
	}
	return t
}
