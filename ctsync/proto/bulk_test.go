package proto

import (
	"maps"
	"testing"
	"time"
)

// pair runs two nodes back to back: what one sends arrives at the other
// in the same step, unless the link is down.
type pair struct {
	t    *testing.T
	a, b *node
	now  time.Time
	down bool
	// starts are the bulk ids of the BULK_STARTs a sent, resends
	// included, in order.
	starts []uint32
}

func newPair(t *testing.T, a, b *node) *pair {
	return &pair{t: t, a: a, b: b, now: time.Unix(1_000_000, 0)}
}

func (p *pair) step() {
	p.t.Helper()
	for _, n := range []*node{p.a, p.b} {
		if n.ep.BulkNeeded() {
			n.startBulk()
		}
	}
	fromA, fromB := p.a.ep.Output(p.now, nil), p.b.ep.Output(p.now, nil)
	for _, pl := range fromA {
		if err := parsePayload(pl, func(m msg) error {
			if m.typ == typeBulkStart {
				p.starts = append(p.starts, m.bulkID)
			}
			return nil
		}); err != nil {
			p.t.Fatalf("a sent a malformed payload: %v", err)
		}
	}
	if !p.down {
		p.deliver(p.a, p.b, fromA)
		p.deliver(p.b, p.a, fromB)
	}
	p.now = p.now.Add(time.Millisecond)
}

func (p *pair) deliver(from, to *node, payloads [][]byte) {
	p.t.Helper()
	for _, pl := range payloads {
		out, err := to.ep.Input(from.epoch, pl, p.now, nil)
		if err != nil {
			p.t.Fatalf("%s: Input: %v", to.name, err)
		}
		for _, d := range out {
			to.apply(p.t, d)
		}
	}
}

// settle steps until both sides owe nothing and each holds the other's
// table, for at most limit.
func (p *pair) settle(limit time.Duration) {
	p.t.Helper()
	for end := p.now.Add(limit); p.now.Before(end); {
		p.step()
		if p.a.ep.Idle() && p.b.ep.Idle() && maps.Equal(p.a.own, p.b.peer) && maps.Equal(p.b.own, p.a.peer) {
			return
		}
	}
	p.t.Fatalf("not settled after %v: b holds %d of a's %d objects (%d differ); a owes %d, b owes %d",
		limit, len(p.b.peer), len(p.a.own), diffCount(p.a.own, p.b.peer), len(p.a.ep.pending)+len(p.a.ep.unacked),
		len(p.b.ep.pending)+len(p.b.ep.unacked))
}

// run steps for d.
func (p *pair) run(d time.Duration) {
	for end := p.now.Add(d); p.now.Before(end); {
		p.step()
	}
}

func ownTable(n int) table {
	t := table{}
	for id := range uint32(n) {
		t[id] = 1
	}
	return t
}

// TestRejoinTakesOneCurrentCopy: the master queued a copy for the peer
// (its takeover's bulk) while the peer was dead; the peer restarts with a
// new epoch. The master drops what it owed the dead run and sends one
// copy, echoing the new epoch; the restarted peer completes exactly one.
func TestRejoinTakesOneCurrentCopy(t *testing.T) {
	a := newNode("a", Config{Epoch: 10}, 10, ownTable(2000))
	b := newNode("b", Config{Epoch: 20}, 20, table{})
	p := newPair(t, a, b)
	p.settle(5 * time.Second)
	if b.bulks != 1 {
		t.Fatalf("first contact: b completed %d copies, want 1", b.bulks)
	}

	// b dies; a takes over (a bulk for the dead run) and its table
	// changes; nothing reaches b for a while.
	p.down = true
	a.startBulk()
	for id := range uint32(500) {
		a.own[id]++
		a.ep.Queue(keyOf(id))
	}
	p.run(3 * time.Second)
	if a.ep.Idle() {
		t.Fatal("a owes the dead peer nothing: the test does not cover the old stream")
	}

	// b restarts: a new epoch, nothing of a's table. Its first datagram
	// reaches a before a sends anything more (TestStaleBulkDiscarded is
	// the other order).
	p.b = newNode("b", Config{Epoch: 21}, 21, table{})
	p.b.ep.SetRole(RoleBackup)
	p.down, p.starts = false, nil
	p.deliver(p.b, a, p.b.ep.Output(p.now, nil))
	p.settle(5 * time.Second)
	if p.b.bulks != 1 {
		t.Errorf("the restarted peer completed %d copies, want 1", p.b.bulks)
	}
	ids := map[uint32]bool{}
	for _, id := range p.starts {
		ids[id] = true
	}
	if len(ids) != 1 {
		t.Errorf("a sent the restarted peer BULK_STARTs of %d bulks (%v), want one", len(ids), p.starts)
	}
	if st := p.b.ep.Stats(); st.BulksStale != 0 {
		t.Errorf("b discarded %d stale copies; a should not have sent any", st.BulksStale)
	}
}

