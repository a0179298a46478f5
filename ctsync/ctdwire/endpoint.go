package ctdwire

// The FTFW endpoint: conntrackd's reliable mode, as a state machine fed
// with datagrams and the time.

import (
	"slices"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
)

// Source gives the endpoint an object's current state when its message
// is (re)sent: it appends the attributes of k's message (AppendState or
// AppendExpectState) to b and returns its type: CT_NEW or CT_UPD for a
// flow that exists, CT_DEL for one that is gone, EXP_* likewise. A
// resend thus carries the latest state, never an old one.
type Source interface {
	AppendMsgState(b []byte, k ct.Key) ([]byte, Type)
}

// Config are an Endpoint's parameters. The zero value of a field takes
// the default in DefaultConfig.
type Config struct {
	// InitialSeq is the first sequence number; conntrackd takes
	// time(NULL) at start. 0 is a valid number but takes the default 1.
	InitialSeq uint32
	// Window: an ACK is sent after this many messages in sequence
	// (conntrackd's ACKWindowSize, default 300).
	Window int
	// Alive: after this long without sending, send an ACK of what was
	// received since the last one, or else an ALIVE (conntrackd: 1 s).
	Alive time.Duration
	// MaxDatagram is the largest datagram (conntrackd: MTU - 28).
	MaxDatagram int
	// PeerTimeout: the peer is down after this long without a message.
	PeerTimeout time.Duration
	// ResendAfter: an object unacknowledged this long is sent again
	// (its latest state). conntrackd resends only on NACK, which leaves
	// a message lost while a peer says HELLO, or whose NACK was lost for
	// good, unsent; this is the safety net. Keep it above the peer's ACK
	// interval (Window messages, or Alive when idle).
	ResendAfter time.Duration
	// MaxReorder: a late message that says HELLO, from a peer that had
	// stopped saying HELLO, after this long without a message from the
	// peer (or the fourth such in a row) is taken as the peer's restart
	// with sequence numbers below the old ones, rather than dropped; the
	// ones dropped before are NACKed.
	MaxReorder time.Duration
	// MaxCtlResend bounds the ACK, NACK and RESYNC messages kept for a
	// resend on NACK (conntrackd: ResendQueueSize).
	MaxCtlResend int
}

// DefaultConfig returns the defaults, those of conntrackd 1.4.7.
func DefaultConfig() Config {
	return Config{InitialSeq: 1, Window: 300, Alive: time.Second, MaxDatagram: 1500 - 28,
		PeerTimeout: 3 * time.Second, ResendAfter: 5 * time.Second, MaxReorder: 500 * time.Millisecond, MaxCtlResend: 131072}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.InitialSeq == 0 {
		c.InitialSeq = d.InitialSeq
	}
	if c.Window <= 0 {
		c.Window = d.Window
	}
	if c.Alive <= 0 {
		c.Alive = d.Alive
	}
	if c.MaxDatagram < RangeLen {
		c.MaxDatagram = d.MaxDatagram
	}
	if c.PeerTimeout <= 0 {
		c.PeerTimeout = d.PeerTimeout
	}
	if c.ResendAfter <= 0 {
		c.ResendAfter = d.ResendAfter
	}
	if c.MaxReorder <= 0 {
		c.MaxReorder = d.MaxReorder
	}
	if c.MaxCtlResend <= 0 {
		c.MaxCtlResend = d.MaxCtlResend
	}
	return c
}

// Stats are an Endpoint's counters.
type Stats struct {
	Sent, Resent, AcksSent, NacksSent, AlivesSent, ResyncsSent uint64
	Delivered, Lost, Late, Malformed, ResyncsAsked             uint64
	// Oversized counts objects whose message does not fit a datagram
	// (never sent).
	Oversized uint64
}

