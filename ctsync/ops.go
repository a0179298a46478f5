package ctsync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ctha/ctha/ctsync/auth"
	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/ctsync/proto"
	"golang.org/x/sys/unix"
)

var errENOENT = unix.ENOENT

// ErrStopped is returned by operations on an engine that is not running.
var ErrStopped = errors.New("conntrack sync is not running")

// ErrIncomplete is returned by Purge before the peer's complete copy is
// held.
var ErrIncomplete = errors.New("the peer's complete copy is not held yet: nothing purged")

// ErrMaster is returned by Purge on a master.
var ErrMaster = errors.New("this node is master: its table is the reference, nothing to purge")

// do runs f on the engine's goroutine and waits for it.
func (e *Engine) do(ctx context.Context, f func()) error {
	done := make(chan struct{})
	select {
	case e.ctl <- func() { f(); close(done) }:
	case <-e.done:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

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
	if count, max, err := kernel.TableCount(); err == nil && count+len(flows) > max {
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
				c, err := kernel.Dial()
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
		e.bulkComplete = false
	})
}

// Resync reconciles the internal cache with the kernel table and sends
// the peer what differs (conntrackd -R).
func (e *Engine) Resync(ctx context.Context) error {
	var err error
	if derr := e.do(ctx, func() { err = e.resync(ctx) }); derr != nil {
		return derr
	}
	return err
}

// Bulk sends the peer a complete copy of this node's flows (conntrackd -B).
func (e *Engine) Bulk(ctx context.Context) error {
	return e.do(ctx, e.startBulk)
}

// Request asks the peer for a complete copy of its flows (conntrackd -n).
func (e *Engine) Request(ctx context.Context) error {
	return e.do(ctx, func() {
		e.bulkComplete, e.bulkAsked = false, time.Now()
		e.ep.RequestBulk()
	})
}

// Purge deletes the kernel's flows that the peer does not hold, except
// this node's own (conntrackd -t, run by a backup). The deletions are not
// replicated. It returns how many it deleted. A master never purges: its
// table is the reference (a purge scheduled while it was backup that fires
// after it took over is refused with ErrMaster), and nothing is purged
// before the peer's complete copy is held (ErrIncomplete).
func (e *Engine) Purge(ctx context.Context) (int, error) {
	n := 0
	var err error
	derr := e.do(ctx, func() {
		switch {
		case e.role == proto.RoleMaster:
			err = ErrMaster
			return
		case !e.bulkComplete:
			// Against a partial copy, the master's flows would look stale.
			err = ErrIncomplete
			return
		}
		// What is queued for the kernel first: the dump must not find
		// a flow whose deletion is still queued, nor miss one whose
		// creation is.
		if err = e.settleWrites(ctx); err != nil {
			return
		}
		var stale []ct.Flow
		err = e.kern.Dump(ctx, func(f ct.Flow) bool {
			if !e.external.has(f.Key()) && e.flt.keep(&f) {
				stale = append(stale, f)
			}
			return true
		})
		if err != nil {
			return
		}
		for _, f := range stale {
			e.internal.del(f.Key()) // forgotten without telling the peer
		}
		res := e.write(ctx, e.wr.kern, kernel.Delete, stale)
		n = res.OK
	})
	return n, errors.Join(derr, err)
}

// SetRole tells the engine the node's role; keep-alives carry it.
func (e *Engine) SetRole(ctx context.Context, r proto.Role) error {
	return e.do(ctx, func() {
		e.role = r
		e.ep.SetRole(r)
		e.wr.mayPause.Store(r != proto.RoleMaster)
		if r == proto.RoleMaster {
			e.bulkAsked = time.Time{} // a master awaits no copy of the peer's
		}
	})
}

// Status is the engine's state for `ctha status`.
type Status struct {
	PeerUp, BulkComplete, SplitBrain bool
	PeerRole                         proto.Role
	// BulkReceived: entries of the peer's copy under way, or else of its
	// last complete one; BulkExpected: how many it announced (0: unknown).
	BulkReceived, BulkExpected     int
	Internal, External             int
	ExpectInternal, ExpectExternal int // expectations
	LastCommit                     *CommitResult
	Link                           string // the active link
	Interface                      string // the active link's
	Links                          []LinkStatus
}

