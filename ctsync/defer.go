package ctsync

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ctha/ctha/ctsync/auth"
	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/nfq"
	"github.com/ctha/ctha/ctsync/nfqtable"
)

// Defer (multiprimary, Config.Defer): OpenBSD pfsync's defer on Linux.
// With asymmetric paths a flow's packets cross different nodes, and a
// packet that reaches a node before its state does is INVALID there. So
// the packets that create or advance a state (deferpkt.go) wait in an
// NFQUEUE until every live peer has written that state into its kernel,
// and at most Config.Defer.
//
//   - ctha's own nftables tables (package nfqtable) queue those packets in
//     postrouting after source NAT, with bypass: they pass while ctha is
//     not running. The tables are checked again after every change of the
//     ruleset and put back after a `flush ruleset`.
//   - Each held packet's state goes into the internal cache and to every
//     peer at once (proto.Endpoint.Urgent), followed by a write ack record
//     (wire.KindWriteAck) with a token. A peer answers with a WRITTEN
//     message once everything before the record is in its kernel (the
//     writer has written it), not when it is received.
//   - The packet is accepted when every peer that was up when it was held
//     has answered, or when Config.Defer has passed (a peer that died
//     meanwhile, a lost answer). A packet with no live peer to wait for
//     passes at once.
//   - The state comes from the packet's conntrack entry where the kernel
//     gives it (the queue bound with the conntrack glue), else from its
//     headers: then a flow whose source was translated to one of this
//     node's addresses or VIPs (SNAT) cannot be described and is not held,
//     and destination-NATed flows are not queued at all (their rules
//     exclude them).
//   - The kernel's event that follows the verdict (a NEW, or an UPDATE to
//     SYN_RECV) repeats the state just sent: it is not sent again.

// Bounds of defer.
const (
	// deferRulesCheck: ctha's tables are checked this often besides after
	// every ruleset change (a missed change notification).
	deferRulesCheck = 10 * time.Second
	// deferEchoTTL: how long a state sent for a held packet waits for the
	// kernel event that repeats it.
	deferEchoTTL = 5 * time.Second
	// deferBurst: packets taken from the queue in one turn of the loop.
	deferBurst = 256
	// deferSamples: the held times p99_us is computed over (the latest).
	deferSamples = 4096
)

// typeWritten is the engine's WRITTEN message (types 0x20-0x2f are the
// caller's in package proto): the tokens of write acks whose records are
// now in the sender's kernel, each a uvarint. Unreliable: a lost one ends
// the wait by its timeout.
const typeWritten = 0x22

// PacketQueue is the NFQUEUE defer holds packets in (an *nfq.Queue).
type PacketQueue interface {
	Packets() <-chan nfq.Packet
	Verdicts(ids []uint32, v nfq.Verdict) error
	// Glue reports whether packets carry their conntrack entry.
	Glue() bool
	Err() error
	Close() error
}

// DeferRules are the nftables rules that send packets to the queue (an
// *nfqtable.Table).
type DeferRules interface {
	Install(queue uint16, matches ...nfqtable.Match) error
	Reinstall() (bool, error)
	Watch(ctx context.Context, changed func()) error
	Remove() error
	Mode() nfqtable.Mode
}

func openQueue(num uint16) (PacketQueue, error) {
	return nfq.Open(num, nfq.Options{Conntrack: true})
}

func newDeferRules() (DeferRules, error) { return nfqtable.New(nfqtable.Options{}) }

