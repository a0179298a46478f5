package vrrp

import (
	"context"
	"slices"
	"time"

	"github.com/ctha/ctha/internal/linkwatch"
)

// vipCheckEvery: the VIPs are checked against the kernel at least this
// often, besides every address change the kernel reports (an rtnetlink
// message lost to a full socket buffer must not leave a master without
// its VIPs for good).
const vipCheckEvery = 5 * time.Second

// reconcileVIPs makes the kernel hold what each member should: a master's
// VIPs that someone else removed (`ip addr del`, a networkd or ifupdown
// restart) are put back and announced at once; VIPs of ours on a member
// that is not master are removed. Each is logged and counted. Members
// starting (INIT) are left to RemoveStale.
func (g *Group) reconcileVIPs() {
	for _, mb := range g.members {
		want := mb.cfg.allVIPs()
		if mb.m.State == Init {
			continue
		}
		if len(want) == 0 {
			continue
		}
		present, err := mb.vips.Present()
		if err != nil {
			mb.log.Debug("checking the virtual IPs failed", "err", err)
			continue
		}
		switch master := mb.m.State == Master; {
		case master && len(present) < len(want):
			var missing []string
			for _, p := range want {
				if !slices.Contains(present, p) {
					missing = append(missing, p.String())
				}
			}
			if _, err := mb.vips.Up(); err != nil {
				mb.stats.vipErrors.Add(1)
				mb.log.Error("restoring virtual IPs removed under the master failed", "vips", missing, "err", err)
				continue
			}
			mb.stats.vipsRestored.Add(uint64(len(missing)))
			mb.log.Warn("virtual IPs removed under the master by someone else: restored and announced", "vips", missing)
			if g.onRestored != nil {
				g.onRestored(mb.name, missing)
			}
		case !master && len(present) > 0:
			if err := mb.vips.Down(); err != nil {
				mb.stats.vipErrors.Add(1)
				mb.log.Error("removing virtual IPs found on a non-master failed", "vips", present, "err", err)
				continue
			}
			mb.stats.vipsRemoved.Add(uint64(len(present)))
			mb.log.Warn("virtual IPs found while not master: removed", "vips", present, "state", mb.m.State)
		}
	}
}

// checkRoutes is the group's route checker: at each kick (the VIP
// checks' events and ticks) it compares each member's virtual routes and
// rules with the kernel, off the group's goroutine and lock (a dump of
// a large table, or a kernel that stalls, must not hold the adverts
// back), and posts what it found to the group's goroutine, which acts on
// it (reconcileRoutes). It returns when ctx is done.
func (g *Group) checkRoutes(ctx context.Context) {
	type job struct {
		name string
		rh   routeHolder
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.routeKick:
		}
		var jobs []job
		g.mu.Lock()
		for _, mb := range g.members {
			if rh, ok := mb.vips.(routeHolder); ok && len(mb.cfg.Routes)+len(mb.cfg.Rules) > 0 && mb.m.State != Init {
				jobs = append(jobs, job{mb.name, rh})
			}
		}
		g.mu.Unlock()
		for _, j := range jobs {
			rep, err := j.rh.CheckRoutes()
			select {
			case g.ctl <- func() { g.reconcileRoutes(j.name, j.rh, rep, err) }:
			case <-ctx.Done():
				return
			}
		}
	}
}

// kickRouteCheck asks the route checker for a check.
func (g *Group) kickRouteCheck() {
	select {
	case g.routeKick <- struct{}{}:
	default: // one pending check covers any number of changes
	}
}

// reconcileRoutes does for a member's virtual routes and rules what
// reconcileVIPs does for its addresses, from what the route checker
// found (rep, err): the kernel drops a route when its link goes down, or
// someone deletes it; a master puts it back (once the link is up again),
// a non-master removes what it holds. The report may predate a
// transition: up and down look at the kernel again before they act.
// The caller holds g.mu.
func (g *Group) reconcileRoutes(name string, rh routeHolder, rep routeReport, err error) {
	i := slices.IndexFunc(g.members, func(mb *member) bool { return mb.name == name })
	if i < 0 || any(g.members[i].vips) != any(rh) || g.members[i].m.State == Init {
		return // reloaded or removed since, or starting
	}
	mb := g.members[i]
	if err != nil {
		g.routesFailed(mb, "checking routes and rules failed", nil, err)
		return
	}
	if mb.m.State == Master {
		if len(rep.missing) == 0 {
			return
		}
		if err := rh.RoutesUp(); err != nil {
			// A route through a link that is down fails until it is up; a
			// route of someone else's where ours goes stays in the way.
			g.routesFailed(mb, "restoring routes and rules under the master failed", rep.missing, err)
			return
		}
		mb.log.Warn("routes or rules removed under the master: restored", "routes", rep.missing)
		return
	}
	if len(rep.present) == 0 {
		return
	}
	if err := rh.RoutesDown(); err != nil {
		g.routesFailed(mb, "removing routes and rules on a non-master failed", rep.present, err)
		return
	}
	mb.log.Warn("routes or rules found while not master: removed", "routes", rep.present, "state", mb.m.State)
}

// routesFailed counts a failed check of the routes and rules, every
// time, and logs it as a warning once per state (then at debug level:
// the check is retried every few seconds).
func (g *Group) routesFailed(mb *member, msg string, routes []string, err error) {
	mb.stats.vipErrors.Add(1)
	log := mb.log.Debug
	if t := mb.stats.transitions.Load() + 1; mb.routesWarned != t {
		mb.routesWarned, log = t, mb.log.Warn
	}
	log(msg+" (retried every "+vipCheckEvery.String()+")", "routes", routes, "err", err)
}

// watchAddrs tells every group when the kernel's addresses change, so
// that it reconciles its VIPs at once.
func (r *Runner) watchAddrs(ctx context.Context) {
	err := r.opts.Host.WatchAddrs(ctx, func() {
		for _, g := range r.groups {
			select {
			case g.addrs <- struct{}{}:
			default: // one pending check covers any number of changes
			}
		}
	}, func(err error) {
		r.log.Warn("address watch failed; the virtual IPs are still checked every "+vipCheckEvery.String(), "err", err)
	})
	if err != nil {
		r.log.Warn("cannot watch addresses; the virtual IPs are checked every "+vipCheckEvery.String(), "err", err)
	}
}

// wakeGroups asks every group to reconcile its VIPs, routes and rules.
func (r *Runner) wakeGroups() {
	for _, g := range r.groups {
		select {
		case g.addrs <- struct{}{}:
		default: // one pending check covers any number of changes
		}
	}
}

// watchRouteChanges wakes the groups at every change of the kernel's
// links, routes and rules, when an instance holds routes or rules. Only
// with the kernel's Host: tests with a fake one have no routes to watch.
func (r *Runner) watchRouteChanges(ctx context.Context) {
	var routes []routeKey
	held := false
	for _, in := range r.conf.Instances {
		held = held || len(in.Routes)+len(in.Rules) > 0
		for _, rt := range in.Routes {
			routes = append(routes, routeKey{table: tableOrMain(rt.Table), to: rt.To})
		}
	}
	if r.opts.Host != linkwatch.Kernel || !held {
		return
	}
	err := watchRoutes(ctx, routes, r.wakeGroups, func(err error) {
		r.log.Warn("route watch failed; the routes are still checked every "+vipCheckEvery.String(), "err", err)
	})
	if err != nil {
		r.log.Warn("cannot watch routes; they are checked every "+vipCheckEvery.String(), "err", err)
	}
}