func (e *Engine) publish(now time.Time) {
	s := Status{
		PeerUp: e.ep.PeerUp(now), BulkComplete: e.bulkComplete, PeerRole: e.ep.PeerRole(),
		BulkReceived: e.bulkReceived, BulkExpected: e.bulkExpected,
		Internal: e.internal.len(), External: e.external.len(), LastCommit: e.lastCommit,
		ExpectInternal: len(e.exp.internal), ExpectExternal: len(e.exp.external),
		Links: e.linkStatus(now),
	}
	if e.bulkSeen != nil {
		s.BulkReceived = len(e.bulkSeen)
	}
	active := e.ls.links[e.ls.active].cfg
	s.Link, s.Interface = active.Name, active.Interface
	// Both masters for a moment is a normal preemption: the old master
	// steps down when it hears the new one's advert, and its keep-alives
	// say so a little later. Longer than splitGrace is a split brain.
	if s.PeerUp && e.role == proto.RoleMaster && s.PeerRole == proto.RoleMaster {
		if e.splitSince.IsZero() {
			e.splitSince = now
		}
		s.SplitBrain = now.Sub(e.splitSince) >= splitGrace
	} else {
		e.splitSince = time.Time{}
	}
	if s.SplitBrain && !e.status.SplitBrain {
		e.stats.splitBrains.Add(1)
		e.log.Error("split brain: the peer is master too")
	}
	e.statusMu.Lock()
	old := e.status
	e.status = s
	e.statusMu.Unlock()
	if s.PeerUp != old.PeerUp || s.BulkComplete != old.BulkComplete || s.SplitBrain != old.SplitBrain || s.PeerRole != old.PeerRole {
		select {
		case e.changed <- struct{}{}:
		default:
		}
	}
}

// Changed is signalled when the peer's reachability or role, the
// completeness of its copy or a split brain change (Status): whoever acts
// on those waits on it instead of polling. One signal stands for any
// number of changes; read Status after it.
func (e *Engine) Changed() <-chan struct{} { return e.changed }

// Status returns the engine's last published state.
func (e *Engine) Status() Status {
	e.statusMu.Lock()
	defer e.statusMu.Unlock()
	return e.status
}

// counters are the engine's statistics.
type counters struct {
	datagramsIn, datagramsOut, sendErrors atomic.Uint64
	records, events, overruns, resyncs    atomic.Uint64
	kernelWrites, kernelFailures, commits atomic.Uint64
	bulksSent, bulksReceived, splitBrains atomic.Uint64
	bulkRetries                           atomic.Uint64
	expired                               atomic.Uint64 // alarm mode
	mu                                    sync.Mutex
	drops                                 map[string]uint64
}

func (c *counters) drop(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.drops == nil {
		c.drops = map[string]uint64{}
	}
	c.drops[reason]++
}

// dropErr counts a datagram rejected by the envelope or the replay guard.
func (c *counters) dropErr(err error) {
	for _, m := range []struct {
		err    error
		reason string
	}{
		{auth.ErrMAC, "auth"}, {auth.ErrReplay, "replay"}, {auth.ErrReflected, "reflected"},
		{auth.ErrShort, "short"}, {auth.ErrVersion, "version"},
	} {
		if errors.Is(err, m.err) {
			c.drop(m.reason)
			return
		}
	}
	c.drop("other")
}