// deferMatches are the rules' matches: a TCP SYN or a UDP or ICMP packet
// whose entry is not confirmed yet (the flow's first packet), and every
// TCP SYN-ACK. Without the glue, destination-NATed flows are left out:
// their original tuple is not in the headers.
func deferMatches(glue bool) []nfqtable.Match {
	first := uint32(ct.StatusConfirmed)
	var natBits uint32
	if !glue {
		natBits = ct.StatusDstNAT
	}
	const fin, syn, rst, ack = 0x01, 0x02, 0x04, 0x10
	m := []nfqtable.Match{
		nfqtable.And(nfqtable.MatchTCPFlags(fin|syn|rst|ack, syn), nfqtable.MatchCTStatusClear(first|natBits)),
		nfqtable.MatchTCPFlags(fin|syn|rst|ack, syn|ack),
	}
	if natBits != 0 {
		m[1] = nfqtable.And(m[1], nfqtable.MatchCTStatusClear(natBits))
	}
	for _, p := range []uint8{ct.ProtoUDP, ct.ProtoICMP, ct.ProtoICMPv6} {
		m = append(m, nfqtable.And(nfqtable.MatchL4Proto(p), nfqtable.MatchCTStatusClear(first|natBits)))
	}
	return m
}

// deferral is the engine's defer state. The loop owns everything but the
// counters and the samples.
type deferral struct {
	wait  time.Duration
	num   uint16
	q     PacketQueue
	rules DeferRules
	glue  bool

	holds   map[uint32]*hold  // by token
	byKey   map[ct.Key]uint32 // the token of a key's hold (AppendRecord adds its write ack)
	order   []uint32          // tokens in the order held: their deadlines' order
	next    uint32            // the next token
	echo    map[ct.Key]sent   // states sent for held packets, until the kernel's event repeats them
	swept   time.Time         // echo's last sweep
	release []uint32          // packet ids to accept (flushVerdicts)

	held, acked, timedOut, notDeferred, reinstalls, verdictErrors atomic.Uint64

	// keepRules runs under its own context: the rules are removed only
	// once it has stopped (stopRules), or it could put them back.
	rulesCancel context.CancelFunc
	rulesDone   sync.WaitGroup
	closed      bool // the queue failed or the engine stops: no more verdicts

	mu      sync.Mutex // guards samples
	samples []uint32   // held times in µs, a ring of deferSamples
	sampleN int        // samples taken
}

// hold is a state some held packets wait for.
type hold struct {
	key     ct.Key
	ids     []uint32 // the packets
	waiting uint8    // the peers (bits) yet to write it
	since   time.Time
}

type sent struct {
	flow ct.Flow
	at   time.Time
}

// DeferStatus is defer's part of Status (nil when defer is off).
type DeferStatus struct {
	Timeout time.Duration
	Queue   uint16
	// Source is where a held packet's state comes from: "conntrack" (the
	// kernel's glue) or "headers".
	Source string
	// Rule is how the nftables rules queue packets: "native" or "compat".
	Rule string
	// Held counts packets held; ReleasedAcked, those released once every
	// live peer had written their state; ReleasedTimeout, those released
	// at the timeout; NotDeferred, those passed at once (no live peer, a
	// source-NATed flow without the glue, this node's own traffic, a
	// state the filter does not replicate).
	Held, ReleasedAcked, ReleasedTimeout, NotDeferred uint64
	// Pending is the number of packets held now.
	Pending int
	// P99 is the 99th percentile of the time packets were held, over the
	// latest ones.
	P99 time.Duration
	// Reinstalls counts the times ctha's tables were found missing or
	// changed and put back.
	Reinstalls uint64
}

// openDeferral binds the queue and installs the rules.
func openDeferral(c *Config, opts Options) (*deferral, error) {
	q, err := opts.OpenQueue(c.DeferQueue)
	if errors.Is(err, nfq.ErrQueueTaken) {
		return nil, fmt.Errorf("conntrack sync: defer: NFQUEUE %d is bound by another process (another ctha, or an IPS using the same number): choose another defer_queue: %w", c.DeferQueue, err)
	}
	if err != nil {
		return nil, fmt.Errorf("conntrack sync: defer: NFQUEUE %d: %w", c.DeferQueue, err)
	}
	rules, err := opts.DeferRules()
	if err == nil {
		err = rules.Install(c.DeferQueue, deferMatches(q.Glue())...)
	}
	if err != nil {
		q.Close()
		if errors.Is(err, unix.EPERM) {
			err = fmt.Errorf("%w (ctha needs CAP_NET_ADMIN)", err)
		}
		return nil, fmt.Errorf("conntrack sync: defer: %w", err)
	}
	return &deferral{
		wait: c.Defer, num: c.DeferQueue, q: q, rules: rules, glue: q.Glue(),
		holds: map[uint32]*hold{}, byKey: map[ct.Key]uint32{}, echo: map[ct.Key]sent{},
		samples: make([]uint32, deferSamples),
		// Tokens start anywhere: a late answer to the engine this one
		// replaced (a reload) must not release a hold of this one.
		next: rand.Uint32(),
	}, nil
}

