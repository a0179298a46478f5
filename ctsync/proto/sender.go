package proto

// The sending half of an Endpoint: what is owed to the peer, bulk copies,
// acknowledgements, retransmission and the payloads built by Output.

import (
	"encoding/binary"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
)

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
	e.urgent = false
	return p.flush(out)
}

// holding reports whether new data waits (Config.Coalesce): a data
// message left less than Coalesce ago and the records pending would not
// fill another, at the average size of those sent so far.
func (e *Endpoint) holding(now time.Time) bool {
	if e.urgent || e.cfg.Coalesce <= 0 || len(e.pending) == 0 || e.lastData.IsZero() || now.Sub(e.lastData) >= e.cfg.Coalesce {
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
