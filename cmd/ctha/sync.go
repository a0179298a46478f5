package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/ctha/ctha/cfg"
	"github.com/ctha/ctha/ctsync"
	"github.com/ctha/ctha/internal/control"
)

// newSync opens the conntrack sync engine of conf, in a handle that
// replaces it on a reload (reloadSync).
func (d *daemonState) newSync(conf *cfg.Config) (*ctsync.Handle, error) {
	if err := os.MkdirAll(conf.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	return ctsync.NewHandle(syncConfig(conf.Sync, conf.NodeName), ctsync.Options{Log: d.log, StateDir: conf.StateDir,
		VIPs: vipAddrs(conf), OnStatus: d.syncChanged})
}

// vipAddrs are the addresses of conf's virtual IPs.
func vipAddrs(conf *cfg.Config) []netip.Addr {
	var vips []netip.Addr
	for _, in := range conf.Instances {
		for _, p := range in.VIPs {
			vips = append(vips, p.Addr())
		}
		for _, x := range in.ExtraVIPs { // on other interfaces, excluded ones too
			vips = append(vips, x.Prefix.Addr())
		}
	}
	return vips
}

// engineStatus is the sync engine's status; false without an engine.
func (d *daemonState) engineStatus() (ctsync.Status, bool) {
	if d.sync == nil {
		return ctsync.Status{}, false
	}
	return d.sync.Status(), true
}

// syncStatus fills the status document's sync part from the running
// engine's status s, at now.
func syncStatus(ss *control.SyncStatus, s ctsync.Status, now time.Time) {
	ss.Running = true
	ss.PeerUp, ss.BulkComplete = s.PeerUp, s.BulkComplete
	// Multiprimary: any group's split brain (groups[] says which).
	ss.SplitBrain = s.SplitBrain || len(s.SplitGroups) > 0
	ss.BulkReceived, ss.BulkExpected = s.BulkReceived, s.BulkExpected
	ss.PeerRole = s.PeerRole.String() // null in multiprimary's JSON
	ss.InternalEntries, ss.ExternalEntries = s.Internal, s.External
	ss.SNATPortRange, ss.SNATOverlap = s.SNATPorts.String(), s.SNATOverlap
	if df := s.Defer; df != nil {
		ss.Defer = &control.DeferStatus{TimeoutMS: durationMS(df.Timeout), Queue: df.Queue, Source: df.Source, Rule: df.Rule,
			Held: df.Held, ReleasedAcked: df.ReleasedAcked, ReleasedTimeout: df.ReleasedTimeout, NotDeferred: df.NotDeferred,
			Pending: df.Pending, P99US: float64(df.P99.Microseconds()), Reinstalls: df.Reinstalls}
	}
	if c := s.LastCommit; c != nil {
		ss.LastCommit = &control.CommitStatus{Entries: c.Entries, Failed: c.Failed, TookMS: durationMS(c.Took)}
	}
	for i := range ss.Links {
		for _, l := range s.Links {
			if ss.Links[i].Name == l.Name {
				ss.Links[i].Peer, ss.Links[i].Carrier, ss.Links[i].Up, ss.Links[i].Active = l.Peer, l.Carrier, l.Up, l.Active
			}
		}
	}
	for _, p := range s.Peers {
		ps := control.PeerStatus{Node: p.Node, Address: p.Address, Up: p.Up, BulkComplete: p.BulkComplete,
			Entries: p.Entries, BulkReceived: p.BulkReceived, BulkExpected: p.BulkExpected,
			SNATPortRange: p.SNATPorts.String()}
		if !p.LastSeen.IsZero() {
			ms := durationMS(max(now.Sub(p.LastSeen), 0))
			ps.LastSeenMS = &ms
		}
		ss.Peers = append(ss.Peers, ps)
	}
}

// syncOps are the `ctha sync` operations, with conntrackd's equivalents.
var syncOps = map[string]string{
	"commit":  "write the peer's states into the kernel table (conntrackd -c)",
	"flush":   "empty the internal and external caches (conntrackd -f)",
	"resync":  "reconcile the internal cache with the kernel table (conntrackd -R)",
	"bulk":    "send the peer a complete copy of this node's states (conntrackd -B)",
	"request": "ask the peer for a complete copy of its states (conntrackd -n)",
	"purge":   "delete kernel states the peer does not hold, except this node's own (conntrackd -t)",
}

// handleSync runs a `ctha sync` operation in the daemon.
func (d *daemonState) handleSync(ctx context.Context, op string) (any, error) {
	if d.sync == nil {
		return nil, fmt.Errorf("no conntrack_sync in %s", d.path)
	}
	switch op {
	case "commit":
		res, err := d.sync.Commit(ctx)
		out := control.CommitStatus{Entries: res.Entries, Failed: res.Failed, TookMS: durationMS(res.Took)}
		if err != nil {
			return nil, fmt.Errorf("%w (%d entries, %.1f ms)", err, res.Entries, out.TookMS)
		}
		return out, nil
	case "flush":
		return nil, d.sync.Flush(ctx)
	case "resync":
		return nil, d.sync.Resync(ctx)
	case "bulk":
		return nil, d.sync.Bulk(ctx)
	case "request":
		return nil, d.sync.Request(ctx)
	case "purge":
		n, err := d.sync.Purge(ctx)
		return map[string]int{"purged": n}, err
	}
	return nil, fmt.Errorf("unknown sync operation %q", op)
}

func (c *cli) syncCmd(args []string) int {
	fs := c.flags("sync")
	socket := fs.String("s", cfg.DefaultSocket, "control `SOCKET` of the daemon")
	pos, code, ok := c.parseMixed(fs, args)
	if !ok {
		return code
	}
	switch {
	case len(pos) == 0:
		fmt.Fprintln(c.stderr, "ctha: sync: name an operation: commit, flush, resync, bulk, request or purge (run `ctha sync -h`)")
		return exitUsage
	case len(pos) > 1:
		fmt.Fprintf(c.stderr, "ctha: sync: one operation at a time, got %q (run `ctha sync -h`)\n", pos)
		return exitUsage
	case syncOps[pos[0]] == "":
		fmt.Fprintf(c.stderr, "ctha: sync: unknown operation %q: commit, flush, resync, bulk, request or purge (run `ctha sync -h`)\n", pos[0])
		return exitUsage
	}
	op := pos[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var out json.RawMessage
	if err := control.Call(ctx, *socket, "sync."+op, nil, &out); err != nil {
		return c.failf("sync %s: %v", op, err)
	}
	switch op {
	case "commit":
		var r control.CommitStatus
		json.Unmarshal(out, &r)
		fmt.Fprintf(c.stdout, "committed %d entries in %.1f ms\n", r.Entries, r.TookMS)
	case "purge":
		var r map[string]int
		json.Unmarshal(out, &r)
		fmt.Fprintf(c.stdout, "purged %d entries\n", r["purged"])
	default:
		fmt.Fprintf(c.stdout, "sync %s: done\n", op)
	}
	return exitOK
}

// reloadSync applies conf's conntrack_sync, which a reload found valid,
// in place of old's: the engine is replaced (ctsync.Handle.Replace) with
// no VRRP transition, and the conntrack group's commit_timeout and
// purge_delay are set. It returns what changed, what waits for a restart
// (conntrack_sync added or removed, its topology or cache changed: the
// sync groups' policies follow them), and why the change could not be
// applied. Whatever is not applied, conf keeps old's (conf.Sync), as
// status and the next reload must see what runs; the key is read from
// the file at every reload (cfg.Load), so a rotated key counts as a
// change even under the same path.
func (d *daemonState) reloadSync(conf, old *cfg.Config) (changes, restart []string, err error) {
	// Flows to a VIP are the pair's, not this node's own: an engine that
	// is not replaced (nothing else changed, or the change is not
	// applied) is given the new VIPs.
	vips, replaced := vipAddrs(conf), false
	defer func() {
		if d.sync == nil || replaced || slices.Equal(vips, vipAddrs(old)) {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if verr := d.sync.SetVIPs(ctx, vips); verr != nil {
			d.log.Error("the VIPs not given to the sync engine", "err", verr)
			err = errors.Join(err, fmt.Errorf("conntrack_sync: the VIPs not given to the sync engine: %w", verr))
			return
		}
		if len(changes) == 0 && len(restart) == 0 && err == nil {
			changes = []string{"conntrack_sync: the VIPs"}
		}
	}()
	switch {
	case conf.Sync == nil && old.Sync == nil:
		return nil, nil, nil
	case conf.Sync == nil || old.Sync == nil || d.sync == nil:
		conf.Sync = old.Sync
		msg := "conntrack_sync added or removed; it takes effect at the next restart"
		d.log.Warn(msg)
		return nil, []string{msg}, nil
	case conf.Sync.Topology != old.Sync.Topology || conf.Sync.Cache != old.Sync.Cache:
		conf.Sync = old.Sync
		msg := "conntrack_sync topology or cache changed; it takes effect at the next restart (nothing of conntrack_sync applied)"
		d.log.Warn(msg)
		return nil, []string{msg}, nil
	}
	what := syncChanges(conf.Sync, old.Sync, conf.NodeName != old.NodeName)
	if len(what) == 0 {
		return nil, nil, nil
	}
	start := time.Now()
	replaced, err = d.sync.Replace(syncConfig(conf.Sync, conf.NodeName), vips)
	if err != nil {
		conf.Sync = old.Sync
		d.log.Error("conntrack_sync change not applied; the running sync engine goes on", "err", err)
		return nil, nil, fmt.Errorf("conntrack_sync change not applied (%s): %w", strings.Join(what, ", "), err)
	}
	if g := d.conntrackGroup(); g != nil {
		g.SetTimers(conf.Sync.CommitTimeout, conf.Sync.PurgeDelay)
	}
	msg := "conntrack_sync: " + strings.Join(what, ", ")
	if replaced {
		msg += "; sync engine replaced, copies exchanged again"
	}
	d.log.Info("reload applied", "change", msg, "took", time.Since(start))
	return []string{msg}, nil, nil
}

// syncChanges names what differs between conntrack_sync blocks a and b,
// of the same topology and cache; node: node_name changed (the peers
// show it).
func syncChanges(a, b *cfg.Sync, node bool) []string {
	var out []string
	add := func(changed bool, what string) {
		if changed {
			out = append(out, what)
		}
	}
	add(a.Protocol != b.Protocol, "protocol")
	add(!reflect.DeepEqual(a.Links, b.Links), "links")
	add(a.Key != b.Key || a.InsecureNoAuth != b.InsecureNoAuth, "key")
	add(!reflect.DeepEqual(a.Filter, b.Filter), "filter")
	add(a.Mode != b.Mode, "mode")
	add(a.SNATPorts != b.SNATPorts, "snat_port_range")
	add(a.TCPWindowTracking != b.TCPWindowTracking, "tcp_window_tracking")
	add(a.Expectations != b.Expectations, "expectations")
	add(a.CommitTimeout != b.CommitTimeout || a.PurgeDelay != b.PurgeDelay || a.StartupSyncTimeout != b.StartupSyncTimeout ||
		a.RefreshInterval != b.RefreshInterval || a.CacheTimeout != b.CacheTimeout, "timers")
	add(node, "node_name")
	if len(out) == 0 && !reflect.DeepEqual(a, b) {
		out = append(out, "settings")
	}
	return out
}
