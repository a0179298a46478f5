package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/ctha/ctha/cfg"
	"github.com/ctha/ctha/ctsync"
	"github.com/ctha/ctha/internal/control"
	"github.com/ctha/ctha/internal/events"
	"github.com/ctha/ctha/internal/failover"
	"github.com/ctha/ctha/vrrp"
)

// What `ctha events` streams: the engines' moves, published on the
// daemon's bus (d.bus) at the points where they happen. The bus never
// blocks the publisher, so none of this slows the engines.

const eventsDetail = `Prints one line per event as it happens: transitions of groups and
instances, sync peers up and down, complete copies received, split brains,
virtual IPs put back, demotions, reloads, the daemon stopping. --json
prints each as one line of JSON (the README lists the types and fields).
SIGINT or SIGTERM ends it with exit 0. The daemon never waits for a
reader: one too slow to keep up is dropped, its stream ending with an
error line (type "error"); ctha events then exits 1, as it does when the
daemon stops.
`

func (c *cli) eventsCmd(args []string) int {
	fs := c.flags("events")
	asJSON := fs.Bool("json", false, "print each event as one line of JSON")
	socket := fs.String("s", cfg.DefaultSocket, "control `SOCKET` of the daemon")
	if code, ok := c.parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(c.stderr, "ctha: events: unexpected argument %q (run `ctha events -h`)\n", fs.Arg(0))
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return c.streamEvents(ctx, *socket, *asJSON)
}

// errWrite is a failed write to stdout (a closed pipe).
type errWrite struct{ error }

// streamEvents prints the daemon's events until ctx ends (exit 0) or the
// stream does (exit 1, with the reason).
func (c *cli) streamEvents(ctx context.Context, socket string, asJSON bool) int {
	var last events.Event
	err := control.CallStream(ctx, socket, "events", nil, func(line json.RawMessage) error {
		var e events.Event
		if err := json.Unmarshal(line, &e); err != nil {
			return fmt.Errorf("bad event from the daemon: %w", err)
		}
		last = e
		var werr error
		if asJSON {
			_, werr = fmt.Fprintf(c.stdout, "%s\n", line)
		} else if e.Type != events.Error { // said on stderr below
			_, werr = fmt.Fprintln(c.stdout, formatEvent(e))
		}
		if werr != nil {
			return errWrite{werr}
		}
		return nil
	})
	var we errWrite
	switch {
	case errors.Is(err, context.Canceled):
		return exitOK
	case errors.As(err, &we):
		return c.failf("events: write: %v", we.error)
	case last.Type == events.Error:
		return c.failf("events: the daemon dropped this reader: %s", last.Error)
	case errors.Is(err, control.ErrStreamEnded) && last.Type == events.Stopping:
		return c.failf("events: the daemon stopped")
	case errors.Is(err, control.ErrStreamEnded):
		return c.failf("events: the daemon closed the stream (did it stop?)")
	}
	return c.failf("events: %v", err)
}

// formatEvent is an event as plain `ctha events` prints it.
func formatEvent(e events.Event) string {
	var s string
	inst := func() string {
		if e.Group != "" {
			return fmt.Sprintf("instance %s (group %s)", e.Instance, e.Group)
		}
		return "instance " + e.Instance
	}
	peer := fmt.Sprintf("sync peer %s (%s)", orDash(e.Peer), orDash(e.Address))
	switch e.Type {
	case events.GroupTransition:
		s = fmt.Sprintf("group %s: %s -> %s (%s)", e.Group, e.From, e.To, e.Reason)
	case events.InstanceTransition:
		s = fmt.Sprintf("%s: %s -> %s (%s), priority %d", inst(), e.From, e.To, e.Reason, e.Priority)
	case events.PeerUp:
		s = peer + " up"
	case events.PeerDown:
		s = peer + " down"
	case events.BulkComplete:
		n := 0
		if e.Entries != nil {
			n = *e.Entries
		}
		s = fmt.Sprintf("complete copy from %s: %d entries", peer, n)
	case events.SplitBrainBegin:
		s = fmt.Sprintf("SPLIT BRAIN: group %s: %s is master too", orDash(e.Group), orDash(e.Peer))
	case events.SplitBrainEnd:
		s = fmt.Sprintf("split brain over: group %s", orDash(e.Group))
	case events.VIPRestored:
		s = fmt.Sprintf("%s: virtual IPs removed by someone else put back: %s", inst(), strings.Join(e.VIPs, " "))
	case events.DemotionSet:
		s = fmt.Sprintf("group %s demoted: %s (priority %+d)", e.Group, e.Reason, e.Priority)
	case events.DemotionCleared:
		s = fmt.Sprintf("group %s: demotion lifted: %s", e.Group, e.Reason)
	case events.ReloadApplied:
		s = "configuration reloaded"
		if len(e.Changes) > 0 {
			s += ": " + strings.Join(e.Changes, "; ")
		}
		if e.Error != "" {
			s += " (" + e.Error + ")"
		}
	case events.ReloadFailed:
		s = "reload refused: " + e.Error
	case events.Stopping:
		s = "ctha stopping (" + e.Reason + ")"
	default: // a newer daemon's
		b, _ := json.Marshal(e)
		s = e.Type + " " + string(b)
	}
	return e.Time.Local().Format("2006-01-02 15:04:05.000") + " " + s
}

// eventStream is a subscription as the control socket streams it.
type eventStream struct{ *events.Sub }

func (s eventStream) Next(ctx context.Context) (any, error) { return s.Sub.Next(ctx) }

// publish hands e to the readers of `ctha events`.
func (d *daemonState) publish(e events.Event) {
	if d.bus != nil {
		d.bus.Publish(e)
	}
}

