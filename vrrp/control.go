package vrrp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/ctha/ctha/internal/owner"
)

// ErrNoGroup is returned for a sync group that does not exist.
var ErrNoGroup = errors.New("no such sync group")

// Demotions: how much a reason lowers a group's priorities. The sizes are
// the same on every node, so a pair demoted for the same reason keeps its
// order (the sync link cut must not cause a failover).
const (
	// DemoteSyncDown: every sync link is down (never FAULT: unplugging the
	// sync cable must not take both nodes down).
	DemoteSyncDown = -50
	// DemoteFailover: `ctha failover`; the node stays the lowest until
	// the operator cancels.
	DemoteFailover = -254
)

// inGroup runs f on the named group's goroutine and waits for it.
func (r *Runner) inGroup(ctx context.Context, group string, f func(g *Group)) error {
	for _, g := range r.groups {
		if g.name != group || g.implicit {
			continue
		}
		err := owner.Do(ctx, g.ctl, g.done(), func() { f(g) })
		if err == owner.ErrStopped {
			return fmt.Errorf("sync group %s is stopped", group)
		}
		return err
	}
	return fmt.Errorf("%w %q", ErrNoGroup, group)
}

// SetDeferred holds a group's preemption back (a rejoining node waits for
// its bulk copy) or lets it go; a better node that has waited preempts at
// once.
func (r *Runner) SetDeferred(ctx context.Context, group string, deferred bool) error {
	return r.inGroup(ctx, group, func(g *Group) {
		g.dispatchAll(Event{Kind: EvDefer, Defer: deferred})
	})
}

// Demote lowers (adjust < 0) or restores (adjust 0) a group's priorities
// for a reason; status shows the reasons in force.
func (r *Runner) Demote(ctx context.Context, group, reason string, adjust int) error {
	return r.inGroup(ctx, group, func(g *Group) {
		if adjust == 0 {
			delete(g.demotions, reason)
		} else {
			g.demotions[reason] = adjust
		}
		g.demote = 0
		for _, a := range g.demotions {
			g.demote += a
		}
		g.demoted = strings.Join(slices.Sorted(maps.Keys(g.demotions)), ", ")
		g.reevaluate()
	})
}

// Resign makes a master group send priority-0 adverts and step down, so
// the peer takes over after its skew time. It reports whether the group
// was master.
func (r *Runner) Resign(ctx context.Context, group string) (bool, error) {
	was := false
	err := r.inGroup(ctx, group, func(g *Group) {
		was = g.state == Master
		g.dispatchAll(Event{Kind: EvResign})
	})
	return was, err
}

// GroupState returns a group's current state.
func (r *Runner) GroupState(group string) (State, bool) {
	r.box.mu.Lock()
	defer r.box.mu.Unlock()
	s, ok := r.box.groups[group]
	return s.State, ok
}