// Stats are the engine's counters, for `ctha stats`.
type Stats struct {
	DatagramsIn    uint64            `json:"datagrams_in"`
	DatagramsOut   uint64            `json:"datagrams_out"`
	SendErrors     uint64            `json:"send_errors"`
	Records        uint64            `json:"records_applied"`
	Events         uint64            `json:"kernel_events"`
	Overruns       uint64            `json:"netlink_overruns"`
	Resyncs        uint64            `json:"resyncs"`
	KernelWrites   uint64            `json:"kernel_writes"`
	KernelFailures uint64            `json:"kernel_write_failures"`
	Commits        uint64            `json:"commits"`
	BulksSent      uint64            `json:"bulks_sent"`
	BulksReceived  uint64            `json:"bulks_received"`
	BulksStale     uint64            `json:"bulks_stale"`  // the peer's copies begun for an earlier run of this node, discarded
	BulkRetries    uint64            `json:"bulk_retries"` // copies asked for or begun again after one was abandoned
	SplitBrains    uint64            `json:"split_brains"`
	LinkSwitches   uint64            `json:"link_switches"`
	Expired        uint64            `json:"expired"` // alarm mode: peer states not refreshed in time
	Drops          map[string]uint64 `json:"drops"`
	// Filtered counts the flow events not replicated, by reason; the
	// kernel drops most before they are read (see filter.kernelFilter).
	Filtered map[string]uint64 `json:"filtered"`
	Protocol ProtocolStats     `json:"protocol"`
}

// ProtocolStats are the reliable protocol's counters (proto.Stats).
type ProtocolStats struct {
	DataSent       uint64 `json:"messages_sent"` // data and bulk messages, first sends
	Resent         uint64 `json:"resent"`        // messages sent again (NACKed or timed out)
	AcksSent       uint64 `json:"acks_sent"`
	NacksSent      uint64 `json:"nacks_sent"` // rounds of NACKs
	KeepalivesSent uint64 `json:"keepalives_sent"`
	Delivered      uint64 `json:"delivered"`     // messages delivered in order
	Duplicates     uint64 `json:"duplicates"`    // messages received twice
	OutOfWindow    uint64 `json:"out_of_window"` // messages too far ahead to buffer
	Jumps          uint64 `json:"jumps"`         // the peer gave up resending: a bulk copy follows
	GaveUp         uint64 `json:"gave_up"`       // this node gave up on what it owed the peer
	Malformed      uint64 `json:"malformed"`     // payloads that did not parse
}

func protocolStats(p proto.Stats) ProtocolStats {
	return ProtocolStats{DataSent: p.DataSent, Resent: p.Resent, AcksSent: p.AcksSent, NacksSent: p.NacksSent,
		KeepalivesSent: p.KeepalivesSent, Delivered: p.Delivered, Duplicates: p.Duplicates,
		OutOfWindow: p.OutOfWindow, Jumps: p.Jumps, GaveUp: p.GaveUp, Malformed: p.Malformed}
}

// Stats returns the counters.
func (e *Engine) Stats(ctx context.Context) Stats {
	c := &e.stats
	s := Stats{
		DatagramsIn: c.datagramsIn.Load(), DatagramsOut: c.datagramsOut.Load(), SendErrors: c.sendErrors.Load(),
		Records: c.records.Load(), Events: c.events.Load(), Overruns: c.overruns.Load(), Resyncs: c.resyncs.Load(),
		KernelWrites: c.kernelWrites.Load(), KernelFailures: c.kernelFailures.Load(), Commits: c.commits.Load(),
		BulksSent: c.bulksSent.Load(), BulksReceived: c.bulksReceived.Load(), SplitBrains: c.splitBrains.Load(),
		BulkRetries:  c.bulkRetries.Load(),
		LinkSwitches: e.ls.switches.Load(), Expired: c.expired.Load(),
		Drops: map[string]uint64{}, Filtered: e.flt.counts(),
	}
	c.mu.Lock()
	for k, v := range c.drops {
		s.Drops[k] = v
	}
	c.mu.Unlock()
	for _, r := range []string{"auth", "replay", "reflected", "short", "version", "oversize", "unknown_source", "malformed", "bad_record"} {
		s.Drops[r] += 0
	}
	var p proto.Stats
	e.do(ctx, func() { p = e.ep.Stats() })
	s.Protocol, s.BulksStale = protocolStats(p), p.BulksStale
	return s
}
