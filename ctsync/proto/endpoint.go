package proto

import (
	"encoding/binary"
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

// Delivery is a reliable message handed to the caller in order.
type Delivery struct {
	Kind    DeliveryKind
	Records []byte // DeliverRecords: one or more records
	BulkID  uint32 // DeliverBulkStart, DeliverBulkEnd
	// Entries (DeliverBulkStart) is how many objects the copy holds; 0:
	// unknown.
	Entries uint32
	// Unchecked (DeliverBulkStart, DeliverBulkEnd): the marker echoes no
	// epoch (a peer of an older version), so whether the copy is current
	// could not be checked.
	Unchecked bool
}

// DeliveryKind says what a Delivery is.
type DeliveryKind uint8

// Delivery kinds.
const (
	DeliverRecords DeliveryKind = iota + 1
	DeliverBulkStart
	DeliverBulkEnd
)

// Stats are an Endpoint's counters.
type Stats struct {
	DataSent, Resent, AcksSent, NacksSent, KeepalivesSent uint64
	Delivered, Duplicates, OutOfWindow, Jumps, GaveUp     uint64
	Malformed                                             uint64
	// BulksStale counts the peer's bulk copies discarded because they
	// echo an earlier epoch of this node (begun for a run that is gone).
	BulksStale uint64
}

// sent is a reliable message awaiting its ACK.
type sent struct {
	seq  uint64
	typ  byte
	keys []ct.Key // DATA
	mark marker   // BULK_*
	at   time.Time
	// resent: sent more than once, so its ACK is no RTT sample (Karn).
	resent bool
}

// marker is what a bulk marker says.
type marker struct {
	bulkID  uint32
	echo    uint32 // the peer epoch the bulk is for
	entries uint32 // BULK_START: objects between it and its end
}

// item is what the sender owes: an object's state or a bulk marker.
type item struct {
	key  ct.Key
	typ  byte // 0 (an object), typeBulkStart or typeBulkEnd
	mark marker
}

// bulkRun is the sender's latest bulk copy.
type bulkRun struct {
	marker
	running bool // queued or in flight: its end is not acknowledged yet
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

// Queue says object k changed: its latest state will be sent reliably.
// Queuing a key already owed costs nothing.
func (e *Endpoint) Queue(k ct.Key) {
	if _, ok := e.queued[k]; ok {
		return
	}
	if len(e.pending) >= e.cfg.MaxPending {
		e.giveUp()
		return
	}
	e.queued[k] = struct{}{}
	e.pending = append(e.pending, item{key: k})
}

// giveUp drops everything owed and resyncs by bulk: the peer was away
// longer than the sender can remember changes. A bulk under way is
// abandoned with the rest: a new one follows.
func (e *Endpoint) giveUp() {
	e.stats.GaveUp++
	e.dropOwed()
	e.jumpTo = e.nextSeq
	e.bulkNeeded = true
}

// dropOwed forgets everything owed and unacknowledged, bulks included.
func (e *Endpoint) dropOwed() {
	e.pending, e.unacked = e.pending[:0], e.unacked[:0]
	clear(e.queued)
	e.bulk.running = false
}

// StartBulk queues a complete copy: a BULK_START marker, every key of
// keys, a BULK_END marker, the markers echoing the peer's current epoch.
// It returns the bulk's id. A copy for that epoch still under way (its end
// not acknowledged) already covers everything: asking again (the peer's
// repeated request, a role change, an operator) joins it and returns its
// id.
func (e *Endpoint) StartBulk(keys func(yield func(ct.Key) bool)) uint32 {
	e.bulkNeeded = false
	if e.bulk.running && e.bulk.echo == e.peerEpoch {
		return e.bulk.bulkID
	}
	e.nextBulkID++
	m := marker{bulkID: e.nextBulkID, echo: e.peerEpoch}
	// The start marker goes before what is already owed, so that every
	// object the bulk covers is sent inside it: the receiver drops, at the
	// end, what it was not sent since the start.
	e.pending = append([]item{{typ: typeBulkStart, mark: m}}, e.pending...)
	keys(func(k ct.Key) bool {
		if _, ok := e.queued[k]; !ok {
			e.queued[k] = struct{}{}
			e.pending = append(e.pending, item{key: k})
		}
		return true
	})
	// Everything after the start is inside the copy (no other bulk's
	// markers: a new bulk starts only when none runs, or after dropOwed).
	e.pending[0].mark.entries = uint32(min(len(e.pending)-1, 1<<32-1))
	e.pending = append(e.pending, item{typ: typeBulkEnd, mark: m})
	e.bulk = bulkRun{marker: e.pending[0].mark, running: true}
	return m.bulkID
}

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

// Input processes a payload authenticated as coming from the peer's epoch
// and returns, in order, what can be delivered. An error means the payload
// was malformed (counted); what was decoded before the error stands.
func (e *Endpoint) Input(epoch uint32, payload []byte, now time.Time, out []Delivery) ([]Delivery, error) {
	if epoch < e.peerEpoch {
		return out, nil // the envelope's replay guard rejects these already
	}
	if epoch > e.peerEpoch {
		// A peer met for the first time, or restarted: what this side
		// holds of its table may be stale or incomplete; ask for a copy.
		if e.peerEpoch != 0 {
			e.peerRestart = true
		}
		e.bulkReq = true
		e.peerEpoch, e.haveBase, e.peerNext = epoch, false, 0
		clear(e.buffered)
		e.gapAskedAt = time.Time{}
		// What was owed to an earlier run of the peer, bulks included,
		// is of no use to this one: it gets one complete copy instead.
		if len(e.unacked) > 0 {
			e.jumpTo = e.nextSeq // a receiver based on an old keep-alive skips it
		}
		e.dropOwed()
		e.bulkNeeded = true
	}
	e.lastHeard = now
	err := parsePayload(payload, func(m msg) error {
		switch {
		case m.reliable:
			out = e.receive(m, now, out)
		case m.typ == typeAlarmData:
			e.stats.Delivered++
			out = append(out, Delivery{Kind: DeliverRecords, Records: m.body})
		case m.typ == typeAck:
			e.acked(m.seq, now)
		case m.typ == typeNack:
			e.nacked(m.seq, m.to)
		case m.typ == typeKeepalive:
			e.peerRole = m.role
			if !e.haveBase {
				out = append(out, e.setBase(m.to)...)
			}
			if m.seq > e.peerNext {
				e.peerNext = m.seq
			}
		case m.typ == typeBulkReq:
			e.bulkNeeded = true
		case m.typ == typeJump:
			out = e.jump(m.seq, out)
		}
		return nil
	})
	if err != nil {
		e.stats.Malformed++
	}
	return out, err
}

// receive takes a reliable message: deliver it if it is next, buffer it if
// it is early, drop it if it is old.
func (e *Endpoint) receive(m msg, now time.Time, out []Delivery) []Delivery {
	if !e.haveBase {
		// Where the peer's stream starts is known from its keep-alive;
		// until then, keep what arrives.
		if len(e.buffered) < e.cfg.Reorder {
			m.body = append([]byte(nil), m.body...)
			e.buffered[m.seq] = m
		}
		return out
	}
	switch {
	case m.seq < e.expected:
		e.stats.Duplicates++
		e.ackDue = now // tell the sender again: its ACK may have been lost
		return out
	case m.seq > e.expected:
		if m.seq >= e.peerNext {
			e.peerNext = m.seq + 1
		}
		if m.seq-e.expected > uint64(e.cfg.Reorder) {
			e.stats.OutOfWindow++
			return out
		}
		if _, dup := e.buffered[m.seq]; dup {
			e.stats.Duplicates++
			return out
		}
		m.body = append([]byte(nil), m.body...) // the payload buffer is reused
		e.buffered[m.seq] = m
		return out
	}
	out = e.deliver(m, out)
	out = e.deliverBuffered(out)
	if !e.gap() {
		e.gapAskedAt = time.Time{}
	}
	if e.unackedIn >= e.cfg.AckEvery {
		e.ackDue = now
	} else if e.ackDue.IsZero() {
		e.ackDue = now.Add(e.cfg.AckDelay)
	}
	return out
}

// deliverBuffered delivers the buffered messages that are next in order.
func (e *Endpoint) deliverBuffered(out []Delivery) []Delivery {
	for {
		next, ok := e.buffered[e.expected]
		if !ok {
			return out
		}
		delete(e.buffered, e.expected)
		out = e.deliver(next, out)
	}
}

func (e *Endpoint) deliver(m msg, out []Delivery) []Delivery {
	e.expected = m.seq + 1
	e.unackedIn++
	e.stats.Delivered++
	switch {
	case m.typ == typeData:
		return append(out, Delivery{Kind: DeliverRecords, Records: m.body})
	case e.stale(m):
		return out
	case m.typ == typeBulkStart:
		return append(out, Delivery{Kind: DeliverBulkStart, BulkID: m.bulkID, Entries: m.entries, Unchecked: !m.echoed})
	default:
		return append(out, Delivery{Kind: DeliverBulkEnd, BulkID: m.bulkID, Unchecked: !m.echoed})
	}
}

// stale reports whether a bulk marker belongs to a copy begun for an
// earlier run of this node, and counts each such copy once. Its records
// are delivered all the same: each carries its object's latest state.
func (e *Endpoint) stale(m msg) bool {
	if !m.echoed || e.cfg.Epoch == 0 || m.epoch == e.cfg.Epoch {
		return false
	}
	if m.bulkID != e.lastStale {
		e.lastStale = m.bulkID
		e.stats.BulksStale++
	}
	return true
}

// jump: the sender will never resend what is before seq; skip to it. The
// sender follows with a bulk, which restores what was skipped.
func (e *Endpoint) jump(seq uint64, out []Delivery) []Delivery {
	if !e.haveBase || seq <= e.expected {
		return out
	}
	e.stats.Jumps++
	for s := range e.buffered {
		if s < seq {
			delete(e.buffered, s)
		}
	}
	e.expected = seq
	out = e.deliverBuffered(out)
	if !e.gap() {
		e.gapAskedAt = time.Time{}
	}
	return out
}

// setBase starts receiving a peer epoch's stream at first, the oldest
// message the peer can still send, and delivers what was kept meanwhile.
func (e *Endpoint) setBase(first uint64) []Delivery {
	e.haveBase, e.expected = true, first
	for s := range e.buffered {
		if s < first {
			delete(e.buffered, s)
		}
	}
	var out []Delivery
	out = e.deliverBuffered(out)
	return out
}

// gap reports whether the peer has sent reliable messages this side has
// not delivered: some arrived early, or its keep-alive says so (a lost
// tail).
func (e *Endpoint) gap() bool {
	return e.haveBase && (len(e.buffered) > 0 || e.peerNext > e.expected)
}

// acked drops the messages the peer has, takes a round-trip sample from
// the newest of them if it was sent once, and restarts the retransmission
// timer.
func (e *Endpoint) acked(upTo uint64, now time.Time) {
	i := 0
	for i < len(e.unacked) && e.unacked[i].seq <= upTo {
		i++
	}
	if i == 0 {
		return
	}
	if s := &e.unacked[i-1]; !s.resent && !s.at.IsZero() {
		e.sampleRTT(now.Sub(s.at))
	}
	for _, s := range e.unacked[:i] {
		if s.typ == typeBulkEnd && s.mark.bulkID == e.bulk.bulkID {
			e.bulk.running = false // the peer has the whole copy
		}
	}
	e.progressAt = now
	e.unacked = e.unacked[i:]
}

// sampleRTT updates the smoothed round-trip time and its variation
// (RFC 6298, 2.2 and 2.3).
func (e *Endpoint) sampleRTT(r time.Duration) {
	if r < 0 {
		return
	}
	if e.srtt == 0 {
		e.srtt, e.rttvar = r, r/2
		return
	}
	d := e.srtt - r
	if d < 0 {
		d = -d
	}
	e.rttvar = (3*e.rttvar + d) / 4
	e.srtt = (7*e.srtt + r) / 8
}

// maxRTOFactor bounds the adapted RTO to this many times Config.RTO.
const maxRTOFactor = 5

// rto is the retransmission timeout: SRTT + 4 RTTVAR, at least
// Config.RTO (a clean link's RTT is far below it) and at most
// maxRTOFactor times that.
func (e *Endpoint) rto() time.Duration {
	return min(max(e.cfg.RTO, e.srtt+4*e.rttvar), maxRTOFactor*e.cfg.RTO)
}

// rtoDue is when the oldest unacknowledged message is resent: an RTO
// after it was sent or after the last ACK that acknowledged something,
// whichever is later. A long queue at the peer, whose ACKs keep coming,
// is not a loss.
func (e *Endpoint) rtoDue() time.Time {
	start := e.unacked[0].at
	if e.progressAt.After(start) {
		start = e.progressAt
	}
	return start.Add(e.rto())
}

// nacked resends the range the peer asks for, with the latest states.
func (e *Endpoint) nacked(from, to uint64) {
	oldest := e.nextSeq
	if len(e.unacked) > 0 {
		oldest = e.unacked[0].seq
	}
	if from < oldest {
		// The peer asks for what the sender gave up (it never asks for
		// what it acknowledged): skip it, and restore it by bulk.
		e.jumpTo, e.bulkNeeded = oldest, true
	}
	for i := range e.unacked {
		s := &e.unacked[i]
		if s.seq >= from && s.seq <= to {
			s.at = time.Time{} // resend in the next Output
		}
	}
}

// Output builds the payloads to send now: resends, new data, ACK, NACK,
// keep-alive. Call it after Input, Queue or StartBulk, and on a timer
// (see NextTimeout).
func (e *Endpoint) Output(now time.Time, out [][]byte) [][]byte {
	var p payloadBuilder
	p.max = e.cfg.MaxPayload

	// Control first, so it is never starved by data.
	if e.ackDue != (time.Time{}) && !now.Before(e.ackDue) && e.haveBase && e.expected > 1 {
		p.add(&out, appendMsg(nil, typeAck, u64(e.expected-1)))
		e.unackedIn, e.ackDue = 0, time.Time{}
		e.stats.AcksSent++
	}
	if e.gap() && (e.gapAskedAt.IsZero() || !now.Before(e.gapAskedAt.Add(e.cfg.NackRetry))) {
		// Ask for every hole between the next expected message and the
		// peer's last known one, at most maxNacks ranges at a time.
		// Nothing beyond the reorder window can be taken anyway, whatever
		// the peer announces.
		const maxNacks = 64
		end := min(e.peerNext, e.expected+uint64(e.cfg.Reorder)+1)
		from, holes := e.expected, 0
		for from < end && holes < maxNacks {
			if e.hasBuffered(from) {
				from++
				continue
			}
			to := from
			for to+1 < end && !e.hasBuffered(to+1) {
				to++
			}
			p.add(&out, appendMsg(nil, typeNack, append(u64(from), u64(to)...)))
			holes++
			from = to + 1
		}
		e.gapAskedAt = now
		e.stats.NacksSent++
	}
	if e.bulkReq {
		p.add(&out, appendMsg(nil, typeBulkReq, u32(e.cfg.Epoch)))
		e.bulkReq = false
	}
	if e.jumpTo != 0 {
		p.add(&out, appendMsg(nil, typeJump, u64(e.jumpTo)))
		e.jumpTo = 0
	}

	// Resends: NACKed messages, and the oldest after RTO.
	for i := range e.unacked {
		s := &e.unacked[i]
		if s.at.IsZero() || (i == 0 && !now.Before(e.rtoDue())) {
			p.add(&out, e.encode(s))
			s.at, s.resent = now, true
			e.stats.Resent++
		}
	}

	if e.cfg.Unreliable {
		e.outputUnreliable(&p, &out)
	}
	// New data, within the window, each message filled up to the payload
	// size (less room for its records to grow if they are resent).
	for len(e.pending) > 0 && len(e.unacked) < e.cfg.Window && !e.holding(now) {
		s := sent{seq: e.nextSeq, at: now}
		var m []byte
		if it := e.pending[0]; it.typ != 0 {
			s.typ, s.mark = it.typ, it.mark
			e.pending = e.pending[1:]
			m = e.encode(&s)
		} else {
			s.typ = typeData
			b, start := appendHeader(nil, typeData)
			b = append(b, u64(s.seq)...)
			head := len(b)
			for len(e.pending) > 0 && e.pending[0].typ == 0 && len(b) < e.cfg.MaxPayload-e.cfg.recordMargin {
				k := e.pending[0].key
				delete(e.queued, k)
				s.keys = append(s.keys, k)
				b = e.src.AppendRecord(b, k)
				e.pending = e.pending[1:]
			}
			m = finishMsg(b, start)
			e.lastData = now
			e.recBytes += uint64(len(b) - head)
			e.recs += uint64(len(s.keys))
		}
		e.nextSeq++
		e.unacked = append(e.unacked, s)
		p.add(&out, m)
		e.stats.DataSent++
	}
	if len(e.pending) == 0 {
		e.pending = nil // let a large backlog's array go
	}

	if p.cur == nil && now.Sub(e.lastKeep) >= e.cfg.Keepalive || p.cur != nil && now.Sub(e.lastKeep) >= e.cfg.Keepalive/2 {
		first := e.nextSeq
		if len(e.unacked) > 0 {
			first = e.unacked[0].seq
		}
		body := []byte{byte(e.role), 0}
		body = binary.BigEndian.AppendUint64(body, e.nextSeq)
		body = binary.BigEndian.AppendUint64(body, first)
		p.add(&out, appendMsg(nil, typeKeepalive, body))
		e.lastKeep = now
		e.stats.KeepalivesSent++
	}
	return p.flush(out)
}

// holding reports whether new data waits (Config.Coalesce): a data
// message left less than Coalesce ago and the records pending would not
// fill another, at the average size of those sent so far.
func (e *Endpoint) holding(now time.Time) bool {
	if e.cfg.Coalesce <= 0 || len(e.pending) == 0 || e.lastData.IsZero() || now.Sub(e.lastData) >= e.cfg.Coalesce {
		return false
	}
	avg := uint64(32)
	if e.recs > 0 {
		avg = max(1, e.recBytes/e.recs)
	}
	return uint64(len(e.pending))*avg < uint64(e.cfg.MaxPayload-e.cfg.recordMargin)
}

// outputUnreliable sends everything owed at once in ALARM_DATA messages,
// filled up to the payload size; nothing is kept for a resend.
func (e *Endpoint) outputUnreliable(p *payloadBuilder, out *[][]byte) {
	for len(e.pending) > 0 {
		if it := e.pending[0]; it.typ != 0 { // no bulk markers without reliability
			if it.typ == typeBulkEnd && it.mark.bulkID == e.bulk.bulkID {
				e.bulk.running = false // all of it sent: nothing is acknowledged
			}
			e.pending = e.pending[1:]
			continue
		}
		b, start := appendHeader(nil, typeAlarmData)
		for len(e.pending) > 0 && e.pending[0].typ == 0 && len(b) < e.cfg.MaxPayload-e.cfg.recordMargin {
			k := e.pending[0].key
			delete(e.queued, k)
			b = e.src.AppendRecord(b, k)
			e.pending = e.pending[1:]
		}
		p.add(out, finishMsg(b, start))
		e.stats.DataSent++
	}
}

func (e *Endpoint) hasBuffered(seq uint64) bool {
	_, ok := e.buffered[seq]
	return ok
}

// encode builds a reliable message with the current state of its objects.
func (e *Endpoint) encode(s *sent) []byte {
	b, start := appendHeader(nil, s.typ)
	b = append(b, u64(s.seq)...)
	if s.typ == typeData {
		for _, k := range s.keys {
			b = e.src.AppendRecord(b, k)
		}
	} else {
		b = append(b, u32(s.mark.bulkID)...)
		b = append(b, u32(s.mark.echo)...)
		if s.typ == typeBulkStart {
			b = append(b, u32(s.mark.entries)...)
		}
	}
	return finishMsg(b, start)
}

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
	if e.holding(now) {
		early(e.lastData.Add(e.cfg.Coalesce))
	}
	if t.Before(now) {
		return now
	}
	return t
}

// payloadBuilder packs messages into payloads of at most max bytes.
type payloadBuilder struct {
	max int
	cur []byte
}

func (p *payloadBuilder) add(out *[][]byte, m []byte) {
	if p.cur != nil && len(p.cur)+len(m) > p.max {
		*out = append(*out, p.cur)
		p.cur = nil
	}
	p.cur = append(p.cur, m...)
}

func (p *payloadBuilder) flush(out [][]byte) [][]byte {
	if p.cur != nil {
		out = append(out, p.cur)
	}
	return out
}
