package failover

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync"
	"github.com/ctha/ctha/vrrp"
)

// fakeRoles is the engine as multiprimary groups see it; it records every
// call in the fakeTables' list (so that a table operation, were one made,
// would show). The first failRole calls to SetGroupRole fail.
type fakeRoles struct {
	*fakeTables
	failRole   int
	roleCalls  int
	groupRoles map[string]ctsync.Role
}

func newFakeRoles() *fakeRoles {
	return &fakeRoles{fakeTables: newFakeTables(), groupRoles: map[string]ctsync.Role{}}
}

func (f *fakeRoles) SetGroupRole(_ context.Context, group string, r ctsync.Role) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.roleCalls++
	f.calls = append(f.calls, "group "+group+" "+r.String())
	if f.roleCalls <= f.failRole {
		return errors.New("engine busy")
	}
	f.groupRoles[group] = r
	return nil
}

func (f *fakeRoles) groupRole(group string) ctsync.Role {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.groupRoles[group]
}

// onlyRoleCalls checks that the engine was asked nothing a multiprimary
// group must not ask: no commit, takeover, purge, SetRole or request.
func onlyRoleCalls(t *testing.T, f *fakeRoles) {
	t.Helper()
	calls, _ := f.snapshot()
	for _, c := range calls {
		if !strings.HasPrefix(c, "group ") && c != "settle" && c != "drain" {
			t.Errorf("a multiprimary group asked the engine for %q (calls %v)", c, calls)
		}
	}
}

