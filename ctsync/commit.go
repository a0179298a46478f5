package ctsync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
)

// CommitResult is what a commit of the external cache did.
type CommitResult struct {
	Entries int `json:"entries"`
	// Expectations is how many of the peer's expectations were written
	// (after the flows); their failures count in Failed.
	Expectations int           `json:"expectations"`
	Failed       int           `json:"failed"`
	Took         time.Duration `json:"-"`
	// TableFull is set when the kernel table had no room for every entry.
	TableFull bool `json:"table_full"`
}

// commitWorkers write the external cache in parallel.
const commitWorkers = 2

// resyncAfterCommit: a commit pauses the events; the resync that covers
// the pause waits this long for a takeover's, which makes it needless.
const resyncAfterCommit = 500 * time.Millisecond

// Commit writes the peer's flows into the kernel, most recently active
// first, in parallel batches; failures are counted, never hidden, and an
// error says how many entries were left out.
func (e *Engine) Commit(ctx context.Context) (CommitResult, error) {
	type heard struct {
		flow ct.Flow
		at   int64
	}
	var flows []heard
	if err := e.do(ctx, func() {
		flows = make([]heard, 0, e.external.len())
		for f, at := range e.external.flows() {
			if !e.internal.has(f.Key()) {
				flows = append(flows, heard{f, at})
			}
		}
	}); err != nil {
		return CommitResult{}, err
	}
	slices.SortFunc(flows, func(a, b heard) int { return int(b.at - a.at) })
	res := CommitResult{Entries: len(flows)}
	if count, max, err := e.opts.Kernel.TableCount(); err == nil && count+len(flows) > max {
		res.TableFull = true
	}
	e.commitMu.Lock()
	defer e.commitMu.Unlock()
	start := time.Now()
	// The kernel builds no flow events while nothing listens to them,
	// and writes the flows several times faster: this node's events of
	// the commit's window are lost, so a resync follows (a takeover's
	// own resync, which comes at once after a commit, takes its place).
	e.pauseEvents()
	defer e.resumeEvents() // the loop then resyncs (resyncOwed)
	var (
		wg     sync.WaitGroup
		failed atomic.Int64
		errs   = make([]error, commitWorkers)
	)
	for w := range commitWorkers {
		part := flows[w*len(flows)/commitWorkers : (w+1)*len(flows)/commitWorkers]
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn := e.kern
			if w > 0 { // one socket per worker: a Conn serialises its callers
				c, err := e.opts.Kernel.Dial()
				if err != nil {
					errs[w], conn = err, nil
				} else {
					defer c.Close()
					conn = c
				}
			}
			batch := make([]ct.Flow, 0, len(part))
			for _, x := range part {
				batch = append(batch, x.flow)
			}
			if conn == nil {
				failed.Add(int64(len(batch)))
				return
			}
			r, err := conn.Write(ctx, kernel.Create, batch, kernel.WriteOptions{Liberal: !e.cfg.TCPWindowTracking})
			failed.Add(int64(len(r.Failed)))
			if err != nil {
				errs[w] = err
			}
		}()
	}
	wg.Wait()
	// The expectations after their masters.
	nx, fx, xerr := e.commitExpects(ctx)
	res.Expectations, res.Failed = nx, fx
	errs = append(errs, xerr)
	res.Failed, res.Took = res.Failed+int(failed.Load()), time.Since(start)
	e.stats.commits.Add(1)
	e.stats.kernelFailures.Add(uint64(res.Failed))
	e.do(ctx, func() { r := res; e.lastCommit = &r })
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("commit: %w", err)
	}
	if res.Failed > 0 {
		msg := ""
		if res.TableFull {
			msg = " (the conntrack table is full)"
		}
		return res, fmt.Errorf("commit: %d of %d entries were refused by the kernel%s", res.Failed, res.Entries, msg)
	}
	return res, nil
}

// Flush empties both caches (conntrackd -f); the kernel table is kept.
func (e *Engine) Flush(ctx context.Context) error {
	return e.do(ctx, func() {
		e.internal.clear()
		e.external.clear()
		clear(e.exp.internal)
		clear(e.exp.external)
		for _, p := range e.peers {
			p.bulkComplete = false
		}
	})
}
