package failover

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/ctha/ctha/ctsync"
	"github.com/ctha/ctha/vrrp"
)

// A multiprimary node forwards its own flows in every group and
// replicates them to its peer, whose flows go straight into its kernel:
// no group's role drives the tables, so there is nothing to commit, take
// over, request or purge. What a role change still needs of the engine:
//   - the engine is told the group's role (SetGroupRole): the node
//     announces the groups it is master of, and the engine reports a
//     group both nodes claim (Status.SplitGroups). The worker keeps the
//     engine at the group's latest role, level-triggered: a call that
//     fails is made again, and a role the group has left is never sent;
//   - before the VIPs move, what the peer has sent is applied (Settle),
//     as for the conntrack group of the direct cache;
//   - as for the conntrack group, the group's preemption waits at start
//     for the peer's copy, and the group is demoted while the peer is
//     unreachable (watchSync);
//   - the notify commands run as for any group.

// Roles is what a group of a multiprimary node needs of the conntrack
// sync engine (ctsync.Engine). Several groups share one engine: give each
// its own view with a Fanout.
type Roles interface {
	// SetGroupRole tells the engine this node's role in the group.
	SetGroupRole(ctx context.Context, group string, r ctsync.Role) error
	// Settle applies what the peer has sent.
	Settle(ctx context.Context) error
	// Drain waits until the peer has acknowledged everything owed.
	Drain(ctx context.Context) bool
	Status() ctsync.Status
	// Changed is signalled when the peer's reachability, the completeness
	// of its copy or a split brain change (Status).
	Changed() <-chan struct{}
}

// NewMultiprimary returns the choreography of one sync group of a
// multiprimary node. c's StartupSyncTimeout bounds how long its
// preemption waits for the peer's copy at start; its conntrack settings
// are not used.
func NewMultiprimary(log *slog.Logger, c Config, r Roles) *Group {
	g := newGroup(log, c)
	g.roles = r
	return g
}

// roleOf is the engine's name for a group state: anything but MASTER is
// not master.
func roleOf(s vrrp.State) ctsync.Role {
	if s == vrrp.Master {
		return ctsync.RoleMaster
	}
	return ctsync.RoleBackup
}

// settleRoles is a multiprimary group's BeforeMaster: the kernel gets
// what the peer has already sent before the VIPs move.
func (g *Group) settleRoles(ctx context.Context) error {
	start := g.now()
	err := g.roles.Settle(ctx)
	g.log.Info("kernel table complete", "took", g.now().Sub(start), "cache", "direct")
	return err
}

// reconcileRoles is a multiprimary group's worker: it keeps the engine at
// the group's latest role, and the notify commands follow each state once
// the engine has been told (or the telling failed: a broken engine must
// not hold the hooks back; the call is made again meanwhile).
func (g *Group) reconcileRoles(ctx context.Context) {
	var (
		told    ctsync.Role // the role the engine has; RoleUnknown: none told yet
		applied target      // the state the notify commands follow
	)
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for ctx.Err() == nil {
		t := g.target()
		if want := roleOf(t.state); t.seq > 0 && want != told {
			if err := g.roles.SetGroupRole(ctx, g.cfg.Group, want); err != nil {
				check(g.log, "telling the sync engine the group's role", err)
				retry.Reset(g.retryElection)
			} else {
				told = want
				g.log.Debug("sync engine told the group's role", "role", want)
			}
		}
		if t.seq != applied.seq {
			applied = t
			g.notes.follow(t)
		}
		select {
		case <-ctx.Done():
		case <-g.kick:
		case <-retry.C:
		}
	}
}

// Fanout shares one engine among the groups of a multiprimary node. The
// engine has one Changed channel, and a signal that one group's watcher
// takes would be lost to the others; Fanout gives each group a view of
// the engine with a Changed channel of its own (Roles), signalled on
// every change the engine signals while Run runs.
type Fanout struct {
	src Roles

	mu   sync.Mutex
	subs []chan struct{}
}

// NewFanout returns a Fanout of engine e.
func NewFanout(e Roles) *Fanout { return &Fanout{src: e} }

// Roles returns a view of the engine for one group.
func (f *Fanout) Roles() Roles {
	ch := make(chan struct{}, 1)
	f.mu.Lock()
	f.subs = append(f.subs, ch)
	f.mu.Unlock()
	return fanned{Roles: f.src, changed: ch}
}

// Run relays the engine's signals to every view until ctx is done.
func (f *Fanout) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.src.Changed():
			f.mu.Lock()
			for _, c := range f.subs {
				signal(c)
			}
			f.mu.Unlock()
		}
	}
}

// fanned is one group's view of a shared engine.
type fanned struct {
	Roles
	changed chan struct{}
}

func (f fanned) Changed() <-chan struct{} { return f.changed }
