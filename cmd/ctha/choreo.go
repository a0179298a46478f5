package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ctha/ctha/cfg"
	"github.com/ctha/ctha/ctsync"
	"github.com/ctha/ctha/ctsync/proto"
	"github.com/ctha/ctha/internal/control"
	"github.com/ctha/ctha/vrrp"
)

// choreographer is the failover choreography of ctha.md: the VRRP hooks of
// the sync group that drives conntrack, wired to the sync engine. Its
// BeforeMaster runs synchronously before any advert or VIP; everything
// after a transition runs, in order, on its own goroutine, so it never
// delays adverts.
type choreographer struct {
	log    *slog.Logger
	group  cfg.SyncGroup // the group with conntrack = true
	sync   cfg.Sync
	eng    *ctsync.Engine
	notify atomic.Pointer[cfg.Notify] // replaced on reload

	mu     sync.Mutex    // guards the fields below
	commit chan struct{} // closed when the takeover's commit is done; nil: none
	purge  *time.Timer

	work chan transition
}

type transition struct {
	from, to vrrp.State
	reason   vrrp.Reason
}

func newChoreographer(log *slog.Logger, g cfg.SyncGroup, s cfg.Sync, eng *ctsync.Engine) *choreographer {
	c := &choreographer{log: log.With("group", g.Name), group: g, sync: s, eng: eng,
		work: make(chan transition, 16)}
	c.setNotify(g.Notify)
	return c
}

// BeforeMaster makes the kernel table complete before the VIPs move:
// direct mode applies what has arrived; external mode commits the external
// cache, most recently active first, for at most commit_timeout (the
// commit goes on after that; the VIPs do not wait longer).
func (c *choreographer) BeforeMaster(ctx context.Context, _ string) error {
	if c.eng == nil {
		return nil // a group without conntrack: only notify commands
	}
	c.cancelPurge()
	start := time.Now()
	if c.sync.Cache == cfg.CacheDirect {
		err := c.eng.Settle(ctx)
		c.log.Info("kernel table complete", "took", time.Since(start), "cache", "direct")
		return err
	}
	done := make(chan struct{})
	c.mu.Lock()
	c.commit = done
	c.mu.Unlock()
	go func() {
		defer close(done)
		res, err := c.eng.Commit(context.Background())
		c.log.Info("external cache committed", "entries", res.Entries, "failed", res.Failed, "took", res.Took, "err", err)
	}()
	select {
	case <-done:
		c.log.Info("kernel table complete", "took", time.Since(start), "cache", "external")
	case <-time.After(c.sync.CommitTimeout):
		c.log.Warn("commit still running at commit_timeout; taking over anyway", "took", time.Since(start))
	case <-ctx.Done():
		return ctx.Err() // a better master: the commit goes on, harmless
	}
	return nil
}

// Transitioned queues the work after a transition; it never blocks.
func (c *choreographer) Transitioned(_ string, from, to vrrp.State, reason vrrp.Reason) {
	select {
	case c.work <- transition{from, to, reason}:
	default:
		c.log.Error("transition work queue full; dropping", "to", to)
	}
}

// run does the work after transitions, in order, until ctx is done.
func (c *choreographer) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			c.cancelPurge()
			return
		case t := <-c.work:
			c.after(ctx, t)
		}
	}
}

func (c *choreographer) after(ctx context.Context, t transition) {
	if c.eng == nil {
		c.runNotify(ctx, t)
		return
	}
	switch t.to {
	case vrrp.Master:
		c.eng.SetRole(ctx, proto.RoleMaster)
		c.mu.Lock()
		commit := c.commit
		c.commit = nil
		c.mu.Unlock()
		if commit != nil {
			<-commit // step 3: only when the commit is done...
		}
		if err := c.eng.TakeOver(ctx); err != nil { // ...flush, resync, bulk
			c.log.Error("taking over the conntrack tables failed", "err", err)
		}
		c.runNotify(ctx, t)
	case vrrp.Backup, vrrp.Fault:
		c.eng.SetRole(ctx, proto.RoleBackup)
		// A node that just started needs no request of its own: the
		// protocol asks for the peer's copy when it first hears it, and
		// a second request must not cost a second copy.
		if t.from != vrrp.Init {
			if err := c.eng.Request(ctx); err != nil {
				c.log.Warn("requesting the master's table failed", "err", err)
			}
		}
		if c.sync.Cache == cfg.CacheExternal {
			c.schedulePurge(ctx)
		}
		c.runNotify(ctx, t)
	}
}