// TestMultiprimaryRoles: the engine follows the group's role, level-
// triggered: a failed call is made again, a burst of transitions ends in
// the latest role, and nothing else is asked of the engine. The notify
// commands run as for any group, even while the engine refuses.
func TestMultiprimaryRoles(t *testing.T) {
	roles := newFakeRoles()
	roles.failRole = 2
	g := NewMultiprimary(quietLog(), Config{Group: "a", Notify: Notify{Master: [][]string{{"/m"}}, Backup: [][]string{{"/b"}}, Fault: [][]string{{"/f"}}, Timeout: time.Hour}}, roles)
	g.retryElection = 10 * time.Millisecond
	h := &hangingExec{release: make(chan struct{})}
	close(h.release) // the commands return at once
	g.notes.exec = h.exec
	stop := running(g, nil)
	defer stop()

	if !g.Multiprimary() || g.Conntrack() || !g.WatchesSync() {
		t.Errorf("Multiprimary %v, Conntrack %v, WatchesSync %v; want true, false, true", g.Multiprimary(), g.Conntrack(), g.WatchesSync())
	}
	g.Transitioned("a", vrrp.Init, vrrp.Backup, vrrp.ReasonStartup)
	eventually(t, "notify for BACKUP while the engine refuses", func() bool { return slices.Equal(h.ran(), []string{"BACKUP"}) })
	eventually(t, "the engine told BACKUP after two failures", func() bool {
		return roles.groupRole("a") == ctsync.RoleBackup && roles.count("group a BACKUP") == 3
	})

	if err := g.BeforeMaster(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	g.Transitioned("a", vrrp.Backup, vrrp.Master, vrrp.ReasonPreempt)
	eventually(t, "the engine told MASTER", func() bool { return roles.groupRole("a") == ctsync.RoleMaster })
	eventually(t, "notify for MASTER", func() bool { return slices.Equal(h.ran(), []string{"BACKUP", "MASTER"}) })
	if n := roles.count("settle"); n != 1 {
		t.Errorf("BeforeMaster settled %d times, want 1", n)
	}

	// A burst: the engine ends in the latest role; FAULT is not master.
	for i := range 20 {
		from, to := vrrp.Master, vrrp.Backup
		if i%2 == 1 {
			from, to = vrrp.Backup, vrrp.Master
		}
		g.Transitioned("a", from, to, vrrp.ReasonPreempt)
	}
	g.Transitioned("a", vrrp.Master, vrrp.Fault, vrrp.ReasonPreempt)
	eventually(t, "the engine ends not master", func() bool { return roles.groupRole("a") == ctsync.RoleBackup })
	eventually(t, "notify for FAULT", func() bool { r := h.ran(); return r[len(r)-1] == "FAULT" })
	onlyRoleCalls(t, roles)

	// Nothing is sent again while the role stays.
	before := roles.count("group a BACKUP")
	g.Transitioned("a", vrrp.Fault, vrrp.Backup, vrrp.ReasonPreempt)
	eventually(t, "notify for BACKUP again", func() bool { r := h.ran(); return r[len(r)-1] == "BACKUP" })
	if n := roles.count("group a BACKUP"); n != before {
		t.Errorf("BACKUP told %d more times while the engine had it", n-before)
	}
}

// TestMultiprimaryRetryStopsWithTheGroup: an engine that always refuses
// is asked again and again until the group stops; Run then returns (the
// leak check of TestMain sees no goroutine left).
func TestMultiprimaryRetryStopsWithTheGroup(t *testing.T) {
	roles := newFakeRoles()
	roles.failRole = 1 << 30
	g := NewMultiprimary(quietLog(), Config{Group: "a"}, roles)
	g.retryElection = 5 * time.Millisecond
	stop := running(g, nil)
	g.Transitioned("a", vrrp.Init, vrrp.Master, vrrp.ReasonStartup)
	eventually(t, "several attempts", func() bool { return roles.count("group a MASTER") >= 3 })
	stop()
	if r := roles.groupRole("a"); r != ctsync.RoleUnknown {
		t.Errorf("the engine has role %v though every call failed", r)
	}
}

// TestMultiprimaryWatchSync: as the conntrack group does, a multiprimary
// group's preemption waits for the peer's copy and the group is demoted
// while the peer is unreachable; two groups share one engine through a
// Fanout, and one change of the engine reaches both.
func TestMultiprimaryWatchSync(t *testing.T) {
	roles := newFakeRoles()
	roles.status.PeerUp = true
	fan := NewFanout(roles)
	type member struct {
		g  *Group
		el *fakeElection
	}
	var ms []member
	for _, name := range []string{"a", "b"} {
		g := NewMultiprimary(quietLog(), Config{Group: name, StartupSyncTimeout: time.Hour}, fan.Roles())
		g.grace, g.retryElection = 10*time.Millisecond, 20*time.Millisecond
		ms = append(ms, member{g, &fakeElection{deferred: true}})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); fan.Run(ctx) }()
	var stops []func()
	for _, m := range ms {
		stops = append(stops, running(m.g, m.el))
	}
	defer func() {
		for _, s := range stops {
			s()
		}
		cancel()
		<-done
	}()

	time.Sleep(50 * time.Millisecond)
	for i, m := range ms {
		m.el.mu.Lock()
		if !m.el.deferred {
			t.Errorf("group %d: preemption allowed before the copy was complete", i)
		}
		m.el.mu.Unlock()
	}
	roles.setStatus(func(s *ctsync.Status) { s.BulkComplete = true }) // one signal
	for i, m := range ms {
		eventually(t, fmt.Sprintf("group %d: preemption allowed", i), func() bool {
			m.el.mu.Lock()
			defer m.el.mu.Unlock()
			return !m.el.deferred
		})
	}
	roles.setStatus(func(s *ctsync.Status) { s.PeerUp = false })
	for i, m := range ms {
		eventually(t, fmt.Sprintf("group %d: demoted", i), func() bool {
			m.el.mu.Lock()
			defer m.el.mu.Unlock()
			return m.el.demotions[ReasonSyncDown] == vrrp.DemoteSyncDown
		})
	}
	roles.setStatus(func(s *ctsync.Status) { s.PeerUp = true })
	for i, m := range ms {
		eventually(t, fmt.Sprintf("group %d: demotion lifted", i), func() bool {
			m.el.mu.Lock()
			defer m.el.mu.Unlock()
			return m.el.demotions[ReasonSyncDown] == 0
		})
	}
	onlyRoleCalls(t, roles)
}

// TestMultiprimaryStartupTimeout: without the peer's copy, preemption is
// allowed at startup_sync_timeout.
func TestMultiprimaryStartupTimeout(t *testing.T) {
	roles := newFakeRoles()
	roles.status.PeerUp = true
	g := NewMultiprimary(quietLog(), Config{Group: "a", StartupSyncTimeout: 30 * time.Millisecond}, roles)
	el := &fakeElection{deferred: true}
	stop := running(g, el)
	defer stop()
	eventually(t, "preemption allowed at the timeout", func() bool {
		el.mu.Lock()
		defer el.mu.Unlock()
		return !el.deferred
	})
}

// TestMultiprimaryFailover: `ctha failover GROUP` drains this node's
// flows to the peer before the group resigns; DrainBeforeStop drains a
// master's.
func TestMultiprimaryFailover(t *testing.T) {
	roles := newFakeRoles()
	g := NewMultiprimary(quietLog(), Config{Group: "a"}, roles)
	el := &fakeElection{state: vrrp.Master}
	msg, err := g.Failover(context.Background(), el, false)
	if err != nil || !strings.Contains(msg, "resigned") {
		t.Fatalf("Failover: %q, %v", msg, err)
	}
	g.DrainBeforeStop(el)
	if n := roles.count("drain"); n != 2 {
		t.Errorf("drained %d times, want 2", n)
	}
	onlyRoleCalls(t, roles)
}
