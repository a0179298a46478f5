package vrrp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	"github.com/ctha/ctha/internal/owner"
)

// ErrRestartNeeded is returned by Reload for a change it cannot apply to
// running instances (an instance added, removed or moved, another VRID,
// version or tracker): nothing is applied, and the change waits for a
// restart.
var ErrRestartNeeded = errors.New("VRRP change needs a restart")

// instanceChange is what a reload changes in one running instance.
type instanceChange struct {
	in   Instance
	vips bool // the VIPs or their announcement settings changed
	what []string
}

// diffInstances compares the running and the new configuration. It returns
// the instances whose live settings change (priority, advert interval,
// preemption, VIPs, gratuitous ARP) and, separately, the differences that
// need a restart.
func diffInstances(old, new Config) (changes []instanceChange, restart []string) {
	groupOf := func(c Config) map[string]string {
		m := map[string]string{}
		for _, g := range c.SyncGroups {
			for _, in := range g.Instances {
				m[in] = g.Name
			}
		}
		return m
	}
	oldGroup, newGroup := groupOf(old), groupOf(new)
	names := func(c Config) []string {
		var n []string
		for _, in := range c.Instances {
			n = append(n, in.Name)
		}
		return n
	}
	if o, n := names(old), names(new); !slices.Equal(o, n) {
		restart = append(restart, fmt.Sprintf("instances %v become %v", o, n))
	}
	for _, og := range old.SyncGroups {
		i := slices.IndexFunc(new.SyncGroups, func(g SyncGroup) bool { return g.Name == og.Name })
		switch {
		case i < 0:
			restart = append(restart, fmt.Sprintf("sync group %s removed", og.Name))
		case !slices.Equal(og.Instances, new.SyncGroups[i].Instances):
			restart = append(restart, fmt.Sprintf("sync group %s: instances change", og.Name))
		case og.Conntrack != new.SyncGroups[i].Conntrack:
			restart = append(restart, fmt.Sprintf("sync group %s: conntrack changes", og.Name))
		}
	}
	for _, ng := range new.SyncGroups {
		if !slices.ContainsFunc(old.SyncGroups, func(g SyncGroup) bool { return g.Name == ng.Name }) {
			restart = append(restart, fmt.Sprintf("sync group %s added", ng.Name))
		}
	}
	if !reflect.DeepEqual(old.TrackScripts, new.TrackScripts) {
		restart = append(restart, "track scripts change")
	}
	for _, o := range old.Instances {
		i := slices.IndexFunc(new.Instances, func(in Instance) bool { return in.Name == o.Name })
		if i < 0 {
			continue // reported with the names
		}
		n := new.Instances[i]
		var fixed []string
		if oldGroup[o.Name] != newGroup[o.Name] {
			fixed = append(fixed, "sync group")
		}
		if o.Interface != n.Interface {
			fixed = append(fixed, "interface")
		}
		if o.VRID != n.VRID {
			fixed = append(fixed, "vrid")
		}
		if o.Version != n.Version || o.Family != n.Family {
			fixed = append(fixed, "version")
		}
		if o.Auth != n.Auth {
			fixed = append(fixed, "authentication")
		}
		if (o.Priority == 255) != (n.Priority == 255) {
			fixed = append(fixed, "address owner (priority 255)")
		}
		if !slices.Equal(o.UnicastPeers, n.UnicastPeers) {
			fixed = append(fixed, "unicast_peers")
		}
		if o.VirtualMAC != n.VirtualMAC || o.VirtualMAC && !slices.Equal(o.VIPs, n.VIPs) {
			fixed = append(fixed, "virtual_mac")
		}
		if !slices.Equal(o.TrackInterface, n.TrackInterface) || !slices.Equal(o.TrackScripts, n.TrackScripts) ||
			!slices.Equal(o.TrackFiles, n.TrackFiles) || !slices.Equal(o.TrackProcesses, n.TrackProcesses) {
			fixed = append(fixed, "trackers")
		}
		if !slices.Equal(o.Routes, n.Routes) || !slices.Equal(o.Rules, n.Rules) {
			fixed = append(fixed, "virtual_routes, virtual_rules")
		}
		if len(fixed) > 0 {
			restart = append(restart, fmt.Sprintf("instance %s: %s", o.Name, strings.Join(fixed, ", ")))
			continue
		}
		ch := instanceChange{in: n}
		if o.Priority != n.Priority {
			ch.what = append(ch.what, fmt.Sprintf("priority %d -> %d", o.Priority, n.Priority))
		}
		if o.AdvertInterval != n.AdvertInterval {
			ch.what = append(ch.what, fmt.Sprintf("advert_interval %v -> %v", o.AdvertInterval, n.AdvertInterval))
		}
		if o.Preempt != n.Preempt || o.PreemptDelay != n.PreemptDelay {
			ch.what = append(ch.what, fmt.Sprintf("preempt %v (delay %v) -> %v (delay %v)",
				o.Preempt, o.PreemptDelay, n.Preempt, n.PreemptDelay))
		}
		if added, removed := prefixDiff(o.VIPs, n.VIPs); len(added)+len(removed) > 0 {
			ch.vips = true
			ch.what = append(ch.what, fmt.Sprintf("virtual_ips +%v -%v", added, removed))
		}
		if !slices.Equal(o.ExtraVIPs, n.ExtraVIPs) {
			ch.vips = true
			ch.what = append(ch.what, "virtual IPs on other interfaces or excluded")
		}
		if o.GARP != n.GARP {
			ch.vips = true
			ch.what = append(ch.what, "garp")
		}
		if len(ch.what) > 0 {
			changes = append(changes, ch)
		}
	}
	return changes, restart
}

