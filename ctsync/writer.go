package ctsync

import (
	"context"
	"errors"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
)

// The peer's states reach the kernel (direct mode) through a writer
// goroutine of their own: a kernel write takes about 10 us per flow, and
// done on the loop it held up the datagrams behind it (and their ACKs)
// whenever the loop was short of CPU. The loop decides what to write, in
// the order the peer sent it, and queues it; the writer applies the jobs
// in that order, merging consecutive ones into larger batches when it
// falls behind. Order is what keeps it correct: a flow's delete after its
// create, expectations after their masters.

// Bounds of the writer.
const (
	// writeQueue is how many jobs the loop may queue before it waits.
	writeQueue = 4096
	// writeGroup bounds the flows merged from several jobs into one write;
	// ackGroup, once a job of the group carries write acks (a packet
	// waits for them: defer): a write of 4096 flows takes tens of ms.
	writeGroup = 4096
	ackGroup   = 256
	// refreshChunk is the number of flows of the periodic refresh handed
	// to the writer at a time, when its queue is shorter than that or at
	// the latest every refreshStep: the refresh never delays new states
	// by more than one chunk.
	refreshChunk = 256
	refreshStep  = 20 * time.Millisecond
	// refreshSlice: the refresh writes waiting (refreshLane) are written
	// this many at a time, and only while no other job waits: a job with
	// write acks waits for one slice at most. Written in the stream's
	// order, a multiprimary dump's refresh of 1000 mirrors (one job per
	// slice of the dump) held a write ack for 25 ms, past defer's timeout.
	refreshSlice = 64
	// refreshMaxWait: once the oldest refresh has waited this long, a
	// slice of refreshChunk is written after each group even while jobs
	// are queued, until the lane is empty: under sustained load the lane
	// would otherwise never drain, mirrors would expire, and a refresh
	// written seconds after its dump would look, at the next dump, like
	// this node's traffic (adoptSlack).
	refreshMaxWait = 100 * time.Millisecond
	// inlineMax: a job with write acks and at most this many flows is
	// written on the loop when the writer is idle (writeInline).
	inlineMax = 64
	// pauseAbove: on a node that is not master, a write of a bulk copy
	// (as at a rejoin) of at least this many flows is made with the flow
	// events paused (pauseEvents): the kernel writes two to four times
	// faster when it builds no events, and the node's own flows, whose
	// events are lost meanwhile, are few on a backup and made good by the
	// resync that follows.
	pauseAbove = 1024
)

// flowOp is a flow to write.
type flowOp struct {
	op   kernel.Op
	flow ct.Flow
}

// writeJob is what one delivery (or one refresh chunk, or an expiry) asks
// of the kernel: flows, then expectations. A job with only a barrier asks
// to be told when everything before it is written.
type writeJob struct {
	flows   []flowOp
	exps    expectBatch
	barrier chan struct{}
	// acks are write acks of peer ackPeer, answered once the job is
	// written (Engine.noteWritten).
	acks    []uint32
	ackPeer *peer
	// bulk: the flows belong to the peer's bulk copy (a rejoin): with the
	// events paused they may be written over two sockets.
	bulk bool
	// refresh: the flows are mirrors written again (Update) only to keep
	// them alive: they wait in the refreshLane.
	refresh bool
}

// refreshLane holds the refresh writes taken from the queue and not yet
// written. They go after any job queued later (it waits for no refresh:
// that is their point), which is safe because a refresh only keeps a
// mirror alive: one whose flow a later job writes anyway is dropped
// (supersede), so it can never put back an older state over a newer one.
type refreshLane struct {
	ops   []flowOp
	head  int            // ops[:head] are written
	at    map[ct.Key]int // the index in ops of each key's refresh
	jobs  int64          // the refresh jobs taken in (writer.jobs)
	since time.Time      // when the first job came since the lane was empty
}

func (l *refreshLane) len() int { return len(l.ops) - l.head }

// add takes in refresh job j's flows.
func (l *refreshLane) add(j writeJob) {
	if l.at == nil {
		l.at = map[ct.Key]int{}
	}
	if l.len() == 0 {
		l.since = time.Now()
	}
	for _, op := range j.flows {
		k := op.flow.Key()
		if i, ok := l.at[k]; ok {
			l.ops[i].op = 0 // an older refresh of the same mirror
		}
		l.at[k] = len(l.ops)
		l.ops = append(l.ops, op)
	}
	l.jobs++
}

