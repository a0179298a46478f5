package vrrp

import (
	"context"
	"slices"
	"time"

	"github.com/ctha/ctha/internal/linkwatch"
	"github.com/ctha/ctha/internal/proc"
)

// Tracker names, by kind.
func linkTracker(iface string) string  { return "link:" + iface }
func scriptTracker(name string) string { return "script:" + name }

// linkUp reports whether a link is administratively up with carrier.

// initLinks reads the tracked links' state before the election starts, so
// an instance whose link is down starts in FAULT rather than flapping.
func (r *Runner) initLinks() {
	for _, name := range r.links {
		l, err := r.opts.Host.Link(name)
		up := err == nil && l.Up
		if err != nil {
			r.log.Warn("tracked interface not found; it counts as down", "iface", name, "err", err)
		}
		for _, g := range r.groups {
			for _, mb := range g.members {
				for _, t := range mb.trackers {
					if t.name == linkTracker(name) {
						t.up = up
					}
				}
			}
		}
	}
}

// startTrackers watches the tracked links and runs the track scripts until
// ctx is done.
func (r *Runner) startTrackers(ctx context.Context) {
	if len(r.links) > 0 {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.watchLinks(ctx)
		}()
	}
	r.startFileTrackers(ctx)
	r.startProcessTrackers(ctx)
	for _, s := range r.scripts {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			runScript(ctx, s, func(up bool) {
				r.log.Info("track script changed", "tracker", s.Name, "up", up)
				r.broadcast(ctx, trackUpdate{name: scriptTracker(s.Name), up: up})
			})
		}()
	}
}

// watchLinks follows carrier changes of the tracked links (the existing
// links first: a change between initLinks and the watch is not missed).
func (r *Runner) watchLinks(ctx context.Context) {
	last := map[string]linkwatch.Update{}
	err := r.opts.Host.Watch(ctx, func(u linkwatch.Update) {
		if !slices.Contains(r.links, u.Name) {
			return
		}
		if prev, seen := last[u.Name]; seen && prev.Up == u.Up && prev.Index == u.Index {
			return
		}
		last[u.Name] = u
		r.broadcast(ctx, trackUpdate{name: linkTracker(u.Name), up: u.Up, index: u.Index})
	}, func(err error) { r.log.Error("link watch failed", "err", err) })
	if err != nil {
		r.log.Error("cannot watch links; tracked interfaces keep their start state", "err", err)
	}
}

// runScript runs a track script every interval and reports its state after
// rise successes or fall failures in a row. It starts as up.
func runScript(ctx context.Context, s TrackScript, report func(up bool)) {
	up, succ, fail := true, 0, 0
	tick := time.NewTicker(s.Interval)
	defer tick.Stop()
	for {
		if runOnce(ctx, s) == nil {
			succ, fail = succ+1, 0
			if !up && succ >= s.Rise {
				up = true
				report(true)
			}
		} else if ctx.Err() == nil {
			succ, fail = 0, fail+1
			if up && fail >= s.Fall {
				up = false
				report(false)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// runOnce runs the script's command with its timeout; a script that
// overruns is killed with its whole process group. Its output is not
// kept.
func runOnce(ctx context.Context, s TrackScript) error {
	_, err := proc.Run(ctx, s.Command, nil, s.Timeout)
	return err
}