// prefixDiff returns what b adds to a and what it drops from it.
func prefixDiff(a, b []netip.Prefix) (added, removed []netip.Prefix) {
	for _, p := range b {
		if !slices.Contains(a, p) {
			added = append(added, p)
		}
	}
	for _, p := range a {
		if !slices.Contains(b, p) {
			removed = append(removed, p)
		}
	}
	return added, removed
}

// Reload applies a new configuration to the running instances without a
// restart and without any transition of its own: a changed priority is
// taken as a tracker change would be (a backup that now outranks the
// master preempts, as it should), new VIPs go up at once on a master, and
// dropped ones go away. It returns what it changed, one line per instance.
// A change that needs a restart is refused with ErrRestartNeeded, and
// nothing is applied. Reload must not be called concurrently with itself.
func (r *Runner) Reload(ctx context.Context, c Config) ([]string, error) {
	changes, restart := diffInstances(r.conf, c)
	if len(restart) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrRestartNeeded, strings.Join(restart, "; "))
	}
	// New address managers are made here, outside the groups' goroutines:
	// opening sockets must not hold up adverts.
	vips := make([]VIPs, len(changes))
	for i, ch := range changes {
		if !ch.vips {
			continue
		}
		v, err := r.opts.NewVIPs(ch.in, r.log.With("instance", ch.in.Name))
		if err != nil {
			for _, v := range vips[:i] {
				if v != nil {
					v.Close()
				}
			}
			return nil, fmt.Errorf("instance %s: %w", ch.in.Name, err)
		}
		vips[i] = v
	}
	var done []string
	if c.RealtimePriority != r.conf.RealtimePriority {
		r.rt.set(c.RealtimePriority) // the threads apply it when they wake
		for _, g := range r.groups {
			if g.clock != nil {
				g.clock.poke()
			}
		}
		done = append(done, fmt.Sprintf("realtime priority %d (was %d)", c.RealtimePriority, r.conf.RealtimePriority))
	}
	for i, ch := range changes {
		g, idx := r.memberOf(ch.in.Name)
		if g == nil {
			if vips[i] != nil {
				vips[i].Close()
			}
			continue
		}
		err := owner.Do(ctx, g.ctl, g.done(), func() { g.reconfigure(idx, ch.in, vips[i]) })
		if err == owner.ErrStopped {
			if vips[i] != nil {
				vips[i].Close()
			}
			continue
		}
		if err != nil {
			return done, err
		}
		done = append(done, fmt.Sprintf("instance %s: %s", ch.in.Name, strings.Join(ch.what, ", ")))
	}
	r.conf = c
	return done, nil
}

// memberOf finds an instance's group and its index there (nil, -1 if
// none runs).
func (r *Runner) memberOf(name string) (*Group, int) {
	for _, g := range r.groups {
		for i, mb := range g.members {
			if mb.name == name {
				return g, i
			}
		}
	}
	return nil, -1 // not running: diffInstances only matches running instances
}

// reconfigure applies a reloaded instance's live settings to member i on
// the group's goroutine. vips, when not nil, replaces its address manager:
// on a master the new one adds every VIP (the kept ones are replaced in
// place, with no gap) before the old one removes those no longer wanted.
func (g *Group) reconfigure(i int, in Instance, vips VIPs) {
	mb := g.members[i]
	mb.cfg = in
	mb.m.Priority, mb.m.AdvertInterval = in.Priority, in.AdvertInterval
	mb.m.Preempt, mb.m.PreemptDelay = in.Preempt, in.PreemptDelay
	rc := *mb.recv.Load()
	rc.interval, rc.vips = in.AdvertInterval, vipAddrs(in.AdvertVIPs())
	mb.recv.Store(&rc)
	if vips != nil {
		old := mb.vips
		mb.vips = vips
		if mb.m.State == Master {
			if _, err := vips.Up(); err != nil {
				mb.stats.vipErrors.Add(1)
				mb.log.Error("adding virtual IPs failed", "err", err)
			}
		}
		if err := old.Retire(in); err != nil {
			mb.stats.vipErrors.Add(1)
			mb.log.Error("removing dropped virtual IPs failed", "err", err)
		}
	}
	mb.log.Info("instance reconfigured", "priority", in.Priority, "vips", in.VIPs)
	g.reevaluate()
	g.drain()
}

func vipAddrs(ps []netip.Prefix) []netip.Addr {
	addrs := make([]netip.Addr, 0, len(ps))
	for _, p := range ps {
		addrs = append(addrs, p.Addr())
	}
	return addrs
}