// supersede drops the refreshes of the flows ops write.
func (l *refreshLane) supersede(ops []flowOp) {
	if len(l.at) == 0 {
		return
	}
	for _, op := range ops {
		k := op.flow.Key()
		if i, ok := l.at[k]; ok {
			l.ops[i].op = 0
			delete(l.at, k)
		}
	}
}

// next appends to flows up to n refreshes to write (each an Update),
// and returns the count taken from the lane (dropped ones included).
func (l *refreshLane) next(n int, flows []ct.Flow) ([]ct.Flow, int) {
	end := min(l.head+n, len(l.ops))
	for _, op := range l.ops[l.head:end] {
		if op.op != 0 {
			flows = append(flows, op.flow)
			delete(l.at, op.flow.Key())
		}
	}
	taken := end - l.head
	l.head = end
	return flows, taken
}

// writer is the writer goroutine's state; the loop only touches queue
// (sending) and backlog.
type writer struct {
	queue   chan writeJob
	backlog atomic.Int64 // flows queued and not yet written
	jobs    atomic.Int64 // jobs queued and not yet done: 0, the writer is idle
	stop    <-chan struct{}
	kern    kernelWriter // the engine's kernel.Conn
	// laneWait is refreshMaxWait (tests shorten it).
	laneWait time.Duration
	// mayPause is set while the node is not master (SetRole): large
	// writes may pause the events.
	mayPause atomic.Bool
	// dial opens the second socket of a parallel write (kernel.Dial);
	// nil: writes are never parallel. The writer goroutine owns what it
	// opens (extra) and closes it when it stops.
	dial  func() (kernelConn, error)
	extra kernelConn
	flows []ct.Flow // writeFlows' runs, kept between writes
}

// kernelConn is a kernelWriter that can be closed.
type kernelConn interface {
	kernelWriter
	Close() error
}

// eventPause is the pause of the flow events (kernel.Listener.Pause)
// that a commit and the writer share: the events resume when the last of
// them is done, and the loop then owes a resync (resyncOwed).
type eventPause struct {
	mu    sync.Mutex
	n     int
	owed  atomic.Bool
	pause func() error // the listener's Pause and Resume
	join  func() error
}

// pauseEvents pauses the flow events until the matching resumeEvents.
func (e *Engine) pauseEvents() {
	p := &e.evPause
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n++; p.n == 1 {
		if err := p.pause(); err != nil {
			e.log.Warn("cannot pause the conntrack events for a large write", "err", err)
		}
	}
}

func (e *Engine) resumeEvents() {
	p := &e.evPause
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n--; p.n == 0 {
		if err := p.join(); err != nil && !e.stopping() {
			// Without events nothing is replicated: the engine must not
			// go on as if it were. (When the engine stops, the listener
			// may be closed before the writer ends its pause.)
			e.log.Error("cannot listen to the conntrack events again after a pause", "err", err)
		}
		p.owed.Store(true)
	}
}

// stopping reports whether the engine is stopping (Run's ctx is done).
func (e *Engine) stopping() bool {
	select {
	case <-e.wr.stop:
		return true
	default:
		return false
	}
}

// resyncOwed reports (once) that the events were paused since it was
// last asked: the loop resyncs from a dump to make good what they missed.
func (e *Engine) resyncOwed() bool { return e.evPause.owed.Swap(false) }

// kernelWriter is what the writer needs of the kernel (a *kernel.Conn).
// Write must not keep flows: the writer reuses the slice.
type kernelWriter interface {
	Write(ctx context.Context, op kernel.Op, flows []ct.Flow, opts kernel.WriteOptions) (kernel.WriteResult, error)
	WriteExpect(ctx context.Context, op kernel.Op, exps []ct.Expect) ([]error, error)
}

// queueWrite hands a job to the writer; it waits when the writer is
// writeQueue jobs behind. Nothing is queued in external mode.
func (e *Engine) queueWrite(j writeJob) {
	if len(j.flows) == 0 && !j.exps.any() && j.barrier == nil && j.acks == nil {
		return
	}
	e.wr.backlog.Add(int64(len(j.flows)))
	e.wr.jobs.Add(1)
	select {
	case e.wr.queue <- j:
	case <-e.wr.stop:
	}
}

