// Package failover is ctha's failover choreography: what happens around a
// sync group's VRRP role change so that the node that holds the virtual
// IPs can forward every flow (the README's "Failover, in the right
// order"). The election (package vrrp) and the tables (package ctsync)
// know nothing of each other; a Group joins them through the small
// interfaces below, and cmd/ctha only wires.
//
// A Group is level-triggered. A transition does not queue work: it
// records the group's latest state, and one worker reconciles the tables
// to whatever that state is when it looks. However many transitions come
// meanwhile, none is lost and the tables end in the group's latest role;
// work for a role the group has already left (a takeover whose commit
// outlived the mastership) is abandoned. The notify commands, the
// instances' and then the group's (notify.go), follow the tables the same
// way, on a goroutine of their own, so a hanging command never holds up
// the tables, the adverts or the virtual IPs.
//
// Three policies: a group that drives conntrack (Tables, primary-backup),
// a group of a multiprimary node (Roles: the engine is only told the
// group's role; multiprimary.go) and a group that only runs notify
// commands (NewInstance: those of an instance in no sync group). Every goroutine a Group starts is waited for by Run before it
// returns.
package failover

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/ctha/ctha/ctsync"
	"github.com/ctha/ctha/vrrp"
)

// Election is what a Group needs of the VRRP runner (vrrp.Runner).
type Election interface {
	GroupState(group string) (vrrp.State, bool)
	// SetDeferred holds the group's preemption back or lets it go.
	SetDeferred(ctx context.Context, group string, deferred bool) error
	// Demote lowers the group's priorities by adjust for reason (0 lifts
	// that demotion).
	Demote(ctx context.Context, group, reason string, adjust int) error
	// Resign makes a master step down at once (a priority-0 advert);
	// it reports whether the group was master.
	Resign(ctx context.Context, group string) (bool, error)
}

// Tables is what a Group needs of the conntrack sync engine
// (ctsync.Engine).
type Tables interface {
	// Settle applies what the peer has sent (direct mode).
	Settle(ctx context.Context) error
	// Commit writes the external cache into the kernel (external mode).
	Commit(ctx context.Context) (ctsync.CommitResult, error)
	// TakeOver adopts the peer's states as this node's and sends the peer
	// a complete copy.
	TakeOver(ctx context.Context) error
	SetRole(ctx context.Context, r ctsync.Role) error
	// Request asks the peer for a complete copy of its table.
	Request(ctx context.Context) error
	// Purge deletes the kernel states the master does not hold.
	Purge(ctx context.Context) (int, error)
	// Drain waits until the peer has acknowledged everything owed.
	Drain(ctx context.Context) bool
	Status() ctsync.Status
	// Changed is signalled when the peer's reachability, its role, the
	// completeness of its copy or a split brain change (Status).
	Changed() <-chan struct{}
}

// peerWatch is what watchSync follows of the engine: the peer's
// reachability and the completeness of its copy, pushed (Changed).
type peerWatch interface {
	Status() ctsync.Status
	Changed() <-chan struct{}
}

// syncEngine is what both kinds of groups that follow the engine (Tables,
// Roles) offer: the peer's state, and draining what is owed to it.
type syncEngine interface {
	peerWatch
	Drain(ctx context.Context) bool
}

// Config is a Group's configuration.
type Config struct {
	Group     string // "" for a lone instance's (NewInstance)
	Instances []string
	Notify    Notify
	// InstanceNotify holds the instances' own notify commands, by name.
	InstanceNotify map[string]Notify
	// For a group that drives conntrack (StartupSyncTimeout: and for a
	// multiprimary group):
	External           bool          // cache = "external": commit before the VIPs, purge as backup
	CommitTimeout      time.Duration // longest the VIPs wait for the commit
	PurgeDelay         time.Duration
	StartupSyncTimeout time.Duration // longest preemption waits for the peer's copy
}

