package ctsync

// protocol = "conntrackd": the peer is a conntrackd 1.4 (FTFW over UDP),
// spoken with package ctdwire instead of ctha's protocol and envelope.
//
// What differs from a ctha peer, and only that, lives here; the engine
// switches to it where a peer's protocol is used (receive, onDatagram,
// flush, queue, startBulk, Request, up). What the peer sends goes through
// the same apply as a ctha peer's: its state messages become ctha
// records, a resync this node asked for becomes a bulk copy (its start
// when the RESYNC goes, its end when ctdwire.BulkWatch says the peer has
// been quiet: conntrackd marks no end). Datagrams are plain UDP: there
// is no key, no MAC, no replay guard (ctdwire's doc says why none can
// be). There are no link probes: one link, and the peer is up while
// ctdwire's endpoint hears it (its ALIVEs come every second).

import (
	"context"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/ctdwire"
	"github.com/ctha/ctha/ctsync/proto"
	"github.com/ctha/ctha/ctsync/wire"
)

const (
	// ctdBulkQuiet: the peer's answer to a RESYNC is complete after this
	// long without a state message from it (ctdwire.BulkWatch).
	ctdBulkQuiet = 2 * time.Second
	// ctdBulkMax bounds that wait for a peer busy with live updates.
	ctdBulkMax = 30 * time.Second
)

// ctdPeer is what the engine keeps of a conntrackd peer, beside peer's
// fields (its bulk copy's bookkeeping is peer's, as for a ctha peer).
type ctdPeer struct {
	ep     *ctdwire.Endpoint
	bulk   ctdwire.BulkWatch
	bulkID uint32    // of the resync under way, for apply's bulk markers
	asked  time.Time // when it was asked for
	// want: ask the peer for its table once it is up (it restarted, or a
	// resync under way was abandoned when it went silent).
	want bool
	// expSent: the expectations last sent as present, whose master an
	// EXP_DEL must name (the key alone does not).
	expSent map[ct.Key]ct.Expect
}

// newCtdPeer makes the conntrackd side of peer p.
func (e *Engine) newCtdPeer(p *peer) {
	c := &ctdPeer{
		bulk:    ctdwire.BulkWatch{Quiet: ctdBulkQuiet, Max: ctdBulkMax},
		expSent: map[ct.Key]ct.Expect{},
	}
	// Numbers start at the time, as conntrackd's do: a restarted ctha
	// does not reuse its last run's.
	c.ep = ctdwire.New(ctdwire.Config{InitialSeq: uint32(time.Now().Unix())}, ctdSource{e, c})
	p.ctd = c
}

// ctdSource gives the endpoint the current state of this node's flows
// and expectations: present ones as CT_UPD/EXP_UPD (conntrackd creates
// what it lacks), gone ones as CT_DEL/EXP_DEL.
type ctdSource struct {
	e *Engine
	c *ctdPeer
}

func (s ctdSource) AppendMsgState(b []byte, k ct.Key) ([]byte, ctdwire.Type) {
	if k.Expect {
		x, ok := s.e.exp.internal[k]
		t := ctdwire.TypeExpUpd
		if ok {
			s.c.expSent[k] = x
		} else {
			// As last sent (a resend after a NACK has only the key).
			x, t = s.c.expSent[k], ctdwire.TypeExpDel
			delete(s.c.expSent, k)
			x.Tuple, x.Zone = k.Orig, k.Zone
		}
		st, _ := ctdwire.ExpectStateOf(&x)
		return ctdwire.AppendExpectState(b, &st), t
	}
	f, ok := s.e.internal.get(k)
	t := ctdwire.TypeCTUpd
	if !ok {
		f, t = ct.Flow{Orig: k.Orig, Reply: wire.Inverse(k.Orig), Zone: k.Zone}, ctdwire.TypeCTDel
	}
	st, d := ctdwire.StateOf(&f)
	if d&^ctdwire.DroppedTCPFlags != 0 { // TCP flags: every TCP flow, not worth a count
		s.e.stats.drop("conntrackd_unmapped")
	}
	return ctdwire.AppendState(b, &st), t
}

