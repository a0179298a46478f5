package ctsync

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ctha/ctha/cfg"
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
	// writeGroup bounds the flows merged from several jobs into one write.
	writeGroup = 4096
	// refreshChunk is the number of flows of the periodic refresh handed
	// to the writer at a time, when its queue is shorter than that or at
	// the latest every refreshStep: the refresh never delays new states
	// by more than one chunk.
	refreshChunk = 256
	refreshStep  = 20 * time.Millisecond
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
}

// writer is the writer goroutine's state; the loop only touches queue
// (sending) and backlog.
type writer struct {
	queue   chan writeJob
	backlog atomic.Int64 // flows queued and not yet written
	stop    <-chan struct{}
	kern    kernelWriter // the engine's kernel.Conn
}

// kernelWriter is what the writer needs of the kernel (a *kernel.Conn).
type kernelWriter interface {
	Write(ctx context.Context, op kernel.Op, flows []ct.Flow, opts kernel.WriteOptions) (kernel.WriteResult, error)
	WriteExpect(ctx context.Context, op kernel.Op, exps []ct.Expect) ([]error, error)
}

// queueWrite hands a job to the writer; it waits when the writer is
// writeQueue jobs behind. Nothing is queued in external mode.
func (e *Engine) queueWrite(j writeJob) {
	if len(j.flows) == 0 && len(j.exps.creates) == 0 && len(j.exps.deletes) == 0 && j.barrier == nil {
		return
	}
	e.wr.backlog.Add(int64(len(j.flows)))
	select {
	case e.wr.queue <- j:
	case <-e.wr.stop:
	}
}

// settleWrites waits until the writer has written everything queued
// before it (or the engine stops, or ctx is done).
func (e *Engine) settleWrites(ctx context.Context) error {
	if e.cfg.Cache != cfg.CacheDirect {
		return nil
	}
	done := make(chan struct{})
	e.queueWrite(writeJob{barrier: done})
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
	var group []flowOp
	for {
		var j writeJob
		select {
		case j = <-e.wr.queue:
		case <-ctx.Done():
			return
		}
		// Take what else is queued, up to writeGroup flows: one large
		// write costs less than many small ones. A job with expectations
		// or a barrier ends the group.
		group = append(group[:0], j.flows...)
		for j.barrier == nil && !j.exps.any() && len(group) < writeGroup {
			var ok bool
			select {
			case j, ok = <-e.wr.queue:
			default:
			}
			if !ok {
				j = writeJob{}
				break
			}
			group = append(group, j.flows...)
		}
		e.writeFlows(ctx, group)
		e.wr.backlog.Add(-int64(len(group)))
		if j.exps.any() {
			e.writeExpects(ctx, j.exps)
		}
		if j.barrier != nil {
			close(j.barrier)
		}
		if cap(group) > 4*writeGroup {
			group = nil // let a bulk's array go
		}
	}
}

// writeFlows writes ops in order, each run of the same operation in one
// Write.
func (e *Engine) writeFlows(ctx context.Context, ops []flowOp) {
	var flows []ct.Flow
	for i := 0; i < len(ops); {
		op, n := ops[i].op, 0
		flows = flows[:0]
		for ; i+n < len(ops) && ops[i+n].op == op; n++ {
			flows = append(flows, ops[i+n].flow)
		}
		i += n
		e.write(ctx, op, flows)
	}
}

// write applies flows to the kernel, counting every failure.
func (e *Engine) write(ctx context.Context, op kernel.Op, flows []ct.Flow) kernel.WriteResult {
	res, err := e.wr.kern.Write(ctx, op, flows, kernel.WriteOptions{Liberal: !e.cfg.TCPWindowTracking})
	if err != nil && ctx.Err() == nil {
		e.log.Error("conntrack write failed", "op", op, "entries", len(flows), "err", err)
	}
	e.stats.kernelWrites.Add(uint64(res.OK))
	for _, f := range res.Failed {
		if op == kernel.Delete && errors.Is(f.Err, errENOENT) {
			continue // already gone
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
	}{{kernel.Create, b.creates, unix.EEXIST}, {kernel.Delete, b.deletes, unix.ENOENT}} {
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
	if e.cfg.Cache != cfg.CacheDirect {
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
	e.queueWrite(writeJob{flows: ops})
	if len(r.keys) == 0 {
		return time.Time{}
	}
	return now.Add(refreshStep)
}

func (b expectBatch) any() bool { return len(b.creates) > 0 || len(b.deletes) > 0 }

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