// writeInline writes job j on the loop, and answers its write acks at
// once, when it is small, has write acks (a packet waits for it: defer),
// the writer is idle (nothing queued before it, so order holds) and no
// other datagram waits for the loop (under load the writer merges the
// jobs of many datagrams into one write, and the loop goes on reading).
// The writer's round trip (the job handed over, the answer handed back)
// cost two goroutine wake-ups per held packet. It reports whether it did.
func (e *Engine) writeInline(ctx context.Context, j writeJob) bool {
	if len(j.acks) == 0 || len(j.flows) > inlineMax || j.exps.any() || j.barrier != nil || j.bulk ||
		e.wr.jobs.Load() != 0 || len(e.inbox) > 0 {
		return false
	}
	// The writer is idle and only the loop queues: it stays idle until
	// this returns, and its last write happened before jobs went to 0.
	e.writeFlows(ctx, j.flows, false)
	e.noteWritten([]written{{j.ackPeer, j.acks}})
	e.sendWritten()
	return true
}

// settleWrites waits until the writer has written everything queued
// before it (or the engine stops, or ctx is done).
func (e *Engine) settleWrites(ctx context.Context) error {
	return e.awaitWrites(ctx, e.writeBarrier())
}

// writeBarrier queues a barrier and returns the channel closed once the
// writer has written everything queued before it; nil in external mode
// (nothing is written).
func (e *Engine) writeBarrier() chan struct{} {
	if e.cfg.Cache != Direct {
		return nil
	}
	done := make(chan struct{})
	e.queueWrite(writeJob{barrier: done})
	return done
}

