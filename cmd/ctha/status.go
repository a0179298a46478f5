package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ctha/ctha/cfg"
	"github.com/ctha/ctha/ctsync"
	"github.com/ctha/ctha/internal/control"
	"github.com/ctha/ctha/vrrp"
)

// State names of groups and instances.
const stateInit = "INIT"

// status builds the daemon's status document from what exists so far: the
// configuration. The VRRP and conntrack engines fill in their parts as they
// land.
func (d *daemonState) status() control.Status {
	conf := d.conf.Load()
	st := control.Status{
		Node:      conf.NodeName,
		Version:   version,
		Started:   d.started.UTC(),
		Config:    d.path,
		Groups:    []control.GroupStatus{},
		Instances: []control.InstanceStatus{},
	}
	var groups []vrrp.GroupStatus
	var instances []vrrp.InstanceStatus
	st.Realtime = control.RealtimeStatus{Priority: conf.RealtimePriority, State: "off"}
	if d.vrrp != nil {
		groups, instances = d.vrrp.Status()
		rt := d.vrrp.Realtime()
		st.Realtime = control.RealtimeStatus{Priority: rt.Priority, State: rt.State, Error: rt.Err}
	}
	es, running := d.engineStatus()
	for _, g := range conf.SyncGroups {
		gs := control.GroupStatus{
			Name: g.Name, State: stateInit, Since: d.started.UTC(),
			Conntrack: g.Conntrack, Instances: g.Instances,
			SplitBrain: running && groupSplit(conf.Multiprimary(), es, g),
		}
		for _, v := range groups {
			if v.Name == g.Name {
				gs.State, gs.Since = v.State.String(), v.Since.UTC()
				gs.PreemptDeferred, gs.Demoted = v.PreemptDeferred, v.Demoted
			}
		}
		st.Groups = append(st.Groups, gs)
	}
	for _, in := range conf.Instances {
		is := control.InstanceStatus{
			Name: in.Name, Interface: in.Interface, VRID: in.VRID, Version: in.Version,
			State: stateInit, Priority: in.Priority, EffectivePriority: in.Priority,
			VIPs: []string{},
		}
		for _, p := range in.VIPs {
			is.VIPs = append(is.VIPs, p.String())
		}
		for _, v := range instances {
			if v.Name == in.Name {
				is.State, is.EffectivePriority, is.Master = v.State.String(), v.EffectivePriority, v.Master
				is.LastTakeoverMS = durationMS(v.TimerToGARP)
			}
		}
		st.Instances = append(st.Instances, is)
	}
	if s := conf.Sync; s != nil {
		ss := &control.SyncStatus{Mode: s.Mode, Cache: s.Cache, Topology: s.Topology, Protocol: s.Protocol,
			Links: []control.LinkStatus{}, Peers: []control.PeerStatus{}}
		for _, l := range s.Links {
			ss.Links = append(ss.Links, control.LinkStatus{Name: l.Name, Interface: l.Interface})
		}
		if !s.InsecureNoAuth && s.Protocol != cfg.ProtocolConntrackd {
			ss.KeyFingerprint = s.Key.Fingerprint()
		}
		if running {
			syncStatus(ss, es, time.Now())
		}
		st.Sync = ss
	}
	return st
}

// groupSplit reports whether another node claims MASTER of group g too,
// as the engine's status es says: in multiprimary, per group; in
// primary-backup, the split brain is the conntrack group's.
func groupSplit(multiprimary bool, es ctsync.Status, g cfg.SyncGroup) bool {
	if multiprimary {
		return slices.Contains(es.SplitGroups, g.Name)
	}
	return g.Conntrack && es.SplitBrain
}