// target is the state the group was last seen in: what the tables and
// the notify commands follow.
type target struct {
	state  vrrp.State
	reason vrrp.Reason
	seq    uint64 // transitions so far; 0: none yet (INIT)
}

// Group is the failover choreography of one sync group; it is the group's
// vrrp.Hooks.
type Group struct {
	cfg    Config
	log    *slog.Logger
	tables Tables // nil: a group that does not drive conntrack
	roles  Roles  // nil: a group of a primary-backup node (or without sync)
	notes  *notifier
	kick   chan struct{} // the tables worker has something to look at

	mu       sync.Mutex
	want     target
	pending  []vrrp.InstanceTransition // moves of the step whose transition comes next
	purgeDue time.Time                 // zero: no purge scheduled
	commit   chan struct{}             // closed when BeforeMaster's commit is done; nil: none

	work sync.WaitGroup // commits started by BeforeMaster
	// The clock and the bridge's timers (sync.go); tests shorten them.
	now                  func() time.Time
	grace, retryElection time.Duration
}

// New returns the choreography of a group that only runs notify commands.
func New(log *slog.Logger, c Config) *Group {
	return newGroup(log, c)
}

// NewInstance returns what runs the notify commands of an instance that
// is in no sync group: a Group without a group of its own.
func NewInstance(log *slog.Logger, instance string, n Notify) *Group {
	return newGroup(log, Config{Instances: []string{instance}, InstanceNotify: map[string]Notify{instance: n}})
}

// NewConntrack returns the choreography of the group whose role drives
// conntrack replication.
func NewConntrack(log *slog.Logger, c Config, t Tables) *Group {
	g := newGroup(log, c)
	g.tables = t
	return g
}

func newGroup(log *slog.Logger, c Config) *Group {
	if c.Group != "" {
		log = log.With("group", c.Group)
	}
	g := &Group{cfg: c, log: log, kick: make(chan struct{}, 1), now: time.Now,
		grace: peerGrace, retryElection: retryElection}
	g.notes = newNotifier(log, c)
	return g
}

// Conntrack reports whether the group drives conntrack.
func (g *Group) Conntrack() bool { return g.tables != nil }

// Multiprimary reports whether the group is one of a multiprimary node's.
func (g *Group) Multiprimary() bool { return g.roles != nil }

// WatchesSync reports whether the group's preemption waits for the
// peer's copy at start (the election must start it deferred) and the
// group is demoted while the peer is unreachable.
func (g *Group) WatchesSync() bool { return g.engine() != nil }

// engine is the sync engine the group follows (watchSync) and drains
// (Failover, DrainBeforeStop); nil for a group that only runs notify
// commands.
func (g *Group) engine() syncEngine {
	switch {
	case g.tables != nil:
		return g.tables
	case g.roles != nil:
		return g.roles
	}
	return nil
}

// Name is the group's name.
func (g *Group) Name() string { return g.cfg.Group }

// SetNotify replaces the notify commands of the group and of its
// instances (a reload); the next state the commands run for uses the new
// ones.
func (g *Group) SetNotify(n Notify, instances map[string]Notify) { g.notes.setCommands(n, instances) }

// SetTimers replaces the group's commit_timeout and purge_delay (a
// reload): the next takeover and the next purge scheduled use them.
func (g *Group) SetTimers(commitTimeout, purgeDelay time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cfg.CommitTimeout, g.cfg.PurgeDelay = commitTimeout, purgeDelay
}

// NotifyStop runs the stop commands, the instances' then the group's,
// each bounded by its timeout. Call it once Run has returned: the
// election is over and the virtual IPs are gone.
func (g *Group) NotifyStop(ctx context.Context) { g.notes.stop(ctx) }

// NotifySkipped is how many transitions, the group's and its
// instances', the notify commands never ran for: the group (the
// instance) had moved on before the previous command finished.
func (g *Group) NotifySkipped() uint64 { return g.notes.skipped.Load() }