// groupOf is the sync group an instance is in, "" for none.
func groupOf(conf *cfg.Config, instance string) string {
	for _, g := range conf.SyncGroups {
		if slices.Contains(g.Instances, instance) {
			return g.Name
		}
	}
	return ""
}

// vipsRestored is vrrp.Options.OnVIPsRestored.
func (d *daemonState) vipsRestored(instance string, vips []string) {
	d.publish(events.Event{Type: events.VIPRestored, Instance: instance,
		Group: groupOf(d.conf.Load(), instance), VIPs: vips})
}

// groupEvents is a sync group's vrrp.Hooks that also publishes the
// group's transitions.
type groupEvents struct {
	vrrp.Hooks
	d *daemonState
}

func (h groupEvents) Transitioned(group string, from, to vrrp.State, reason vrrp.Reason) {
	h.d.publish(events.Event{Type: events.GroupTransition, Group: group,
		From: from.String(), To: to.String(), Reason: reason.String()})
	h.Hooks.Transitioned(group, from, to, reason)
}

// instanceEvents is the vrrp.InstanceHooks of a group's instances (group
// "" for a lone instance) that also publishes their transitions.
type instanceEvents struct {
	vrrp.InstanceHooks
	group string
	d     *daemonState
}

func (h instanceEvents) InstancesTransitioned(moves []vrrp.InstanceTransition, groupMoves bool) {
	for _, m := range moves {
		h.d.publish(events.Event{Type: events.InstanceTransition, Instance: m.Instance, Group: h.group,
			From: m.From.String(), To: m.To.String(), Reason: m.Reason.String(), Priority: int(m.Priority)})
	}
	h.InstanceHooks.InstancesTransitioned(moves, groupMoves)
}

// election is the VRRP runner as the groups' choreography and `ctha
// failover` use it (failover.Election): each demotion set or lifted is
// published.
type election struct {
	failover.Election // the runner
	d                 *daemonState

	mu      sync.Mutex        // held across a demotion: see Demote
	demoted map[[2]string]int // group, reason -> adjustment in force
}

// Demote holds e.mu across the runner's Demote, so that two calls for the
// same group and reason publish in the order they took effect (the
// group's goroutine, which the runner's Demote waits for, never takes it).
func (e *election) Demote(ctx context.Context, group, reason string, adjust int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.Election.Demote(ctx, group, reason, adjust); err != nil {
		return err
	}
	k := [2]string{group, reason}
	old, had := e.demoted[k]
	switch {
	case adjust != 0 && (!had || old != adjust):
		e.demoted[k] = adjust
		e.d.publish(events.Event{Type: events.DemotionSet, Group: group, Reason: reason, Priority: adjust})
	case adjust == 0 && had:
		delete(e.demoted, k)
		e.d.publish(events.Event{Type: events.DemotionCleared, Group: group, Reason: reason})
	}
	return nil
}

// syncChanged is ctsync.Options.OnStatus.
func (d *daemonState) syncChanged(prev, now ctsync.Status) {
	for _, e := range syncEvents(prev, now, d.conntrackGroupName) {
		d.publish(e)
	}
}

// syncEvents are the events between two statuses of the sync engine;
// group is the sync group that drives conntrack (primary-backup), whose
// split brain the engine reports.
func syncEvents(prev, now ctsync.Status, group string) []events.Event {
	var out []events.Event
	for i, p := range now.Peers {
		var q ctsync.PeerStatus
		if i < len(prev.Peers) {
			q = prev.Peers[i]
		}
		name := p.Node
		if name == "" {
			name = q.Node
		}
		if p.Up != q.Up {
			typ := events.PeerDown
			if p.Up {
				typ = events.PeerUp
			}
			out = append(out, events.Event{Type: typ, Peer: name, Address: p.Address})
		}
		if p.Copies > q.Copies || p.BulkComplete && !q.BulkComplete {
			n := p.BulkReceived
			out = append(out, events.Event{Type: events.BulkComplete, Peer: name, Address: p.Address,
				Entries: &n, Expected: p.BulkExpected})
		}
	}
	peer := ""
	if len(now.Peers) == 1 {
		peer = now.Peers[0].Node
	}
	switch {
	case now.SplitBrain && !prev.SplitBrain:
		out = append(out, events.Event{Type: events.SplitBrainBegin, Group: group, Peer: peer})
	case !now.SplitBrain && prev.SplitBrain:
		out = append(out, events.Event{Type: events.SplitBrainEnd, Group: group, Peer: peer})
	}
	for _, g := range now.SplitGroups {
		if !slices.Contains(prev.SplitGroups, g) {
			out = append(out, events.Event{Type: events.SplitBrainBegin, Group: g, Peer: claimant(now, g)})
		}
	}
	for _, g := range prev.SplitGroups {
		if !slices.Contains(now.SplitGroups, g) {
			out = append(out, events.Event{Type: events.SplitBrainEnd, Group: g})
		}
	}
	return out
}

// claimant is the peer that claims MASTER of group (multiprimary), "" if
// none is known.
func claimant(s ctsync.Status, group string) string {
	for _, p := range s.Peers {
		if p.Up && slices.Contains(p.MasterOf, group) {
			return p.Node
		}
	}
	return ""
}

// reloadEvent is the event of a reload: refused (err != ""), or applied
// with its changes and what waits for a restart.
func reloadEvent(changes, restart []string, refused string) events.Event {
	if refused != "" {
		return events.Event{Type: events.ReloadFailed, Error: refused}
	}
	return events.Event{Type: events.ReloadApplied, Changes: changes, Error: strings.Join(restart, "; ")}
}