// onCtdDatagram runs conntrackd's protocol on a datagram from p and
// applies what it delivers.
func (e *Engine) onCtdDatagram(ctx context.Context, d datagram) {
	p, c, now := d.peer, d.peer.ctd, time.Now()
	msgs, err := c.ep.Input(d.payload, now, nil)
	if err != nil {
		e.stats.drop("malformed") // what came before it stands, as for ctha
	}
	e.stats.datagramsIn.Add(1)
	p.addr, p.heard = d.src, now
	if d.link >= 0 && d.link < len(p.views) {
		p.views[d.link].heard, p.views[d.link].peerHears = now, true
	}
	var ds []proto.Delivery
	if c.ep.PeerRestarted() {
		// First contact or a restart: its copy of this node's table is
		// gone, and it asks for nothing (conntrackd does not); send ours
		// and ask for its own.
		e.log.Info("conntrackd peer started; sending it this node's table and asking for its own", "peer", p.name())
		e.startBulk(p)
		c.want = true
	}
	if c.ep.ResyncRequested() {
		e.log.Info("conntrackd peer asked for this node's table", "peer", p.name())
		e.startBulk(p)
	}
	if c.want {
		ds = append(ds, e.ctdRequest(p, now))
	}
	var recs []byte
	for i := range msgs {
		m := &msgs[i]
		c.bulk.Observe(now)
		switch m.Type {
		case ctdwire.TypeCTNew, ctdwire.TypeCTUpd, ctdwire.TypeCTDel:
			f, dropped, err := m.Flow()
			if err != nil {
				e.stats.drop("bad_record")
				continue
			}
			if dropped&^ctdwire.DroppedSynproxy != 0 {
				e.stats.drop("conntrackd_unmapped")
			}
			if m.Type == ctdwire.TypeCTDel {
				recs = wire.AppendDestroy(recs, f.Key())
			} else {
				recs = wire.AppendUpdate(recs, &f)
			}
		default: // expectations
			if !e.cfg.Expectations {
				continue
			}
			x, dropped, err := m.Expect()
			if err != nil {
				e.stats.drop("bad_record")
				continue
			}
			if dropped != 0 {
				e.stats.drop("conntrackd_unmapped")
			}
			if m.Type == ctdwire.TypeExpDel {
				recs = wire.AppendExpectDestroy(recs, x.Key())
			} else {
				recs = wire.AppendExpect(recs, &x)
			}
		}
	}
	if len(recs) > 0 {
		ds = append(ds, proto.Delivery{Kind: proto.DeliverRecords, Records: recs})
	}
	e.apply(ctx, p, ds)
}

// ctdRequest asks peer p for its table (conntrackd -n) and returns the
// start of the bulk copy its answer is, for apply.
func (e *Engine) ctdRequest(p *peer, now time.Time) proto.Delivery {
	c := p.ctd
	c.want = false
	c.ep.RequestResync()
	c.bulk.Start(now)
	c.asked = now
	c.bulkID++
	p.bulkComplete, p.bulkAsked = false, now
	return proto.Delivery{Kind: proto.DeliverBulkStart, BulkID: c.bulkID}
}

// ctdTick ends the peer's bulk copy once it has been quiet. A quiet
// period of a silent peer would count as its whole table and drop every
// flow held of it: the copy is abandoned if the peer goes down, or was
// not heard well after the request (a live conntrackd sends an ALIVE
// every second), and asked for again once the peer is up.
func (e *Engine) ctdTick(ctx context.Context, p *peer, now time.Time) {
	c := p.ctd
	abandon := func() {
		c.bulk = ctdwire.BulkWatch{Quiet: ctdBulkQuiet, Max: ctdBulkMax}
		p.bulkSeen, p.bulkAsked = nil, time.Time{}
		c.want = true
		e.log.Info("conntrackd peer silent; its table is asked for again when it is back", "peer", p.name())
	}
	switch {
	case c.bulk.Running() && !p.up(now):
		abandon()
	case c.bulk.Done(now):
		if p.heard.Before(c.asked.Add(ctdBulkQuiet / 2)) {
			abandon()
			break
		}
		e.apply(ctx, p, []proto.Delivery{{Kind: proto.DeliverBulkEnd, BulkID: c.bulkID}})
	case c.want && p.up(now):
		e.apply(ctx, p, []proto.Delivery{e.ctdRequest(p, now)})
	}
}

// ctdFlush sends what the endpoint has to send to p: plain datagrams.
func (e *Engine) ctdFlush(p *peer, now time.Time) {
	for _, b := range p.ctd.ep.Output(now, nil) {
		if err := e.sendTo(p, b); err != nil {
			e.stats.sendErrors.Add(1)
			continue
		}
		e.stats.datagramsOut.Add(1)
	}
}

// ctdBulk queues this node's whole table for p (conntrackd -B, and its
// answer to a RESYNC): conntrackd has no bulk markers, only the states.
func (e *Engine) ctdBulk(p *peer) {
	for k := range e.internal.keys() {
		p.ctd.ep.Queue(k)
	}
	e.expectKeys(func(k ct.Key) bool { p.ctd.ep.Queue(k); return true }) // after their masters
	e.stats.bulksSent.Add(1)
	e.log.Info("sending this node's table to the conntrackd peer", "peer", p.name(), "entries", e.internal.len())
}

// ctdStats are the endpoint's counters as the protocol's.
func ctdStats(s ctdwire.Stats) proto.Stats {
	return proto.Stats{DataSent: s.Sent, Resent: s.Resent, AcksSent: s.AcksSent, NacksSent: s.NacksSent,
		KeepalivesSent: s.AlivesSent, Delivered: s.Delivered, Malformed: s.Malformed}
}
