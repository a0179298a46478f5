package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/ctha/ctha/cfg"
	"github.com/ctha/ctha/internal/control"
	"github.com/ctha/ctha/internal/failover"
	"github.com/ctha/ctha/vrrp"
)

// newGroups makes the failover choreography of every sync group of conf
// (package failover); in primary-backup, the group with conntrack = true
// drives the engine; in multiprimary, every group tells the engine its
// role, through d.fanout.
func (d *daemonState) newGroups(conf *cfg.Config) map[string]*failover.Group {
	groups := map[string]*failover.Group{}
	if conf.Multiprimary() && d.sync != nil {
		d.fanout = failover.NewFanout(d.sync)
	}
	for _, g := range conf.SyncGroups {
		c := failover.Config{Group: g.Name, Instances: g.Instances, Notify: notifyConfig(g.Notify),
			InstanceNotify: instanceNotify(conf, g.Instances)}
		if d.fanout != nil {
			c.StartupSyncTimeout = conf.Sync.StartupSyncTimeout
			groups[g.Name] = failover.NewMultiprimary(d.log, c, d.fanout.Roles())
			continue
		}
		if !g.Conntrack || d.sync == nil {
			groups[g.Name] = failover.New(d.log, c)
			continue
		}
		s := conf.Sync
		c.External = s.Cache == cfg.CacheExternal
		c.CommitTimeout, c.PurgeDelay, c.StartupSyncTimeout = s.CommitTimeout, s.PurgeDelay, s.StartupSyncTimeout
		groups[g.Name] = failover.NewConntrack(d.log, c, d.sync)
	}
	return groups
}

// newLone makes what runs the notify commands of every instance that is
// in no sync group.
func (d *daemonState) newLone(conf *cfg.Config) map[string]*failover.Group {
	lone := map[string]*failover.Group{}
	for _, in := range loneInstances(conf) {
		lone[in.Name] = failover.NewInstance(d.log, in.Name, notifyConfig(in.Notify))
	}
	return lone
}

// loneInstances returns the instances that are in no sync group.
func loneInstances(conf *cfg.Config) []cfg.Instance {
	grouped := map[string]bool{}
	for _, g := range conf.SyncGroups {
		for _, name := range g.Instances {
			grouped[name] = true
		}
	}
	var out []cfg.Instance
	for _, in := range conf.Instances {
		if !grouped[in.Name] {
			out = append(out, in)
		}
	}
	return out
}

// instanceNotify returns the notify commands of the named instances.
func instanceNotify(conf *cfg.Config, names []string) map[string]failover.Notify {
	out := map[string]failover.Notify{}
	for _, in := range conf.Instances {
		if slices.Contains(names, in.Name) {
			out[in.Name] = notifyConfig(in.Notify)
		}
	}
	return out
}

func notifyConfig(n cfg.Notify) failover.Notify {
	return failover.Notify{Master: n.Master, Backup: n.Backup, Fault: n.Fault, Stop: n.Stop,
		Generic: n.Generic, Timeout: n.Timeout}
}

// instanceHooks returns what hears the moves of a sync group's instances,
// or of a lone instance (vrrp.Options.InstanceHooks).
func (d *daemonState) instanceHooks(group string, lone bool) vrrp.InstanceHooks {
	groups := d.groups
	if lone {
		groups = d.lone
	}
	if g, ok := groups[group]; ok {
		name := group
		if lone {
			name = ""
		}
		return instanceEvents{g, name, d}
	}
	return nil
}

// notifyStop runs the stop commands of every sync group and lone
// instance, in the order of the file, each bounded by its timeout; the
// election is over and the virtual IPs are gone.
func (d *daemonState) notifyStop(conf *cfg.Config) {
	ctx := context.Background()
	for _, g := range conf.SyncGroups {
		if fg := d.groups[g.Name]; fg != nil {
			fg.NotifyStop(ctx)
		}
	}
	for _, in := range conf.Instances {
		if lg := d.lone[in.Name]; lg != nil {
			lg.NotifyStop(ctx)
		}
	}
}

// conntrackGroup returns the choreography of the group that drives
// conntrack, if any.
func (d *daemonState) conntrackGroup() *failover.Group {
	for _, g := range d.groups {
		if g.Conntrack() {
			return g
		}
	}
	return nil
}

// drainBeforeStop: a master hands over with a complete table: the peer
// acknowledges every state it is owed before the priority-0 advert. A
// multiprimary node drains once, if it is master of any group.
func (d *daemonState) drainBeforeStop() {
	if d.vrrp == nil {
		return
	}
	if g := d.conntrackGroup(); g != nil {
		g.DrainBeforeStop(d.vrrp)
		return
	}
	for _, name := range slices.Sorted(maps.Keys(d.groups)) {
		g := d.groups[name]
		if st, _ := d.vrrp.GroupState(name); g.Multiprimary() && st == vrrp.Master {
			g.DrainBeforeStop(d.vrrp)
			return
		}
	}
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
	g := d.groups[a.Group]
	if a.Group == "" {
		if g = d.conntrackGroup(); g == nil && len(d.groups) == 1 {
			for _, only := range d.groups {
				g = only
			}
		}
	}
	if g == nil {
		return nil, fmt.Errorf("failover: name a sync group (%s)", strings.Join(slices.Sorted(maps.Keys(d.groups)), ", "))
	}
	return g.Failover(ctx, d.elect, a.Cancel)
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