// startRules starts keepRules, owned by the deferral (stopRules).
func (d *deferral) startRules(ctx context.Context, log *slog.Logger) {
	ctx, d.rulesCancel = context.WithCancel(ctx)
	d.rulesDone.Go(func() { d.keepRules(ctx, log) })
}

// close stops keepRules, removes the rules, then lets every held packet
// pass; once only.
func (d *deferral) close(log *slog.Logger) {
	if d.closed {
		return
	}
	d.closed = true
	if d.rulesCancel != nil {
		d.rulesCancel()
		d.rulesDone.Wait()
	}
	if err := d.rules.Remove(); err != nil {
		log.Error("defer: cannot remove ctha's nftables tables (their rules pass packets while ctha is stopped: bypass)", "err", err)
	}
	if err := d.q.Close(); err != nil {
		log.Warn("defer: closing the queue", "err", err)
	}
}

// keepRules puts ctha's tables back whenever they are found missing or
// changed: after each change of the ruleset, and every deferRulesCheck.
func (d *deferral) keepRules(ctx context.Context, log *slog.Logger) {
	changed := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		err := d.rules.Watch(ctx, func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		})
		if err != nil && ctx.Err() == nil {
			log.Warn("defer: cannot watch the nftables ruleset; ctha's tables are checked every "+deferRulesCheck.String()+" only", "err", err)
		}
	})
	t := time.NewTicker(deferRulesCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-t.C:
		}
		switch did, err := d.rules.Reinstall(); {
		case err != nil:
			log.Error("defer: cannot check or put back ctha's nftables tables", "table", nfqtable.TableName, "err", err)
		case did:
			d.reinstalls.Add(1)
			log.Warn("defer: ctha's nftables tables were missing or changed (nft flush ruleset?); put back", "table", nfqtable.TableName)
		}
	}
}

// onQueued holds packet p until its state is written by every live peer,
// or passes it at once.
func (e *Engine) onQueued(p *nfq.Packet, now time.Time) {
	d := e.dq
	f, ok := e.heldState(p)
	up := e.upMask(now)
	if !ok || up == 0 {
		d.notDeferred.Add(1)
		d.release = append(d.release, p.ID)
		return
	}
	k := f.Key()
	if t, ok := d.byKey[k]; ok {
		if progress(e.heldFlow(k), &f) <= 0 {
			h := d.holds[t]
			h.ids = append(h.ids, p.ID) // the same state (a SYN sent again): one wait
			d.held.Add(1)
			return
		}
	}
	if own, ok := e.internal.get(k); !ok || progress(&own, &f) >= 0 {
		e.internal.put(&f)
	}
	if e.bg != nil {
		e.bg.dirty[k] = true // newer than the dump under way
	}
	d.next++
	t := d.next
	d.holds[t] = &hold{key: k, ids: []uint32{p.ID}, waiting: up, since: now}
	d.byKey[k] = t
	d.order = append(d.order, t)
	d.echo[k] = sent{flow: f, at: now}
	d.held.Add(1)
	for _, pr := range e.peers {
		pr.ep.Queue(k)
		pr.ep.Urgent()
	}
}

// pending reports whether key k is a held packet's flow the kernel has not
// confirmed yet (its event has not come): a dump cannot list it, and must
// not take it for gone.
func (e *Engine) pending(k ct.Key) bool {
	if e.dq == nil {
		return false
	}
	_, ok := e.dq.echo[k]
	return ok
}