// Transitioned records the group's new state; it never blocks and never
// drops a transition: the latest state is what the workers follow.
func (g *Group) Transitioned(_ string, _, to vrrp.State, reason vrrp.Reason) {
	g.mu.Lock()
	g.want = target{state: to, reason: reason, seq: g.want.seq + 1}
	if to == vrrp.Master {
		g.purgeDue = time.Time{}
	}
	moves := g.pending
	g.pending = nil
	if len(moves) > 0 {
		// The instances' commands of this step wait for its tables.
		g.notes.moved(moves, g.want.seq)
	}
	g.mu.Unlock()
	signal(g.kick)
}

// InstancesTransitioned records the instances' moves (vrrp.InstanceHooks);
// their notify commands run once the group's tables are done for the
// step they moved in, before the group's. It never blocks.
func (g *Group) InstancesTransitioned(moves []vrrp.InstanceTransition, groupMoves bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if groupMoves && g.cfg.Group != "" {
		g.pending = append(g.pending, moves...) // Transitioned comes next
		return
	}
	g.notes.moved(append(g.pending, moves...), g.want.seq)
	g.pending = nil
}

func (g *Group) target() target {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.want
}

// BeforeMaster makes the kernel table complete before the VIPs move:
// direct mode applies what has arrived; external mode commits the
// external cache for at most commit_timeout (the commit goes on after
// that; the VIPs do not wait longer). A scheduled purge is cancelled.
func (g *Group) BeforeMaster(ctx context.Context, _ string) error {
	if g.roles != nil {
		return g.settleRoles(ctx)
	}
	if g.tables == nil {
		return nil
	}
	g.mu.Lock()
	g.purgeDue = time.Time{}
	g.mu.Unlock()
	start := g.now()
	if !g.cfg.External {
		err := g.tables.Settle(ctx)
		g.log.Info("kernel table complete", "took", time.Since(start), "cache", "direct")
		return err
	}
	done := make(chan struct{})
	g.mu.Lock()
	g.commit = done
	commitTimeout := g.cfg.CommitTimeout
	g.mu.Unlock()
	g.work.Add(1)
	go func() {
		defer g.work.Done()
		defer close(done)
		// Not ctx: a commit cut short would leave a partial table. It is
		// bounded by the kernel's speed and the cache's size.
		res, err := g.tables.Commit(context.Background())
		g.log.Info("external cache committed", "entries", res.Entries, "failed", res.Failed, "took", res.Took, "err", err)
	}()
	timeout := time.NewTimer(commitTimeout)
	defer timeout.Stop()
	select {
	case <-done:
		g.log.Info("kernel table complete", "took", time.Since(start), "cache", "external")
	case <-timeout.C:
		g.log.Warn("commit still running at commit_timeout; taking over anyway", "took", time.Since(start))
	case <-ctx.Done():
		return ctx.Err() // a better master: the commit goes on, harmless
	}
	return nil
}

// Run reconciles the tables (a multiprimary group: the engine's record
// of its role) and the notify commands with the group's state until ctx
// is done; with an election, a conntrack or multiprimary group also lifts
// its startup deferral and demotes itself while the peer is unreachable
// (watchSync). It returns once every goroutine it started has ended.
func (g *Group) Run(ctx context.Context, el Election) {
	var wg sync.WaitGroup
	wg.Go(func() { g.notes.run(ctx) })
	if w := g.engine(); w != nil && el != nil {
		wg.Go(func() { g.watchSync(ctx, el, w) })
	}
	if g.roles != nil {
		g.reconcileRoles(ctx)
	} else {
		g.reconcile(ctx)
	}
	wg.Wait()
	g.work.Wait()
}