// schedulePurge deletes, after purge_delay, the kernel states the master
// does not hold; becoming master cancels it.
func (c *choreographer) schedulePurge(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.purge != nil {
		c.purge.Stop()
	}
	c.purge = time.AfterFunc(c.sync.PurgeDelay, func() {
		n, err := c.eng.Purge(ctx)
		switch {
		case errors.Is(err, ctsync.ErrMaster):
			c.log.Info("scheduled purge skipped: this node is master now")
		case errors.Is(err, ctsync.ErrIncomplete):
			c.log.Warn("scheduled purge skipped: the master's complete copy has not arrived")
		case err != nil:
			c.log.Error("purging kernel states the master does not hold failed", "entries", n, "err", err)
		default:
			c.log.Info("purged kernel states the master does not hold", "entries", n)
		}
	})
}

func (c *choreographer) cancelPurge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.purge != nil {
		c.purge.Stop()
		c.purge = nil
	}
}

// setNotify replaces the notify commands (on a reload); the next
// transition runs the new ones.
func (c *choreographer) setNotify(n cfg.Notify) { c.notify.Store(&n) }

// runNotify runs the user's commands for the new state in order, each
// bounded by the timeout; failures are logged.
func (c *choreographer) runNotify(ctx context.Context, t transition) {
	n := c.notify.Load()
	cmds := map[vrrp.State][]string{vrrp.Master: n.Master, vrrp.Backup: n.Backup, vrrp.Fault: n.Fault}[t.to]
	for _, path := range cmds {
		cctx, cancel := context.WithTimeout(ctx, n.Timeout)
		cmd := exec.CommandContext(cctx, path)
		cmd.Env = append(os.Environ(), "CTHA_GROUP="+c.group.Name, "CTHA_STATE="+t.to.String(),
			"CTHA_REASON="+t.reason.String(), "CTHA_INSTANCES="+strings.Join(c.group.Instances, " "))
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = time.Second
		start := time.Now()
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			c.log.Error("notify command failed", "command", path, "state", t.to, "err", err, "output", strings.TrimSpace(string(out)), "took", time.Since(start))
			continue
		}
		c.log.Info("notify command ran", "command", path, "state", t.to, "took", time.Since(start))
	}
}

// watchSync lifts the startup deferral once the peer's copy is complete
// (or startup_sync_timeout passes), and demotes the group while the peer
// cannot be reached.
func (c *choreographer) watchSync(ctx context.Context, r *vrrp.Runner) {
	start := time.Now()
	deferred, demoted := true, false
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		st := c.eng.Status()
		if deferred && (st.BulkComplete || time.Since(start) >= c.sync.StartupSyncTimeout) {
			deferred = false
			reason := "bulk copy complete"
			if !st.BulkComplete {
				reason = "startup_sync_timeout"
			}
			c.log.Info("preemption allowed", "reason", reason, "took", time.Since(start),
				"copy_received", st.BulkReceived, "copy_expected", st.BulkExpected)
			r.SetDeferred(ctx, c.group.Name, false)
		}
		// The peer gets a grace period at start before its absence counts.
		down := !st.PeerUp && time.Since(start) > 3*time.Second
		if down != demoted {
			demoted = down
			adjust := 0
			if down {
				adjust = vrrp.DemoteSyncDown
				c.log.Warn("sync peer unreachable: demoted, not FAULT", "priority_adjust", adjust)
			} else {
				c.log.Info("sync peer back: demotion lifted")
			}
			r.Demote(ctx, c.group.Name, "sync peer unreachable", adjust)
		}
	}
}