// heldFlow returns the state cached for key k (held packets put it there).
func (e *Engine) heldFlow(k ct.Key) *ct.Flow {
	f, _ := e.internal.get(k)
	return &f
}

// heldState returns the state held packet p creates or advances, and
// whether it is to be held at all.
func (e *Engine) heldState(p *nfq.Packet) (ct.Flow, bool) {
	var f ct.Flow
	if p.CT != nil {
		f = *p.CT
	} else {
		hf, kind, err := headerFlow(p.Payload)
		if err != nil {
			return f, false
		}
		if kind == heldSYNACK {
			// The state to advance is cached (the node's own, or the
			// peer's that its kernel holds): with its NAT, which the
			// headers do not show.
			cached, ok := e.internal.get(hf.Key())
			if !ok {
				if cached, ok = e.external.get(hf.Key()); !ok {
					return f, false
				}
			}
			f = cached
			if tcpRank(f.TCP.State) < tcpRank(ct.TCPSynRecv) {
				f.TCP.State = ct.TCPSynRecv
			}
			f.Status |= ct.StatusSeenReply
			f.Timeout = max(f.Timeout, timeoutSynRecv)
		} else {
			// Translated to one of this node's addresses or VIPs: the
			// original source is not in the headers.
			if src := hf.Orig.SrcAddr(); e.flt.own[src] || slices.Contains(e.opts.VIPs, src) {
				return f, false
			}
			f = hf
		}
	}
	return f, e.flt.keep(&f)
}

// onWritten ends the waits peer p has answered.
func (e *Engine) onWritten(p *peer, payload []byte, now time.Time) {
	d := e.dq
	forEachMsg(payload, typeWritten, func(body []byte) {
		for len(body) > 0 {
			t, n := binary.Uvarint(body)
			if n <= 0 || t > 1<<32-1 {
				e.stats.drop("malformed")
				return
			}
			body = body[n:]
			h := d.holds[uint32(t)]
			if h == nil {
				continue // released at its timeout, or another run's
			}
			if h.waiting &^= p.bit; h.waiting == 0 {
				d.acked.Add(uint64(len(h.ids)))
				d.releaseHold(uint32(t), h, now)
			}
		}
	})
}

// releaseHold lets hold h's packets pass.
func (d *deferral) releaseHold(t uint32, h *hold, now time.Time) {
	d.release = append(d.release, h.ids...)
	delete(d.holds, t)
	if d.byKey[h.key] == t {
		delete(d.byKey, h.key)
	}
	us := uint32(min(now.Sub(h.since).Microseconds(), 1<<32-1))
	d.mu.Lock()
	for range h.ids {
		d.samples[d.sampleN%deferSamples] = us
		d.sampleN++
	}
	d.mu.Unlock()
}

// tick releases the holds whose time is up and gives the verdicts owed;
// it returns when it must run again (zero: no hold).
func (e *Engine) deferTick(now time.Time) time.Time {
	d := e.dq
	var next time.Time
	for len(d.order) > 0 {
		t := d.order[0]
		h := d.holds[t]
		if h == nil { // released by its acks
			d.order = d.order[1:]
			continue
		}
		if due := h.since.Add(d.wait); now.Before(due) {
			next = due
			break
		}
		d.order = d.order[1:]
		d.timedOut.Add(uint64(len(h.ids)))
		d.releaseHold(t, h, now)
	}
	if len(d.order) == 0 {
		d.order = d.order[:0:0] // let a burst's array go
	}
	if now.Sub(d.swept) >= time.Second {
		d.swept = now
		for k, s := range d.echo {
			if now.Sub(s.at) > deferEchoTTL {
				delete(d.echo, k) // no event came: the packet was dropped after all
			}
		}
	}
	e.flushVerdicts()
	return next
}