// reconcile is the tables worker.
func (g *Group) reconcile(ctx context.Context) {
	var applied target
	purge := time.NewTimer(time.Hour)
	purge.Stop()
	defer purge.Stop()
	for ctx.Err() == nil {
		if t := g.target(); t.seq != applied.seq {
			if g.apply(ctx, t) {
				applied = t
				g.notes.follow(t)
			}
			continue
		}
		g.mu.Lock()
		due := g.purgeDue
		g.mu.Unlock()
		if !due.IsZero() {
			purge.Reset(max(due.Sub(g.now()), 0))
		}
		select {
		case <-ctx.Done():
		case <-g.kick:
		case <-purge.C:
			g.purgeIfDue(ctx, applied)
		}
		purge.Stop()
	}
}

// apply makes the tables follow t. It reports false when the group left
// t before the work was done (or ctx ended): the caller looks again.
func (g *Group) apply(ctx context.Context, t target) bool {
	if g.tables == nil {
		return true
	}
	switch t.state {
	case vrrp.Master:
		check(g.log, "setting the sync role", g.tables.SetRole(ctx, ctsync.RoleMaster))
		g.mu.Lock()
		commit := g.commit
		g.commit = nil
		g.mu.Unlock()
		// Step 3: adopt the flows only once the commit is done, and only
		// while the group is still master.
		if commit != nil && !g.await(ctx, commit, t) {
			if now := g.target(); now.state != vrrp.Master {
				g.log.Info("takeover abandoned: the group left MASTER during the commit", "now", now.state)
			}
			return false
		}
		if g.target().seq != t.seq {
			return false
		}
		check(g.log, "taking over the conntrack tables", g.tables.TakeOver(ctx))
	case vrrp.Backup, vrrp.Fault:
		check(g.log, "setting the sync role", g.tables.SetRole(ctx, ctsync.RoleBackup))
		// A node that has just started needs no request of its own: the
		// protocol asks for the peer's copy when it first hears it, and
		// one copy is enough.
		if t.seq > 1 || t.reason != vrrp.ReasonStartup {
			check(g.log, "requesting the master's table", g.tables.Request(ctx))
		}
		if g.cfg.External {
			g.mu.Lock()
			if g.want.seq == t.seq {
				g.purgeDue = g.now().Add(g.cfg.PurgeDelay)
			}
			g.mu.Unlock()
		}
	}
	return ctx.Err() == nil
}

// await waits for the commit to end; it reports false if the group left
// t meanwhile (the commit goes on, owned by Run) or ctx ended.
func (g *Group) await(ctx context.Context, commit chan struct{}, t target) bool {
	for {
		select {
		case <-commit:
			return true
		case <-ctx.Done():
			return false
		case <-g.kick:
			if g.target().seq != t.seq {
				signal(g.kick) // for reconcile's next look
				return false
			}
		}
	}
}

// purgeIfDue runs the scheduled purge if it is still due: the group is
// backup (or in fault) and nothing cancelled it.
func (g *Group) purgeIfDue(ctx context.Context, applied target) {
	g.mu.Lock()
	due := g.purgeDue
	if due.IsZero() || g.now().Before(due) || g.want.seq != applied.seq || applied.state == vrrp.Master {
		g.mu.Unlock()
		return
	}
	g.purgeDue = time.Time{}
	g.mu.Unlock()
	n, err := g.tables.Purge(ctx)
	switch {
	case err == nil:
		g.log.Info("purged kernel states the master does not hold", "entries", n)
	case ctx.Err() != nil:
	default:
		// ErrMaster, ErrIncomplete: the engine's own guards.
		g.log.Warn("scheduled purge not done", "entries", n, "err", err)
	}
}

// check logs a failed step of the choreography; the next transition or
// the engines' own periodic work makes it good.
func check(log *slog.Logger, what string, err error) {
	if err != nil && !isStopped(err) {
		log.Error(what+" failed", "err", err)
	}
}

func isStopped(err error) bool {
	return err == context.Canceled || err == ctsync.ErrStopped
}

// signal wakes whoever waits on c (a channel of capacity 1) without
// blocking: one pending signal stands for any number.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