// awaitWrites waits for a writeBarrier (nil: at once).
func (e *Engine) awaitWrites(ctx context.Context, done chan struct{}) error {
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-e.wr.stop:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runWriter applies the queued jobs until ctx is done.
func (e *Engine) runWriter(ctx context.Context) {
	defer func() {
		if e.wr.extra != nil {
			e.wr.extra.Close()
		}
	}()
	var group []flowOp
	var acks []written // the write acks of the group's jobs
	var lane refreshLane
	for {
		var j writeJob
		if lane.len() > 0 {
			select {
			case j = <-e.wr.queue:
			case <-ctx.Done():
				return
			default:
				e.writeRefresh(ctx, &lane, refreshSlice) // nothing else waits
				continue
			}
		} else {
			select {
			case j = <-e.wr.queue:
			case <-ctx.Done():
				return
			}
		}
		if j.refresh {
			lane.add(j)
			continue
		}
		// Take what else is queued, up to writeGroup flows: one large
		// write costs less than many small ones. A job with expectations
		// or a barrier ends the group.
		group = append(group[:0], j.flows...)
		acks = appendAcks(acks[:0], j)
		bulk := j.bulk
		jobs := int64(1)
		// Write acks do not end a group: they are answered once it is
		// written, and under load one write of many jobs keeps the
		// writer ahead where a write per job (per datagram) fell behind.
		for j.barrier == nil && !j.exps.any() && len(group) < writeGroup && (len(acks) == 0 || len(group) < ackGroup) {
			var ok bool
			select {
			case j, ok = <-e.wr.queue:
			default:
			}
			if !ok {
				j = writeJob{}
				break
			}
			if j.refresh {
				lane.add(j)
				j = writeJob{}
				continue
			}
			group = append(group, j.flows...)
			acks = appendAcks(acks, j)
			bulk = bulk || j.bulk
			jobs++
		}
		// Only a bulk copy (a rejoin, which the node waits for) is
		// written with the events paused, and over two sockets, which
		// take both CPUs. The stream of changes never is: each pause
		// owes a resync, a dump of the whole table, and a backup under
		// steady churn (5k creates and 5k deletes a second, make soak)
		// then dumped its 100k entries every second, which held its
		// loop long enough for both nodes to think the other gone.
		lane.supersede(group) // the backlog counts them until the lane passes them
		paused := bulk && len(group) >= pauseAbove && e.wr.mayPause.Load()
		if paused {
			e.pauseEvents()
		}
		e.writeFlows(ctx, group, paused)
		if paused {
			e.resumeEvents()
		}
		e.wr.backlog.Add(-int64(len(group)))
		if j.exps.any() {
			e.writeExpects(ctx, j.exps)
		}
		switch {
		case j.barrier != nil:
			// Everything queued before it, refreshes too.
			for lane.len() > 0 {
				e.writeRefresh(ctx, &lane, refreshChunk)
			}
		case lane.len() > 0 && time.Since(lane.since) >= e.wr.laneWait:
			e.writeRefresh(ctx, &lane, refreshChunk) // waited long enough
		}
		if len(acks) > 0 {
			e.noteWritten(acks)
		}
		e.wr.jobs.Add(-jobs)
		if j.barrier != nil {
			// Closed last: whoever waits for it finds the writer idle
			// (writeInline checks jobs) and the acks noted.
			close(j.barrier)
		}
		if cap(group) > 4*writeGroup {
			group = nil // let a bulk's array go
		}
	}
}

// writeRefresh writes up to n refreshes of the lane, and settles the
// lane's jobs once it is empty.
func (e *Engine) writeRefresh(ctx context.Context, l *refreshLane, n int) {
	flows, taken := l.next(n, e.wr.flows[:0])
	e.write(ctx, e.wr.kern, kernel.Update, flows)
	e.wr.flows = flows[:0] // n is at most a refreshChunk
	e.wr.backlog.Add(-int64(taken))
	if l.len() == 0 {
		e.wr.jobs.Add(-l.jobs)
		ops, at := l.ops[:0], l.at
		if cap(ops) > 4*writeGroup {
			ops, at = nil, nil // let a large refresh's memory go
		}
		clear(at)
		*l = refreshLane{ops: ops, at: at}
	}
}

// writeFlows writes ops in order, each run of the same operation in one
// Write. With parallel (the events paused, a bulk copy), a long run of
// creates is written by two sockets at once, as a commit is: the kernel
// takes creates in parallel while it builds no events. Each flow goes to
// the socket its key hashes to, so the writes of one flow stay in order;
// runs of different operations never overlap.
func (e *Engine) writeFlows(ctx context.Context, ops []flowOp, parallel bool) {
	flows := e.wr.flows[:0]
	defer func() {
		if cap(flows) <= 4*writeGroup {
			e.wr.flows = flows[:0] // reused, unless a bulk's
		}
	}()
	for i := 0; i < len(ops); {
		op, n := ops[i].op, 0
		flows = flows[:0]
		for ; i+n < len(ops) && ops[i+n].op == op; n++ {
			flows = append(flows, ops[i+n].flow)
		}
		i += n
		if op == kernel.Create && parallel && len(flows) >= pauseAbove && e.extraConn() != nil {
			e.writeParallel(ctx, flows)
			continue
		}
		e.write(ctx, e.wr.kern, op, flows)
	}
}

// extraConn returns the writer's second socket, opened at first use;
// nil if it cannot be opened (the writes are then serial).
func (e *Engine) extraConn() kernelWriter {
	if e.wr.extra == nil && e.wr.dial != nil {
		c, err := e.wr.dial()
		if err != nil {
			e.log.Warn("cannot open a second conntrack socket; writing bulk copies serially", "err", err)
			e.wr.dial = nil
			return nil
		}
		e.wr.extra = c
	}
	if e.wr.extra == nil {
		return nil
	}
	return e.wr.extra
}

// writeParallel creates flows through the writer's two sockets at once,
// each flow on the socket its key hashes to.
func (e *Engine) writeParallel(ctx context.Context, flows []ct.Flow) {
	seed := maphash.MakeSeed()
	var parts [2][]ct.Flow
	for _, f := range flows {
		h := maphash.Comparable(seed, f.Key())
		parts[h&1] = append(parts[h&1], f)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.write(ctx, e.wr.extra, kernel.Create, parts[1])
	}()
	e.write(ctx, e.wr.kern, kernel.Create, parts[0])
	wg.Wait()
}

// write applies flows to the kernel through k, counting every failure.
func (e *Engine) write(ctx context.Context, k kernelWriter, op kernel.Op, flows []ct.Flow) kernel.WriteResult {
	if len(flows) == 0 {
		return kernel.WriteResult{}
	}
	res, err := k.Write(ctx, op, flows, kernel.WriteOptions{Liberal: !e.cfg.TCPWindowTracking})
	if err != nil && ctx.Err() == nil {
		e.log.Error("conntrack write failed", "op", op, "entries", len(flows), "err", err)
	}
	e.stats.kernelWrites.Add(uint64(res.OK))
	for _, f := range res.Failed {
		if op == kernel.Delete && errors.Is(f.Err, errENOENT) {
			continue // already gone
		}
		if op == kernel.Create && errors.Is(f.Err, unix.EEXIST) {
			// The flow exists under its other tuple: a flow of this
			// node's with the same translated tuple (SNAT to a shared
			// address, port ranges overlapping). A create replaces only a
			// flow of the same original tuple, so the live local flow is
			// kept; the peer's is not written.
			if e.stats.natConflicts.Add(1) == 1 {
				e.log.Warn("a peer's flow has the translated tuple of a local flow: not written (see snat_port_range)",
					"flow", f.Key.Orig)
			}
		}
		e.stats.kernelFailures.Add(1)
		e.log.Debug("conntrack write refused", "op", op, "flow", f.Key.Orig, "err", f.Err)
	}
	return res
}

// writeExpects applies a batch of expectations.
func (e *Engine) writeExpects(ctx context.Context, b expectBatch) {
	for _, w := range []struct {
		op   kernel.Op
		exps []ct.Expect
		ok   error // not a failure
	}{
		{kernel.Delete, b.replaces, unix.ENOENT},
		{kernel.Create, slices.Concat(b.creates, b.replaces), unix.EEXIST},
		{kernel.Delete, b.deletes, unix.ENOENT},
	} {
		if len(w.exps) == 0 {
			continue
		}
		errs, err := e.wr.kern.WriteExpect(ctx, w.op, w.exps)
		if err != nil && ctx.Err() == nil {
			e.log.Error("expectation write failed", "op", w.op, "entries", len(w.exps), "err", err)
		}
		for i, err := range errs {
			switch {
			case err == nil:
				e.stats.kernelWrites.Add(1)
			case errors.Is(err, w.ok):
			default:
				e.stats.kernelFailures.Add(1)
				e.log.Debug("expectation write refused", "op", w.op, "expect", w.exps[i].String(), "err", err)
			}
		}
	}
}

// refresh is the periodic rewrite of the peer's short-lived states in
// direct mode (their timeouts would run out in this kernel), handed to
// the writer in chunks so that it never holds up new states.
type refresh struct {
	keys []ct.Key
	last time.Time // the last chunk handed over
}

// refreshTick starts a refresh every refreshEvery and hands the writer
// its next chunk when due; it returns when it must run again (zero: not
// before something else happens).
func (e *Engine) refreshTick(now time.Time) time.Time {
	if e.cfg.Cache != Direct || e.cfg.Topology == Multiprimary { // there the mirror check refreshes
		return time.Time{}
	}
	r := &e.refresh
	if len(r.keys) == 0 {
		if now.Sub(e.lastRefresh) < refreshEvery {
			return time.Time{}
		}
		e.lastRefresh = now
		for f := range e.external.flows() {
			if f.Timeout < refreshBelow {
				r.keys = append(r.keys, f.Key())
			}
		}
		if len(r.keys) == 0 {
			r.keys = nil
			return time.Time{}
		}
	}
	if e.wr.backlog.Load() >= refreshChunk && now.Sub(r.last) < refreshStep {
		return r.last.Add(refreshStep)
	}
	r.last = now
	n := min(refreshChunk, len(r.keys))
	var ops []flowOp
	for _, k := range r.keys[:n] {
		// The state as it is now: the peer may have changed or
		// destroyed it since the refresh began.
		if f, ok := e.external.get(k); ok && f.Timeout < refreshBelow && e.mirror(k) {
			ops = append(ops, flowOp{kernel.Update, f})
		}
	}
	r.keys = r.keys[n:]
	if len(r.keys) == 0 {
		r.keys = nil
	}
	e.queueWrite(writeJob{flows: ops, refresh: true})
	if len(r.keys) == 0 {
		return time.Time{}
	}
	return now.Add(refreshStep)
}

func (b expectBatch) any() bool { return len(b.creates)+len(b.replaces)+len(b.deletes) > 0 }

// masters returns the keys of the flows a job creates.
func masters(ops []flowOp) []ct.Key {
	var ks []ct.Key
	for i := range ops {
		if ops[i].op == kernel.Create {
			ks = append(ks, ops[i].flow.Key())
		}
	}
	return slices.Clip(ks)
}