// Endpoint is one side of an FTFW association with a conntrackd (or
// another Endpoint). Nothing in it is safe for concurrent use.
type Endpoint struct {
	cfg Config
	src Source

	// Sender.
	nextSeq      uint32
	sayHello     bool // our HELLO is not answered yet: flag every message
	sayHelloBack bool // the peer said HELLO: flag our next message
	pending      []ct.Key
	queued       map[ct.Key]bool
	ctlPending   []Msg
	unacked      map[ct.Key]sentObj // object -> its last message
	nextScan     time.Time          // of unacked, for ResendAfter
	ctlSent      []Msg              // ACK, NACK, RESYNC sent, oldest first
	lastTx       time.Time

	// Receiver.
	seqSet      bool
	lastSeq     uint32
	window      int
	ackFrom     uint32
	ackFromSet  bool
	lastHeard   time.Time
	peerHello   bool   // the last message from the peer said HELLO
	lateHellos  int    // late HELLOs in a row from a peer that had stopped
	lateFrom    uint32 // the lowest of them
	restarted   bool
	resyncAsked bool

	stats Stats
	buf   []byte
}

// lateHelloRestart late HELLOs in a row are a restart of the peer with
// lower sequence numbers.
const lateHelloRestart = 4

// sentObj is the last message an object went in.
type sentObj struct {
	seq uint32
	at  time.Time
}

// New returns an Endpoint that reads object states from src.
func New(cfg Config, src Source) *Endpoint {
	cfg = cfg.withDefaults()
	return &Endpoint{cfg: cfg, src: src, nextSeq: cfg.InitialSeq, sayHello: true,
		queued: map[ct.Key]bool{}, unacked: map[ct.Key]sentObj{}, window: cfg.Window}
}

// before reports whether a comes before b in sequence space (wrapping).
func before(a, b uint32) bool { return int32(a-b) < 0 }

// between reports whether from <= s <= to in sequence space.
func between(s, from, to uint32) bool { return to-from >= s-from }

// Queue asks for k's current state to be sent.
func (e *Endpoint) Queue(k ct.Key) {
	if !e.queued[k] {
		e.queued[k] = true
		e.pending = append(e.pending, k)
	}
}

// RequestResync asks the peer for its whole table (conntrackd -n): a
// RESYNC. The answer is state messages like any other; no marker ends
// it (see BulkWatch).
func (e *Endpoint) RequestResync() {
	e.ctlPending = append(e.ctlPending, Msg{Type: TypeCtl, Flags: FlagResync})
}

// ResyncRequested reports (once) that the peer asked for our whole
// table: the caller queues every object it has (conntrackd does the
// same for -B, unasked).
func (e *Endpoint) ResyncRequested() bool {
	r := e.resyncAsked
	e.resyncAsked = false
	return r
}

// PeerRestarted reports (once) that the peer said HELLO: it (re)started,
// its copy of our table is empty, and it asked nothing. A caller that
// wants the peer complete queues every object then.
func (e *Endpoint) PeerRestarted() bool {
	r := e.restarted
	e.restarted = false
	return r
}

// PeerUp reports whether a message came from the peer within
// Config.PeerTimeout.
func (e *Endpoint) PeerUp(now time.Time) bool {
	return !e.lastHeard.IsZero() && now.Sub(e.lastHeard) < e.cfg.PeerTimeout
}

// HelloDone reports whether the peer answered our HELLO (HELLO_BACK):
// until then every message we send says HELLO, and a conntrackd peer
// takes each one as a fresh start of our sequence numbers.
func (e *Endpoint) HelloDone() bool { return !e.sayHello }

// Stats returns the counters.
func (e *Endpoint) Stats() Stats { return e.stats }

// Unacked returns how many objects wait for the peer's ACK.
func (e *Endpoint) Unacked() int { return len(e.unacked) }

// queueCtl queues an ACK or a NACK.
func (e *Endpoint) queueCtl(f Flags, from, to uint32) {
	e.ctlPending = append(e.ctlPending, Msg{Type: TypeCtl, Flags: f, From: from, To: to})
}

