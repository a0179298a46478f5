package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ctha/ctha/ctsync"
	"github.com/ctha/ctha/vrrp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeTables records what the choreography asks of the engine. Commit
// blocks until commitGate is closed (when it is set).
type fakeTables struct {
	mu         sync.Mutex
	calls      []string
	role       ctsync.Role
	commitGate chan struct{}
	status     ctsync.Status
	changed    chan struct{}
}

func newFakeTables() *fakeTables { return &fakeTables{changed: make(chan struct{}, 1)} }

func (f *fakeTables) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fakeTables) Settle(context.Context) error { f.record("settle"); return nil }
func (f *fakeTables) Commit(context.Context) (ctsync.CommitResult, error) {
	f.record("commit")
	if f.commitGate != nil {
		<-f.commitGate
	}
	f.record("commit done")
	return ctsync.CommitResult{}, nil
}
func (f *fakeTables) TakeOver(context.Context) error { f.record("takeover"); return nil }
func (f *fakeTables) SetRole(_ context.Context, r ctsync.Role) error {
	f.mu.Lock()
	f.role = r
	f.mu.Unlock()
	f.record("role " + r.String())
	return nil
}
func (f *fakeTables) Request(context.Context) error      { f.record("request"); return nil }
func (f *fakeTables) Purge(context.Context) (int, error) { f.record("purge"); return 0, nil }
func (f *fakeTables) Drain(context.Context) bool         { f.record("drain"); return true }
func (f *fakeTables) Status() ctsync.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}
func (f *fakeTables) Changed() <-chan struct{} { return f.changed }

func (f *fakeTables) setStatus(fn func(*ctsync.Status)) {
	f.mu.Lock()
	fn(&f.status)
	f.mu.Unlock()
	signal(f.changed)
}

func (f *fakeTables) snapshot() ([]string, ctsync.Role) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls), f.role
}

func (f *fakeTables) count(call string) int {
	calls, _ := f.snapshot()
	n := 0
	for _, c := range calls {
		if c == call {
			n++
		}
	}
	return n
}

// fakeElection records what the bridge asks of the election; the first
// failDemote calls to Demote fail.
type fakeElection struct {
	mu         sync.Mutex
	deferred   bool
	demotions  map[string]int
	demoteCall int
	failDemote int
	state      vrrp.State
}

func (e *fakeElection) GroupState(string) (vrrp.State, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.state, true
}
func (e *fakeElection) SetDeferred(_ context.Context, _ string, d bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.deferred = d
	return nil
}
func (e *fakeElection) Demote(_ context.Context, _, reason string, adjust int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.demoteCall++
	if e.demoteCall <= e.failDemote {
		return errors.New("group busy")
	}
	if e.demotions == nil {
		e.demotions = map[string]int{}
	}
	e.demotions[reason] = adjust
	return nil
}
func (e *fakeElection) Resign(context.Context, string) (bool, error) { return true, nil }

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// eventually waits up to 5 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not within 5s", what)
}

// running starts g.Run and returns the function that stops it and waits.
func running(g *Group, el Election) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); g.Run(ctx, el) }()
	return func() { cancel(); <-done }
}

// hangingExec is a notify runner whose commands hang until released (or
// the group stops); it records the state of each command it was given.
type hangingExec struct {
	mu      sync.Mutex
	states  []string
	release chan struct{}
}

func (h *hangingExec) exec(ctx context.Context, _, env []string, _ time.Duration) (string, error) {
	for _, kv := range env {
		if s, ok := strings.CutPrefix(kv, "CTHA_STATE="); ok {
			h.mu.Lock()
			h.states = append(h.states, s)
			h.mu.Unlock()
		}
	}
	select {
	case <-h.release:
	case <-ctx.Done():
	}
	return "", nil
}

func (h *hangingExec) ran() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.states)
}

// TestHangingNotifyAcrossFailoverCycles: 12 failover and cancel cycles
// while the notify commands hang. No transition is lost: the tables
// follow every role at once and end in the group's latest; the notify
// commands run for the state the group is in when the hanging one ends,
// and the states skipped meanwhile are counted.
func TestHangingNotifyAcrossFailoverCycles(t *testing.T) {
	tables := newFakeTables()
	g := NewConntrack(quietLog(), Config{Group: "fw", Notify: Notify{Master: [][]string{{"/m"}}, Backup: [][]string{{"/b"}}, Timeout: time.Hour}}, tables)
	h := &hangingExec{release: make(chan struct{})}
	g.notes.exec = h.exec
	stop := running(g, nil)
	defer stop()

	g.Transitioned("fw", vrrp.Init, vrrp.Master, vrrp.ReasonStartup)
	eventually(t, "the first notify command starts", func() bool { return len(h.ran()) == 1 })
	transitions := 1
	for cycle := range 12 {
		// ctha failover: the group resigns; --cancel: it takes over again.
		g.Transitioned("fw", vrrp.Master, vrrp.Backup, vrrp.ReasonResign)
		eventually(t, fmt.Sprintf("cycle %d: the tables follow BACKUP while notify hangs", cycle), func() bool {
			_, role := tables.snapshot()
			return role == ctsync.RoleBackup
		})
		if err := g.BeforeMaster(context.Background(), "fw"); err != nil {
			t.Fatal(err)
		}
		g.Transitioned("fw", vrrp.Backup, vrrp.Master, vrrp.ReasonPreempt)
		transitions += 2
		eventually(t, fmt.Sprintf("cycle %d: the tables follow MASTER while notify hangs", cycle), func() bool {
			return tables.count("takeover") == cycle+2
		})
	}
	// A last failover the notify commands will find the group in.
	g.Transitioned("fw", vrrp.Master, vrrp.Backup, vrrp.ReasonResign)
	transitions++
	eventually(t, "the tables end in the group's latest role", func() bool {
		_, role := tables.snapshot()
		return role == ctsync.RoleBackup && tables.count("request") == 13
	})
	if got := h.ran(); len(got) != 1 {
		t.Fatalf("notify commands started %v while the first hung, want only the first", got)
	}
	close(h.release)
	eventually(t, "notify runs for the state the group is in", func() bool { return len(h.ran()) == 2 })
	if got, want := h.ran(), []string{"MASTER", "BACKUP"}; !slices.Equal(got, want) {
		t.Errorf("notify ran for %v, want %v", got, want)
	}
	if got, want := g.NotifySkipped(), uint64(transitions-2); got != want {
		t.Errorf("NotifySkipped %d, want %d (every transition but the two notified)", got, want)
	}
}