// TestStaleBulkDiscarded: a copy that echoes an earlier epoch of the
// receiver (still in flight from before the sender heard of the restart)
// never completes a copy; it is counted. Its records are taken: each
// carries its object's latest state.
func TestStaleBulkDiscarded(t *testing.T) {
	a := newNode("a", Config{Epoch: 10}, 10, ownTable(300))
	b := newNode("b", Config{Epoch: 20}, 20, table{})
	p := newPair(t, a, b)
	p.settle(5 * time.Second)

	// a starts a copy for b's run 20 (an operator's `ctha sync bulk`)
	// and sends all of it, with a keep-alive; b has died meanwhile.
	p.now = p.now.Add(time.Second)
	a.startBulk()
	inFlight := a.ep.Output(p.now, nil)

	var got []Delivery
	b2 := New(Config{Epoch: 21}, table{})
	for _, pl := range inFlight {
		out, err := b2.Input(a.epoch, pl, p.now, nil)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, out...)
	}
	records := 0
	for _, d := range got {
		switch d.Kind {
		case DeliverBulkStart, DeliverBulkEnd:
			t.Errorf("a marker of the copy for epoch 20 was delivered to epoch 21: %+v", d)
		case DeliverRecords:
			records++
		}
	}
	if records == 0 {
		t.Error("the stale copy's records were not delivered")
	}
	if n := b2.Stats().BulksStale; n != 1 {
		t.Errorf("BulksStale %d, want 1 (one copy, two markers)", n)
	}
}

// TestBulkJoin: requests from the peer's current run join the copy under
// way; once its end is acknowledged, a request starts a new one; a
// request from a new run of the peer never joins a copy begun before it.
func TestBulkJoin(t *testing.T) {
	a := newNode("a", Config{Epoch: 10}, 10, ownTable(3000))
	b := newNode("b", Config{Epoch: 20}, 20, table{})
	p := newPair(t, a, b)
	p.settle(5 * time.Second)
	before := b.bulks
	first := a.startBulk()
	p.step() // the copy begins to go out
	b.ep.RequestBulk()
	p.step() // b's request arrives while it runs
	if !a.ep.BulkNeeded() {
		t.Fatal("b's request did not reach a")
	}
	if id := a.startBulk(); id != first {
		t.Errorf("a request from the same run made bulk %d beside %d", id, first)
	}
	p.settle(5 * time.Second)
	if b.bulks != before+1 {
		t.Errorf("b completed %d copies, want 1", b.bulks-before)
	}
	if id := a.startBulk(); id == first {
		t.Error("a request after the copy was acknowledged joined the finished copy")
	}
	p.settle(5 * time.Second)

	// A copy under way when b restarts: b's new run gets a new one.
	running := a.startBulk()
	p.step()
	p.b = newNode("b", Config{Epoch: 21}, 21, table{})
	p.starts = nil
	p.settle(5 * time.Second)
	for _, id := range p.starts {
		if id == running {
			t.Errorf("the restarted peer was sent bulk %d, begun for its earlier run", running)
		}
	}
	if p.b.bulks != 1 {
		t.Errorf("the restarted peer completed %d copies, want 1", p.b.bulks)
	}
}