// Input processes a datagram received at now and appends to deliver the
// state messages (flows and expectations) to apply, in the order they
// came. Their Attrs point into dgram. It follows conntrackd's receiver:
// a message after a gap is delivered at once and the gap NACKed; a
// message older than the last one delivered (late, or a duplicate) is
// dropped; the gap's messages come again as fresh ones, with the
// sender's latest state. The error is the datagram's first malformed
// message (counted); the messages before it count.
func (e *Endpoint) Input(dgram []byte, now time.Time, deliver []Msg) ([]Msg, error) {
	msgs, err := ParseDatagram(nil, dgram)
	if err != nil {
		e.stats.Malformed++
	}
	for i := range msgs {
		m := &msgs[i]
		if (m.Type.IsState() && !m.IsData()) || (!m.Type.IsState() && m.Type != TypeCtl) {
			e.stats.Malformed++
			continue
		}
		if m.Type == TypeCtl && m.Flags&(FlagAck|FlagNack) != 0 && before(m.To, m.From) {
			e.stats.Malformed++ // as conntrackd
			continue
		}
		if m.Flags&FlagHelloBack != 0 {
			e.sayHello = false
		}
		hello := m.Flags&FlagHello != 0
		exp := e.lastSeq + 1
		late := e.seqSet && m.Seq != exp && before(m.Seq, exp)
		quiet := now.Sub(e.lastHeard) >= e.cfg.MaxReorder
		e.lastHeard = now
		restart := !e.seqSet || (hello && !late && !e.peerHello)
		if hello && late && !e.peerHello {
			// A HELLO numbered before what we took, from a peer that
			// had stopped saying HELLO: a straggler of its handshake,
			// or its restart with lower numbers. A restart goes on
			// saying HELLO; a straggler comes alone.
			if e.lateHellos == 0 || before(m.Seq, e.lateFrom) {
				e.lateFrom = m.Seq
			}
			e.lateHellos++
			restart = quiet || e.lateHellos >= lateHelloRestart
		}
		switch {
		case restart:
			// First contact, or the peer restarted: its sequence
			// numbers start afresh, and what we owed its last run
			// is moot.
			e.restarted = true
			e.ctlSent = nil
			e.ackFromSet, e.window = false, e.cfg.Window
			if e.lateHellos > 1 && before(e.lateFrom, m.Seq) {
				// The new run's messages we dropped.
				e.queueCtl(FlagNack, e.lateFrom, m.Seq-1)
			}
		case m.Seq == exp:
		case late:
			e.stats.Late++
			continue
		default:
			e.stats.Lost += uint64(m.Seq - exp)
			if e.ackFromSet {
				e.queueCtl(FlagAck, e.ackFrom, exp-1)
			}
			e.queueCtl(FlagNack, exp, m.Seq-1)
			e.window = e.cfg.Window
			e.ackFromSet = false
		}
		e.lateHellos = 0
		if hello {
			// Answered only when taken: a restarted peer whose
			// HELLOs we still drop goes on saying HELLO.
			e.sayHelloBack = true
		}
		e.peerHello = hello
		deliver = e.digest(m, deliver)
		if !e.ackFromSet {
			e.ackFromSet, e.ackFrom = true, m.Seq
		}
		if e.window--; e.window <= 0 {
			e.queueCtl(FlagAck, e.ackFrom, m.Seq)
			e.window, e.ackFromSet = e.cfg.Window, false
		}
		e.seqSet, e.lastSeq = true, m.Seq
	}
	return deliver, err
}

// digest acts on one message in sequence.
func (e *Endpoint) digest(m *Msg, deliver []Msg) []Msg {
	if m.Type.IsState() {
		e.stats.Delivered++
		return append(deliver, *m)
	}
	switch {
	case m.Flags&FlagAck != 0:
		for k, s := range e.unacked {
			if between(s.seq, m.From, m.To) {
				delete(e.unacked, k)
			}
		}
		e.ctlSent = dropRange(e.ctlSent, m.From, m.To)
	case m.Flags&FlagNack != 0:
		e.requeue(func(s sentObj) bool { return between(s.seq, m.From, m.To) })
		var keep []Msg
		for _, c := range e.ctlSent {
			if between(c.Seq, m.From, m.To) {
				e.stats.Resent++
				e.ctlPending = append(e.ctlPending, Msg{Type: c.Type, Flags: c.Flags &^ (FlagHello | FlagHelloBack), From: c.From, To: c.To})
			} else {
				keep = append(keep, c)
			}
		}
		e.ctlSent = keep
	case m.Flags&FlagResync != 0:
		e.stats.ResyncsAsked++
		e.resyncAsked = true
	}
	return deliver
}