// TestTakeOverAbandonedAfterLongCommit: the commit outlives the
// mastership (the VIPs moved at commit_timeout, then a better master
// appeared): the tables follow BACKUP and the takeover's adoption never
// runs, not even once the commit ends.
func TestTakeOverAbandonedAfterLongCommit(t *testing.T) {
	tables := newFakeTables()
	tables.commitGate = make(chan struct{})
	g := NewConntrack(quietLog(), Config{Group: "fw", External: true, CommitTimeout: 20 * time.Millisecond,
		PurgeDelay: time.Hour}, tables)
	stop := running(g, nil)
	defer stop()

	start := time.Now()
	if err := g.BeforeMaster(context.Background(), "fw"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("BeforeMaster waited %v for the commit, want commit_timeout (20ms)", took)
	}
	g.Transitioned("fw", vrrp.Backup, vrrp.Master, vrrp.ReasonMasterDown)
	eventually(t, "master role", func() bool { _, r := tables.snapshot(); return r == ctsync.RoleMaster })
	g.Transitioned("fw", vrrp.Master, vrrp.Backup, vrrp.ReasonHigherPriority)
	eventually(t, "backup role and a request", func() bool {
		_, r := tables.snapshot()
		return r == ctsync.RoleBackup && tables.count("request") == 1
	})
	close(tables.commitGate)
	eventually(t, "the commit ends", func() bool { return tables.count("commit done") == 1 })
	time.Sleep(50 * time.Millisecond)
	if n := tables.count("takeover"); n != 0 {
		calls, _ := tables.snapshot()
		t.Errorf("TakeOver ran %d times after the group left MASTER: %v", n, calls)
	}
}

// TestPurgeScheduling: a backup in external mode purges after
// purge_delay; a takeover before it cancels the purge; a node that has
// just started asks for no copy of its own (the protocol does).
func TestPurgeScheduling(t *testing.T) {
	tables := newFakeTables()
	g := NewConntrack(quietLog(), Config{Group: "fw", External: true, CommitTimeout: time.Second,
		PurgeDelay: 30 * time.Millisecond}, tables)
	stop := running(g, nil)
	defer stop()

	g.Transitioned("fw", vrrp.Init, vrrp.Backup, vrrp.ReasonStartup)
	eventually(t, "the purge", func() bool { return tables.count("purge") == 1 })
	if n := tables.count("request"); n != 0 {
		t.Errorf("a node that just started requested the copy %d times itself", n)
	}

	g.Transitioned("fw", vrrp.Backup, vrrp.Master, vrrp.ReasonPreempt)
	g.Transitioned("fw", vrrp.Master, vrrp.Backup, vrrp.ReasonHigherPriority)
	eventually(t, "a request after MASTER", func() bool { return tables.count("request") == 1 })
	if err := g.BeforeMaster(context.Background(), "fw"); err != nil { // before the purge is due
		t.Fatal(err)
	}
	g.Transitioned("fw", vrrp.Backup, vrrp.Master, vrrp.ReasonPreempt)
	time.Sleep(100 * time.Millisecond)
	if n := tables.count("purge"); n != 1 {
		t.Errorf("%d purges; the takeover before the delay should have cancelled the second", n)
	}
}

// TestWatchSync: the deferral is lifted as soon as the tables say the
// copy is complete, without polling; the demotion follows the peer's
// reachability after the grace, and a failed call to the election is
// made again rather than assumed done.
func TestWatchSync(t *testing.T) {
	tables := newFakeTables()
	tables.status.PeerUp = true
	g := NewConntrack(quietLog(), Config{Group: "fw", StartupSyncTimeout: time.Hour}, tables)
	g.grace, g.retryElection = 10*time.Millisecond, 20*time.Millisecond
	el := &fakeElection{deferred: true, failDemote: 1}
	stop := running(g, el)
	defer stop()

	time.Sleep(50 * time.Millisecond)
	el.mu.Lock()
	deferred := el.deferred
	el.mu.Unlock()
	if !deferred {
		t.Fatal("preemption allowed before the copy was complete")
	}
	tables.setStatus(func(s *ctsync.Status) { s.BulkComplete = true })
	eventually(t, "preemption allowed", func() bool {
		el.mu.Lock()
		defer el.mu.Unlock()
		return !el.deferred
	})

	tables.setStatus(func(s *ctsync.Status) { s.PeerUp = false })
	eventually(t, "demoted, after one failed call", func() bool {
		el.mu.Lock()
		defer el.mu.Unlock()
		return el.demotions[ReasonSyncDown] == vrrp.DemoteSyncDown && el.demoteCall == 2
	})
	tables.setStatus(func(s *ctsync.Status) { s.PeerUp = true })
	eventually(t, "demotion lifted", func() bool {
		el.mu.Lock()
		defer el.mu.Unlock()
		return el.demotions[ReasonSyncDown] == 0
	})
}
