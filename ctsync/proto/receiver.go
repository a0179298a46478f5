package proto

// The receiving half of an Endpoint: Input, in-order delivery, the reorder
// buffer and the gaps it asks the peer to fill.

import "time"

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
		// A keep-alive at once: the new run learns this side's role (and
		// sequence) without waiting an interval.
		e.lastKeep = time.Time{}
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

func (e *Endpoint) hasBuffered(seq uint64) bool {
	_, ok := e.buffered[seq]
	return ok
}