func dropRange(ms []Msg, from, to uint32) []Msg {
	out := ms[:0]
	for _, c := range ms {
		if !between(c.Seq, from, to) {
			out = append(out, c)
		}
	}
	return out
}

// Output returns at now the datagrams to send, appended to out: control
// messages first, then the state of every queued object, each message
// with its own sequence number; or, after Config.Alive without sending,
// an ACK of what arrived since the last one, else an ALIVE.
func (e *Endpoint) Output(now time.Time, out [][]byte) [][]byte {
	var d []byte
	flush := func() {
		if len(d) > 0 {
			out = append(out, d)
			d = nil
		}
	}
	add := func(m *Msg) {
		m.Seq = e.nextSeq
		e.nextSeq++
		if e.sayHello {
			m.Flags |= FlagHello
		}
		if e.sayHelloBack {
			m.Flags |= FlagHelloBack
			e.sayHelloBack = false
		}
		if len(d)+m.Len() > e.cfg.MaxDatagram {
			flush()
		}
		d = AppendMsg(d, m)
		e.stats.Sent++
		e.lastTx = now
	}
	if !now.Before(e.nextScan) {
		e.nextScan = now.Add(e.cfg.ResendAfter / 4)
		e.requeue(func(s sentObj) bool { return now.Sub(s.at) >= e.cfg.ResendAfter })
	}
	if len(e.ctlPending) == 0 && len(e.pending) == 0 && (e.lastTx.IsZero() || now.Sub(e.lastTx) >= e.cfg.Alive) {
		if e.ackFromSet && e.seqSet {
			e.queueCtl(FlagAck, e.ackFrom, e.lastSeq)
			e.ackFromSet, e.window = false, e.cfg.Window
		} else {
			m := Msg{Type: TypeCtl, Flags: FlagAlive}
			add(&m)
			e.stats.AlivesSent++
		}
	}
	for i := range e.ctlPending {
		m := e.ctlPending[i]
		add(&m)
		switch {
		case m.Flags&FlagAck != 0:
			e.stats.AcksSent++
		case m.Flags&FlagNack != 0:
			e.stats.NacksSent++
		case m.Flags&FlagResync != 0:
			e.stats.ResyncsSent++
		}
		if e.ctlSent = append(e.ctlSent, m); len(e.ctlSent) > e.cfg.MaxCtlResend {
			e.ctlSent = e.ctlSent[1:]
		}
	}
	e.ctlPending = e.ctlPending[:0]
	for _, k := range e.pending {
		delete(e.queued, k)
		var t Type
		e.buf, t = e.src.AppendMsgState(e.buf[:0], k)
		m := Msg{Type: t, Attrs: e.buf}
		if HeaderLen+len(e.buf) > e.cfg.MaxDatagram {
			e.stats.Oversized++
			delete(e.unacked, k)
			continue
		}
		add(&m)
		e.unacked[k] = sentObj{seq: m.Seq, at: now}
	}
	e.pending = e.pending[:0]
	flush()
	return out
}

// NextTimeout returns when Output has something to send without new
// input: now if something is queued, else when an ALIVE (or a delayed
// ACK) is due.
func (e *Endpoint) NextTimeout(now time.Time) time.Time {
	if len(e.ctlPending) > 0 || len(e.pending) > 0 || e.lastTx.IsZero() {
		return now
	}
	t := e.lastTx.Add(e.cfg.Alive)
	if len(e.unacked) > 0 && e.nextScan.Before(t) {
		t = e.nextScan
	}
	return t
}

// requeue queues again the unacknowledged objects whose last message
// matches, in the order they were sent (the map's order is random, and a
// peer applies what it receives in sequence order).
func (e *Endpoint) requeue(match func(sentObj) bool) {
	var ks []ct.Key
	for k, s := range e.unacked {
		if match(s) {
			ks = append(ks, k)
		}
	}
	// Sequence numbers wrap: compare by their difference.
	slices.SortFunc(ks, func(a, b ct.Key) int { return int(int32(e.unacked[a].seq - e.unacked[b].seq)) })
	for _, k := range ks {
		e.stats.Resent++
		e.Queue(k)
	}
}
