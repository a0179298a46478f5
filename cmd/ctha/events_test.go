package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync"
	"github.com/ctha/ctha/internal/control"
	"github.com/ctha/ctha/internal/events"
	"github.com/ctha/ctha/internal/failover"
	"github.com/google/go-cmp/cmp"
)

// lockedBuffer is a command's output read while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// eventsDaemon serves "events" from bus on a control socket, as the
// daemon does; subscribe makes each reader's subscription.
func eventsDaemon(t *testing.T, subscribe func() *events.Sub) (socket string) {
	t.Helper()
	socket = filepath.Join(t.TempDir(), "ctha.sock")
	ln, err := control.Listen(socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	srv := control.NewServer(ln, func(_ context.Context, req control.Request) (any, error) {
		if req.Op != "events" {
			return nil, fmt.Errorf("%w %q", control.ErrUnknown, req.Op)
		}
		return eventStream{subscribe()}, nil
	}, slog.New(slog.DiscardHandler))
	go func() { srv.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return socket
}

type eventsRun struct {
	stdout, stderr lockedBuffer
	code           chan int
	cancel         context.CancelFunc
}

// runEvents runs `ctha events` against socket in the background.
func runEvents(socket string, asJSON bool) *eventsRun {
	r := &eventsRun{code: make(chan int, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	c := &cli{stdout: &r.stdout, stderr: &r.stderr}
	go func() { r.code <- c.streamEvents(ctx, socket, asJSON) }()
	return r
}

func (r *eventsRun) exit(t *testing.T) int {
	t.Helper()
	select {
	case code := <-r.code:
		return code
	case <-time.After(5 * time.Second):
		r.cancel()
		t.Fatal("ctha events did not end within 5s")
		return -1
	}
}

// waitLines waits until the command has printed n lines.
func (r *eventsRun) waitLines(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := r.stdout.String()
		if lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); out != "" && len(lines) >= n {
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("ctha events printed %q, want %d lines", out, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestEventsJSON: --json prints each event as one line of JSON, as it
// was published; the daemon stopping ends the command with exit 1 and a
// reason.
func TestEventsJSON(t *testing.T) {
	bus := events.New()
	subscribed := make(chan struct{}, 1)
	socket := eventsDaemon(t, func() *events.Sub {
		defer func() { subscribed <- struct{}{} }()
		return bus.Subscribe(0)
	})
	r := runEvents(socket, true)
	<-subscribed
	n := 1200
	at := time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)
	want := []events.Event{
		{Time: at, Type: events.GroupTransition, Group: "fw", From: "BACKUP", To: "MASTER", Reason: "master-down"},
		{Time: at, Type: events.BulkComplete, Peer: "fw2", Address: "10.10.3.2", Entries: &n, Expected: 1200},
		{Time: at, Type: events.Stopping, Reason: "terminated"},
	}
	for _, e := range want {
		bus.Publish(e)
	}
	var got []events.Event
	for _, l := range r.waitLines(t, len(want)) {
		var e events.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		got = append(got, e)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	bus.Close()
	if code := r.exit(t); code != exitFail || r.stderr.String() != "ctha: events: the daemon stopped\n" {
		t.Errorf("after the daemon stopped: exit %d, stderr %q; want 1 and the reason", code, r.stderr.String())
	}
}

// TestEventsSlowReader: a reader the daemon dropped gets what was
// buffered, then exits 1 with the daemon's reason.
func TestEventsSlowReader(t *testing.T) {
	bus := events.New()
	defer bus.Close()
	socket := eventsDaemon(t, func() *events.Sub {
		s := bus.Subscribe(2)
		for i := range 5 { // before the stream starts: 3 do not fit
			bus.Publish(events.Event{Type: events.PeerUp, Peer: fmt.Sprintf("fw%d", i)})
		}
		return s
	})
	r := runEvents(socket, false)
	code := r.exit(t)
	lines := strings.Split(strings.TrimSuffix(r.stdout.String(), "\n"), "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[0], "sync peer fw0 (-) up") || !strings.HasSuffix(lines[1], "sync peer fw1 (-) up") {
		t.Errorf("stdout %q, want the two buffered events", r.stdout.String())
	}
	if want := "ctha: events: the daemon dropped this reader: reader too slow: 3 events dropped; reconnect\n"; code != exitFail || r.stderr.String() != want {
		t.Errorf("exit %d, stderr %q; want 1 and %q", code, r.stderr.String(), want)
	}
	// --json prints the final error line too, for the program reading it.
	r = runEvents(socket, true)
	r.exit(t)
	lines = r.waitLines(t, 3)
	var last events.Event
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Type != events.Error || last.Dropped != 3 {
		t.Errorf("last JSON line %q (%v), want the error event with 3 dropped", lines[len(lines)-1], err)
	}
}

// TestEventsInterrupted: SIGINT (ctx) ends the command with exit 0 and
// the daemon forgets the reader.
func TestEventsInterrupted(t *testing.T) {
	bus := events.New()
	defer bus.Close()
	socket := eventsDaemon(t, func() *events.Sub { return bus.Subscribe(0) })
	r := runEvents(socket, false)
	deadline := time.Now().Add(5 * time.Second)
	for bus.Subscribers() != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	r.cancel()
	if code := r.exit(t); code != exitOK || r.stderr.String() != "" {
		t.Errorf("after SIGINT: exit %d, stderr %q; want 0 and nothing", code, r.stderr.String())
	}
	for bus.Subscribers() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := bus.Subscribers(); n != 0 {
		t.Errorf("%d subscribers after the reader left, want 0", n)
	}
}

func TestEventsNoDaemon(t *testing.T) {
	code, _, stderr := runCLI("events", "-s", filepath.Join(t.TempDir(), "none.sock"))
	if code != exitFail || !strings.HasPrefix(stderr, "ctha: events: ctha is not running") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	if code, _, _ := runCLI("events", "extra"); code != exitUsage {
		t.Errorf("an extra argument: exit %d, want %d", code, exitUsage)
	}
}

// TestSyncEvents: the events between two statuses of the sync engine.
func TestSyncEvents(t *testing.T) {
	up := ctsync.PeerStatus{Node: "fw2", Address: "10.10.3.2", Up: true}
	complete := up
	complete.BulkComplete, complete.Copies, complete.BulkReceived, complete.BulkExpected = true, 1, 1200, 1200
	again := complete
	again.Copies = 2
	n := 1200
	tests := []struct {
		name      string
		prev, now ctsync.Status
		want      []events.Event
	}{
		{"nothing", ctsync.Status{Peers: []ctsync.PeerStatus{up}}, ctsync.Status{Peers: []ctsync.PeerStatus{up}}, nil},
		{"peer up", ctsync.Status{Peers: []ctsync.PeerStatus{{Address: "10.10.3.2"}}}, ctsync.Status{Peers: []ctsync.PeerStatus{up}},
			[]events.Event{{Type: events.PeerUp, Peer: "fw2", Address: "10.10.3.2"}}},
		{"peer down keeps its name", ctsync.Status{Peers: []ctsync.PeerStatus{up}}, ctsync.Status{Peers: []ctsync.PeerStatus{{Address: "10.10.3.2"}}},
			[]events.Event{{Type: events.PeerDown, Peer: "fw2", Address: "10.10.3.2"}}},
		{"copy complete", ctsync.Status{Peers: []ctsync.PeerStatus{up}}, ctsync.Status{Peers: []ctsync.PeerStatus{complete}},
			[]events.Event{{Type: events.BulkComplete, Peer: "fw2", Address: "10.10.3.2", Entries: &n, Expected: 1200}}},
		{"another copy", ctsync.Status{Peers: []ctsync.PeerStatus{complete}}, ctsync.Status{Peers: []ctsync.PeerStatus{again}},
			[]events.Event{{Type: events.BulkComplete, Peer: "fw2", Address: "10.10.3.2", Entries: &n, Expected: 1200}}},
		{"split brain", ctsync.Status{Peers: []ctsync.PeerStatus{up}}, ctsync.Status{SplitBrain: true, Peers: []ctsync.PeerStatus{up}},
			[]events.Event{{Type: events.SplitBrainBegin, Group: "fw", Peer: "fw2"}}},
		{"split brain over", ctsync.Status{SplitBrain: true, Peers: []ctsync.PeerStatus{up}}, ctsync.Status{Peers: []ctsync.PeerStatus{up}},
			[]events.Event{{Type: events.SplitBrainEnd, Group: "fw", Peer: "fw2"}}},
		{"multiprimary split groups",
			ctsync.Status{SplitGroups: []string{"a"}, Peers: []ctsync.PeerStatus{up, {Node: "fw3", Up: true, MasterOf: []string{"b"}}}},
			ctsync.Status{SplitGroups: []string{"b"}, Peers: []ctsync.PeerStatus{up, {Node: "fw3", Up: true, MasterOf: []string{"b"}}}},
			[]events.Event{{Type: events.SplitBrainBegin, Group: "b", Peer: "fw3"}, {Type: events.SplitBrainEnd, Group: "a"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, syncEvents(tt.prev, tt.now, "fw")); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFormatEvent: plain `ctha events` says each type in words.
func TestFormatEvent(t *testing.T) {
	n := 1200
	at := time.Date(2026, 12, 7, 15, 0, 0, 0, time.Local)
	tests := []struct {
		e    events.Event
		want string
	}{
		{events.Event{Type: events.GroupTransition, Group: "fw", From: "BACKUP", To: "MASTER", Reason: "master-down"}, "group fw: BACKUP -> MASTER (master-down)"},
		{events.Event{Type: events.InstanceTransition, Instance: "lan", Group: "fw", From: "MASTER", To: "FAULT", Reason: "fault", Priority: 150}, "instance lan (group fw): MASTER -> FAULT (fault), priority 150"},
		{events.Event{Type: events.PeerUp, Peer: "fw2", Address: "10.10.3.2"}, "sync peer fw2 (10.10.3.2) up"},
		{events.Event{Type: events.PeerDown, Address: "10.10.3.2"}, "sync peer - (10.10.3.2) down"},
		{events.Event{Type: events.BulkComplete, Peer: "fw2", Address: "10.10.3.2", Entries: &n}, "complete copy from sync peer fw2 (10.10.3.2): 1200 entries"},
		{events.Event{Type: events.SplitBrainBegin, Group: "fw", Peer: "fw2"}, "SPLIT BRAIN: group fw: fw2 is master too"},
		{events.Event{Type: events.SplitBrainEnd, Group: "fw"}, "split brain over: group fw"},
		{events.Event{Type: events.VIPRestored, Instance: "lan", VIPs: []string{"10.10.1.1/24"}}, "instance lan: virtual IPs removed by someone else put back: 10.10.1.1/24"},
		{events.Event{Type: events.DemotionSet, Group: "fw", Reason: "failover", Priority: -254}, "group fw demoted: failover (priority -254)"},
		{events.Event{Type: events.DemotionCleared, Group: "fw", Reason: "failover"}, "group fw: demotion lifted: failover"},
		{events.Event{Type: events.ReloadApplied, Changes: []string{"lan: priority 100 -> 150"}}, "configuration reloaded: lan: priority 100 -> 150"},
		{events.Event{Type: events.ReloadFailed, Error: "ctha.hcl is invalid"}, "reload refused: ctha.hcl is invalid"},
		{events.Event{Type: events.Stopping, Reason: "terminated"}, "ctha stopping (terminated)"},
		{events.Event{Type: "future"}, `future {"time":"0001-01-01T00:00:00Z","type":"future"}`},
	}
	for _, tt := range tests {
		tt.e.Time = at
		if tt.e.Type == "future" {
			tt.e.Time = time.Time{}
		}
		got := formatEvent(tt.e)
		stamp := tt.e.Time.Local().Format("2006-01-02 15:04:05.000") + " "
		if got != stamp+tt.want {
			t.Errorf("%s: %q, want %q", tt.e.Type, got, stamp+tt.want)
		}
	}
}

// fakeElection accepts every demotion, or refuses them all.
type fakeElection struct {
	failover.Election
	refuse bool
}

func (f fakeElection) Demote(context.Context, string, string, int) error {
	if f.refuse {
		return errors.New("group stopped")
	}
	return nil
}

// TestDemotionEvents: a demotion is published when it is set or its
// adjustment changes, and when it is lifted; a call that changes nothing
// (--cancel while not demoted) or fails publishes nothing.
func TestDemotionEvents(t *testing.T) {
	d := &daemonState{bus: events.New()}
	s := d.bus.Subscribe(0)
	defer s.Close()
	el := &election{Election: fakeElection{}, d: d, demoted: map[[2]string]int{}}
	ctx := context.Background()
	for _, c := range []struct {
		reason string
		adjust int
	}{{"failover", 0}, {"failover", -254}, {"failover", -254}, {"sync peer unreachable", -50}, {"failover", 0}, {"failover", 0}} {
		if err := el.Demote(ctx, "fw", c.reason, c.adjust); err != nil {
			t.Fatal(err)
		}
	}
	refused := &election{Election: fakeElection{refuse: true}, d: d, demoted: map[[2]string]int{}}
	if err := refused.Demote(ctx, "fw", "failover", -254); err == nil {
		t.Error("a refused demotion returned no error")
	}
	d.bus.Close()
	var got []events.Event
	for {
		e, err := s.Next(ctx)
		if err != nil {
			break
		}
		e.Time = time.Time{}
		got = append(got, e)
	}
	want := []events.Event{
		{Type: events.DemotionSet, Group: "fw", Reason: "failover", Priority: -254},
		{Type: events.DemotionSet, Group: "fw", Reason: "sync peer unreachable", Priority: -50},
		{Type: events.DemotionCleared, Group: "fw", Reason: "failover"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}