// failover is `ctha failover`: drain the sync queue, resign, and stay
// demoted until cancelled.
func (c *choreographer) failover(ctx context.Context, r *vrrp.Runner, cancel bool) (string, error) {
	if cancel {
		return "demotion lifted", r.Demote(ctx, c.group.Name, "failover", 0)
	}
	dctx, stop := context.WithTimeout(ctx, 5*time.Second)
	drained := c.eng.Drain(dctx)
	stop()
	if err := r.Demote(ctx, c.group.Name, "failover", vrrp.DemoteFailover); err != nil {
		return "", err
	}
	was, err := r.Resign(ctx, c.group.Name)
	if err != nil {
		return "", err
	}
	msg := fmt.Sprintf("group %s resigned; demoted until `ctha failover --cancel`", c.group.Name)
	if !was {
		msg = fmt.Sprintf("group %s was not master; demoted until `ctha failover --cancel`", c.group.Name)
	}
	if !drained {
		msg += " (the peer had not acknowledged every state within 5s)"
	}
	return msg, nil
}

func ptrOr(s *cfg.Sync) cfg.Sync {
	if s == nil {
		return cfg.Sync{}
	}
	return *s
}

// conntrackGroup returns the choreographer of the group that drives
// conntrack, if any.
func (d *daemonState) conntrackGroup() *choreographer {
	for _, c := range d.choreo {
		if c.eng != nil {
			return c
		}
	}
	return nil
}

// drainBeforeStop: a master hands over with a complete table: the peer
// acknowledges every state it is owed before the priority-0 advert.
func (d *daemonState) drainBeforeStop() {
	c := d.conntrackGroup()
	if c == nil || d.vrrp == nil {
		return
	}
	if st, _ := d.vrrp.GroupState(c.group.Name); st != vrrp.Master {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	drained := c.eng.Drain(ctx)
	d.log.Info("sync queue drained before resigning", "complete", drained, "took", time.Since(start))
}

// failoverArgs are the arguments of the "failover" operation.
type failoverArgs struct {
	Group  string `json:"group"`
	Cancel bool   `json:"cancel"`
}

func (d *daemonState) handleFailover(ctx context.Context, req control.Request) (any, error) {
	var a failoverArgs
	if len(req.Args) > 0 {
		if err := json.Unmarshal(req.Args, &a); err != nil {
			return nil, fmt.Errorf("failover: %w", err)
		}
	}
	if d.vrrp == nil {
		return nil, errors.New("failover: no VRRP instance is configured")
	}
	c := d.choreo[a.Group]
	if a.Group == "" {
		if c = d.conntrackGroup(); c == nil && len(d.choreo) == 1 {
			for _, only := range d.choreo {
				c = only
			}
		}
	}
	if c == nil {
		return nil, fmt.Errorf("failover: name a sync group (%s)", strings.Join(slices.Sorted(maps.Keys(d.choreo)), ", "))
	}
	if c.eng == nil {
		// A group without conntrack: nothing to drain.
		if a.Cancel {
			return "demotion lifted", d.vrrp.Demote(ctx, c.group.Name, "failover", 0)
		}
		if err := d.vrrp.Demote(ctx, c.group.Name, "failover", vrrp.DemoteFailover); err != nil {
			return nil, err
		}
		_, err := d.vrrp.Resign(ctx, c.group.Name)
		return fmt.Sprintf("group %s resigned; demoted until `ctha failover --cancel`", c.group.Name), err
	}
	return c.failover(ctx, d.vrrp, a.Cancel)
}

func (c *cli) failoverCmd(args []string) int {
	fs := c.flags("failover")
	cancelIt := fs.Bool("cancel", false, "lift the demotion: the node may take over again")
	socket := fs.String("s", cfg.DefaultSocket, "control `SOCKET` of the daemon")
	pos, code, ok := c.parseMixed(fs, args)
	if !ok {
		return code
	}
	if len(pos) > 1 {
		fmt.Fprintln(c.stderr, "Usage: ctha failover [--cancel] [-s SOCKET] [GROUP]")
		return exitUsage
	}
	group := ""
	if len(pos) == 1 {
		group = pos[0]
	}
	var msg string
	if err := control.Call(context.Background(), *socket, "failover", failoverArgs{Group: group, Cancel: *cancelIt}, &msg); err != nil {
		return c.failf("%v", err)
	}
	fmt.Fprintln(c.stdout, msg)
	return exitOK
}