// TestBulkAbandoned: the link fails in the middle of a copy and the
// sender's backlog overflows, so it gives up on what it owed, the copy
// included; a new copy follows, and the receiver completes that one,
// equal to the sender's table.
func TestBulkAbandoned(t *testing.T) {
	cfg := Config{Epoch: 10, MaxPending: 1500, Window: 64}
	a := newNode("a", cfg, 10, ownTable(1000))
	b := newNode("b", Config{Epoch: 20, MaxPending: 1500, Window: 64}, 20, table{})
	p := newPair(t, a, b)
	p.settle(10 * time.Second)
	p.starts = nil

	first := a.startBulk()
	p.step()
	p.down = true
	for id := uint32(1000); id < 3000; id++ { // more than MaxPending
		a.own[id] = 1
		a.ep.Queue(keyOf(id))
	}
	p.run(time.Second)
	if a.ep.Stats().GaveUp == 0 {
		t.Fatal("a never gave up: the copy was not abandoned")
	}
	p.down = false
	before := b.bulks
	p.settle(10 * time.Second)
	if b.bulks != before+1 {
		t.Errorf("b completed %d copies after the abandoned one, want 1", b.bulks-before)
	}
	var second uint32
	for _, id := range p.starts {
		if id != first {
			second = id
		}
	}
	if second == 0 {
		t.Errorf("no new copy after the abandoned bulk %d (starts sent: %v)", first, p.starts)
	}
}

// TestBulkMarkersFromAnOlderPeer: markers without the echo (a peer of an
// older version) are delivered, flagged as unchecked.
func TestBulkMarkersFromAnOlderPeer(t *testing.T) {
	e := New(Config{Epoch: 21}, table{})
	var pl []byte
	pl = appendMsg(pl, typeKeepalive, append([]byte{byte(RoleMaster), 0}, append(u64(3), u64(1)...)...))
	pl = appendMsg(pl, typeBulkStart, append(u64(1), u32(7)...))
	pl = appendMsg(pl, typeBulkEnd, append(u64(2), u32(7)...))
	out, err := e.Input(10, pl, time.Unix(1, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0].Kind != DeliverBulkStart || out[1].Kind != DeliverBulkEnd ||
		!out[0].Unchecked || !out[1].Unchecked || out[0].BulkID != 7 {
		t.Errorf("delivered %+v, want an unchecked start and end of bulk 7", out)
	}
	if n := e.Stats().BulksStale; n != 0 {
		t.Errorf("BulksStale %d for an older peer's copy", n)
	}
}

// TestBulkMarkerFormat: a BULK_START carries the echo and the entries,
// and its parse gives them back.
func TestBulkMarkerFormat(t *testing.T) {
	own := ownTable(5)
	e := New(Config{Epoch: 10}, own)
	e.peerEpoch = 20
	n := &node{own: own, ep: e}
	n.startBulk()
	var starts []msg
	for _, pl := range e.Output(time.Unix(1, 0), nil) {
		if err := parsePayload(pl, func(m msg) error {
			if m.typ == typeBulkStart || m.typ == typeBulkEnd {
				starts = append(starts, m)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if len(starts) != 2 {
		t.Fatalf("%d markers sent, want 2", len(starts))
	}
	if s := starts[0]; !s.echoed || s.epoch != 20 || s.entries != 5 {
		t.Errorf("BULK_START echoes %d (present %v) with %d entries, want 20 and 5", s.epoch, s.echoed, s.entries)
	}
	if s := starts[1]; !s.echoed || s.epoch != 20 {
		t.Errorf("BULK_END echoes %d (present %v), want 20", s.epoch, s.echoed)
	}
}