// flushVerdicts accepts the packets released.
func (e *Engine) flushVerdicts() {
	d := e.dq
	if len(d.release) == 0 || d.closed {
		d.release = d.release[:0] // closed: the queue accepted what it held
		return
	}
	if err := d.q.Verdicts(d.release, nfq.Accept); err != nil {
		// The kernel accepts what it holds when the queue closes; a
		// verdict that failed leaves the packet held until then.
		if d.verdictErrors.Add(1) == 1 {
			e.log.Error("defer: verdicts failed", "packets", len(d.release), "err", err)
		}
	}
	d.release = d.release[:0]
}

// echoed reports whether the kernel's event of flow f repeats the state
// sent for a held packet (then it is not sent again).
func (d *deferral) echoed(f *ct.Flow) bool {
	k := f.Key()
	s, ok := d.echo[k]
	if !ok {
		return false
	}
	delete(d.echo, k)
	return progress(&s.flow, f) == 0 && s.flow.Mark == f.Mark && f.Extra == nil
}

func (d *deferral) status() *DeferStatus {
	s := &DeferStatus{
		Timeout: d.wait, Queue: d.num, Source: "headers", Rule: d.rules.Mode().String(),
		Held: d.held.Load(), ReleasedAcked: d.acked.Load(), ReleasedTimeout: d.timedOut.Load(),
		NotDeferred: d.notDeferred.Load(), Reinstalls: d.reinstalls.Load(),
	}
	if d.glue {
		s.Source = "conntrack"
	}
	s.Pending = int(s.Held - s.ReleasedAcked - s.ReleasedTimeout)
	d.mu.Lock()
	n := min(d.sampleN, deferSamples)
	xs := slices.Clone(d.samples[:n])
	d.mu.Unlock()
	if n > 0 {
		slices.Sort(xs)
		s.P99 = time.Duration(xs[(n*99+99)/100-1]) * time.Microsecond
	}
	return s
}

// written is what the writer has written for a peer's write acks.
type written struct {
	p      *peer
	tokens []uint32
}

// appendAcks appends job j's write acks, if any.
func appendAcks(ws []written, j writeJob) []written {
	if len(j.acks) > 0 {
		ws = append(ws, written{j.ackPeer, j.acks})
	}
	return ws
}

// noteWritten is called by the writer once the records before these write
// acks are in the kernel.
func (e *Engine) noteWritten(ws []written) {
	e.writtenMu.Lock()
	e.written = append(e.written, ws...)
	e.writtenMu.Unlock()
	select {
	case e.writtenWake <- struct{}{}:
	default:
	}
}

// sendWritten answers the write acks the writer has written: for each
// peer, as few datagrams as its tokens fit in.
func (e *Engine) sendWritten() {
	e.writtenMu.Lock()
	ws := e.written
	e.written = nil
	e.writtenMu.Unlock()
	var buf, body []byte
	for _, p := range e.peers {
		body = body[:0]
		send := func() {
			if len(body) == 0 {
				return
			}
			msg := append([]byte{typeWritten}, binary.AppendUvarint(nil, uint64(len(body)))...)
			msg = append(msg, body...)
			body = body[:0]
			e.seq++
			buf = auth.Seal(buf[:0], &e.cfg.Key, auth.Header{Sender: e.sender, Epoch: e.epoch, Seq: e.seq}, msg)
			if err := e.sendTo(p, buf); err != nil {
				e.stats.sendErrors.Add(1)
				return
			}
			e.stats.datagramsOut.Add(1)
		}
		for _, w := range ws {
			if w.p != p {
				continue
			}
			for _, t := range w.tokens {
				if len(body) >= maxPayload-16 {
					send()
				}
				body = binary.AppendUvarint(body, uint64(t))
			}
		}
		send()
	}
}

// forEachMsg calls fn with the body of every message of type typ in a
// payload (the protocol's framing: type u8, length uvarint, body).
func forEachMsg(p []byte, typ byte, fn func(body []byte)) {
	for len(p) > 0 {
		t := p[0]
		n, k := binary.Uvarint(p[1:])
		if k <= 0 || n > uint64(len(p)-1-k) {
			return
		}
		body := p[1+k : 1+k+int(n)]
		p = p[1+k+int(n):]
		if t == typ {
			fn(body)
		}
	}
}
