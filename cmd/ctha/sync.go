package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/ctha/ctha/cfg"
	"github.com/ctha/ctha/ctsync"
	"github.com/ctha/ctha/internal/control"
)

// newSync opens the conntrack sync engine of conf.
func (d *daemonState) newSync(conf *cfg.Config) (*ctsync.Engine, error) {
	if err := os.MkdirAll(conf.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	var vips []netip.Addr
	for _, in := range conf.Instances {
		for _, p := range in.VIPs {
			vips = append(vips, p.Addr())
		}
	}
	return ctsync.New(syncConfig(conf.Sync, conf.NodeName), ctsync.Options{Log: d.log, StateDir: conf.StateDir, VIPs: vips,
		OnStatus: d.syncChanged})
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