func durationMS(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// statusLine is the one-line summary systemd shows as Status:
// "fw MASTER | lan MASTER, wan MASTER | sync peer up, 1234 local / 1200 peer states".
func statusLine(st control.Status) string {
	var parts []string
	var groups []string
	for _, g := range st.Groups {
		groups = append(groups, g.Name+" "+g.State)
	}
	if len(groups) > 0 {
		parts = append(parts, strings.Join(groups, ", "))
	}
	var ins []string
	for _, in := range st.Instances {
		ins = append(ins, in.Name+" "+in.State)
	}
	if len(ins) > 0 {
		parts = append(parts, strings.Join(ins, ", "))
	}
	if s := st.Sync; s != nil {
		parts = append(parts, syncSummary(s))
	}
	return strings.Join(parts, " | ")
}

func syncSummary(s *control.SyncStatus) string {
	if !s.Running {
		return "sync not running"
	}
	peer := "down"
	if s.PeerUp {
		peer = "up"
	}
	return fmt.Sprintf("sync peer %s, %d local / %d peer states", peer, s.InternalEntries, s.ExternalEntries)
}

func (c *cli) status(args []string) int {
	fs := c.flags("status")
	asJSON := fs.Bool("json", false, "print the documented JSON document")
	socket := fs.String("s", cfg.DefaultSocket, "control `SOCKET` of the daemon")
	if code, ok := c.parse(fs, args); !ok {
		return code
	}
	var st control.Status
	if err := control.Call(context.Background(), *socket, "status", nil, &st); err != nil {
		return c.failf("status: %v", err)
	}
	if *asJSON {
		return c.printJSON(st)
	}
	printStatus(c.stdout, st, time.Now())
	return exitOK
}

func printStatus(w io.Writer, st control.Status, now time.Time) {
	fmt.Fprintf(w, "node %s, ctha %s, up %s, config %s\n", st.Node, st.Version,
		now.Sub(st.Started).Round(time.Second), st.Config)
	switch st.Realtime.State {
	case "on":
		fmt.Fprintf(w, "vrrp timing: realtime (SCHED_FIFO %d)\n", st.Realtime.Priority)
	case "refused":
		fmt.Fprintf(w, "vrrp timing: normal priority: realtime priority %d refused (%s)\n", st.Realtime.Priority, st.Realtime.Error)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(st.Groups) > 0 {
		fmt.Fprintln(tw, "\nGROUP\tSTATE\tSINCE\tINSTANCES\tNOTE")
		for _, g := range st.Groups {
			var notes []string
			if g.Conntrack {
				notes = append(notes, "drives conntrack")
			}
			if g.PreemptDeferred {
				notes = append(notes, "preemption deferred until sync completes")
			}
			if g.Demoted != "" {
				notes = append(notes, "demoted: "+g.Demoted)
			}
			if g.SplitBrain {
				notes = append(notes, "SPLIT BRAIN: another node is master too (see the log)")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", g.Name, g.State, g.Since.Local().Format(time.DateTime),
				strings.Join(g.Instances, ","), strings.Join(notes, "; "))
		}
	}
	if len(st.Instances) > 0 {
		fmt.Fprintln(tw, "\nINSTANCE\tINTERFACE\tVRID\tSTATE\tPRIORITY\tMASTER\tVIPS")
		for _, in := range st.Instances {
			prio := fmt.Sprint(in.Priority)
			if in.EffectivePriority != in.Priority {
				prio = fmt.Sprintf("%d (configured %d)", in.EffectivePriority, in.Priority)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", in.Name, in.Interface, in.VRID, in.State,
				prio, orDash(in.Master), strings.Join(in.VIPs, " "))
		}
	}
	tw.Flush()
	if s := st.Sync; s != nil {
		topology := ""
		if s.Topology != "" { // "": a daemon older than topologies
			topology = " " + s.Topology
		}
		fmt.Fprintf(w, "\nsync%s %s/%s: %s\n", topology, s.Mode, s.Cache, syncSummary(s))
		if s.Protocol == cfg.ProtocolConntrackd {
			fmt.Fprintln(w, "  protocol conntrackd: the peer is a conntrackd 1.4, nothing is authenticated")
		}
		if s.SplitBrain && s.Topology != control.TopologyMultiprimary { // multiprimary: the groups say it
			fmt.Fprintln(w, "  SPLIT BRAIN: the peer is master too (see the log)")
		}
		if s.SNATOverlap {
			fmt.Fprintf(w, "  SNAT PORT RANGES OVERLAP: this node's %s and a peer's (see the peers)\n", s.SNATPortRange)
		}
		if s.Running {
			fmt.Fprintf(w, "  peer's complete copy: %s\n", bulkProgress(s))
		}
		for _, p := range s.Peers {
			fmt.Fprintf(w, "  %s\n", peerLine(p))
		}
		for _, l := range s.Links {
			state := "down"
			switch {
			case l.Up:
				state = "up"
			case !l.Carrier && s.Running:
				state = "down (no carrier)"
			}
			if l.Active {
				state += ", active"
			}
			fmt.Fprintf(w, "  link %s (%s, peer %s): %s\n", l.Name, l.Interface, orDash(l.Peer), state)
		}
		if s.KeyFingerprint != "" {
			fmt.Fprintf(w, "  key fingerprint %s\n", s.KeyFingerprint)
		} else {
			fmt.Fprintln(w, "  NOT AUTHENTICATED (insecure_no_auth = true)")
		}
	}
}

// peerLine describes one peer: "peer fw2 (10.10.3.2): up, 1200 flows,
// copy held, heard 250 ms ago".
func peerLine(p control.PeerStatus) string {
	state := "down"
	if p.Up {
		state = "up"
	}
	copyState := "copy awaited"
	if p.BulkComplete {
		copyState = "copy held"
	}
	heard := "never heard"
	if p.LastSeenMS != nil {
		heard = fmt.Sprintf("heard %s ago", (time.Duration(*p.LastSeenMS * float64(time.Millisecond))).Round(time.Millisecond))
	}
	snat := ""
	if p.SNATPortRange != "" {
		snat = ", SNAT ports " + p.SNATPortRange
	}
	return fmt.Sprintf("peer %s (%s): %s, %d flows, %s, %s%s", orDash(p.Node), orDash(p.Address), state, p.Entries, copyState, heard, snat)
}

// bulkProgress says how far the peer's complete copy has come.
func bulkProgress(s *control.SyncStatus) string {
	of := ""
	if s.BulkExpected > 0 {
		of = fmt.Sprintf(" of %d", s.BulkExpected)
	}
	if s.BulkComplete {
		return fmt.Sprintf("held (%d%s entries)", s.BulkReceived, of)
	}
	return fmt.Sprintf("awaited, %d%s entries received", s.BulkReceived, of)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
