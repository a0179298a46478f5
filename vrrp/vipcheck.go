package vrrp

import (
	"context"
	"slices"
	"time"
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
		if mb.m.State == Init || len(mb.cfg.VIPs) == 0 {
			continue
		}
		present, err := mb.vips.Present()
		if err != nil {
			mb.log.Debug("checking the virtual IPs failed", "err", err)
			continue
		}
		switch master := mb.m.State == Master; {
		case master && len(present) < len(mb.cfg.VIPs):
			var missing []string
			for _, p := range mb.cfg.VIPs {
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
