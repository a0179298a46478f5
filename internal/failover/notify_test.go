package failover

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ctha/ctha/vrrp"
)

// recordingExec records each command it runs, its argv and the CTHA_*
// variables ctha sets in its environment, and returns at once; a command whose
// argv[0] is in hang waits for release (or its context).
type recordingExec struct {
	mu       sync.Mutex
	runs     []string
	timeouts []time.Duration
	hang     string
	release  chan struct{}
}

func (r *recordingExec) exec(ctx context.Context, argv, env []string, timeout time.Duration) (string, error) {
	var vars []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "CTHA_TYPE", "CTHA_INSTANCE", "CTHA_GROUP", "CTHA_INSTANCES", "CTHA_STATE", "CTHA_REASON", "CTHA_PRIORITY":
			vars = append(vars, kv) // not the daemon's own environment (CTHA_REQUIRE_NETNS)
		}
	}
	slices.Sort(vars)
	r.mu.Lock()
	r.runs = append(r.runs, strings.Join(argv, " ")+" | "+strings.Join(vars, " "))
	r.timeouts = append(r.timeouts, timeout)
	r.mu.Unlock()
	if argv[0] == r.hang {
		select {
		case <-r.release:
		case <-ctx.Done():
		}
	}
	return "", nil
}

func (r *recordingExec) ran() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.runs)
}

func move(instance string, from, to vrrp.State, reason vrrp.Reason, prio uint8) vrrp.InstanceTransition {
	return vrrp.InstanceTransition{Instance: instance, From: from, To: to, Reason: reason, Priority: prio}
}

// TestNotifyInstancesThenGroup: a step's instance commands run before the
// group's, each state's own commands before the generic ones, which get
// keepalived's four arguments; the instances' commands of a takeover wait
// for the tables, as the group's do; the stop commands run, instances
// first, when asked.
func TestNotifyInstancesThenGroup(t *testing.T) {
	tables := newFakeTables()
	tables.commitGate = make(chan struct{})
	g := NewConntrack(quietLog(), Config{
		Group: "fw", Instances: []string{"lan", "wan"}, External: true, CommitTimeout: time.Millisecond,
		Notify: Notify{Master: [][]string{{"/g/master", "x"}}, Stop: [][]string{{"/g/stop"}},
			Generic: [][]string{{"/g/notify"}}, Timeout: 7 * time.Second},
		InstanceNotify: map[string]Notify{
			"lan": {Master: [][]string{{"/lan/master", "first hop"}}, Backup: [][]string{{"/lan/backup"}},
				Stop: [][]string{{"/lan/stop"}}, Generic: [][]string{{"/lan/notify", "--flag"}}, Timeout: time.Second},
			"wan": {Master: [][]string{{"/wan/master"}}, Timeout: 2 * time.Second},
		},
	}, tables)
	r := &recordingExec{}
	g.notes.exec = r.exec
	stop := running(g, nil)

	// Startup: both instances and the group go to BACKUP in one step.
	g.InstancesTransitioned([]vrrp.InstanceTransition{
		move("lan", vrrp.Init, vrrp.Backup, vrrp.ReasonStartup, 150),
		move("wan", vrrp.Init, vrrp.Backup, vrrp.ReasonStartup, 150),
	}, true)
	g.Transitioned("fw", vrrp.Init, vrrp.Backup, vrrp.ReasonStartup)
	const lanEnv = "CTHA_GROUP=fw CTHA_INSTANCE=lan "
	backup := []string{
		"/lan/backup | " + lanEnv + "CTHA_PRIORITY=150 CTHA_REASON=startup CTHA_STATE=BACKUP CTHA_TYPE=INSTANCE",
		"/lan/notify --flag INSTANCE lan BACKUP 150 | " + lanEnv + "CTHA_PRIORITY=150 CTHA_REASON=startup CTHA_STATE=BACKUP CTHA_TYPE=INSTANCE",
		"/g/notify GROUP fw BACKUP 0 | CTHA_GROUP=fw CTHA_INSTANCES=lan wan CTHA_REASON=startup CTHA_STATE=BACKUP CTHA_TYPE=GROUP",
	}
	eventually(t, "the startup commands run", func() bool { return len(r.ran()) == len(backup) })

	// A takeover whose commit outlives commit_timeout: the VIPs have
	// moved, the tables are not done; no MASTER command runs yet.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := g.BeforeMaster(ctx, "fw"); err != nil {
		t.Fatal(err)
	}
	g.InstancesTransitioned([]vrrp.InstanceTransition{
		move("lan", vrrp.Backup, vrrp.Master, vrrp.ReasonMasterDown, 150),
		move("wan", vrrp.Backup, vrrp.Master, vrrp.ReasonGroup, 150),
	}, true)
	g.Transitioned("fw", vrrp.Backup, vrrp.Master, vrrp.ReasonMasterDown)
	time.Sleep(50 * time.Millisecond)
	if got := r.ran(); len(got) != len(backup) {
		t.Fatalf("commands ran before the takeover's tables were done: %q", got[len(backup):])
	}
	close(tables.commitGate)
	master := []string{
		"/lan/master first hop | " + lanEnv + "CTHA_PRIORITY=150 CTHA_REASON=master-down CTHA_STATE=MASTER CTHA_TYPE=INSTANCE",
		"/lan/notify --flag INSTANCE lan MASTER 150 | " + lanEnv + "CTHA_PRIORITY=150 CTHA_REASON=master-down CTHA_STATE=MASTER CTHA_TYPE=INSTANCE",
		"/wan/master | CTHA_GROUP=fw CTHA_INSTANCE=wan CTHA_PRIORITY=150 CTHA_REASON=group CTHA_STATE=MASTER CTHA_TYPE=INSTANCE",
		"/g/master x | CTHA_GROUP=fw CTHA_INSTANCES=lan wan CTHA_REASON=master-down CTHA_STATE=MASTER CTHA_TYPE=GROUP",
		"/g/notify GROUP fw MASTER 0 | CTHA_GROUP=fw CTHA_INSTANCES=lan wan CTHA_REASON=master-down CTHA_STATE=MASTER CTHA_TYPE=GROUP",
	}
	eventually(t, "the MASTER commands run", func() bool { return len(r.ran()) == len(backup)+len(master) })

	// A move of one instance in a step the group did not move in runs
	// its commands.
	g.InstancesTransitioned([]vrrp.InstanceTransition{move("lan", vrrp.Master, vrrp.Fault, vrrp.ReasonFault, 150)}, false)
	fault := []string{
		"/lan/notify --flag INSTANCE lan FAULT 150 | " + lanEnv + "CTHA_PRIORITY=150 CTHA_REASON=fault CTHA_STATE=FAULT CTHA_TYPE=INSTANCE",
	}
	eventually(t, "lan's FAULT command runs", func() bool { return len(r.ran()) == len(backup)+len(master)+len(fault) })
	stop()

	g.NotifyStop(context.Background())
	stops := []string{
		"/lan/stop | " + lanEnv + "CTHA_PRIORITY=150 CTHA_REASON=shutdown CTHA_STATE=STOP CTHA_TYPE=INSTANCE",
		"/lan/notify --flag INSTANCE lan STOP 150 | " + lanEnv + "CTHA_PRIORITY=150 CTHA_REASON=shutdown CTHA_STATE=STOP CTHA_TYPE=INSTANCE",
		"/g/stop | CTHA_GROUP=fw CTHA_INSTANCES=lan wan CTHA_REASON=shutdown CTHA_STATE=STOP CTHA_TYPE=GROUP",
		"/g/notify GROUP fw STOP 0 | CTHA_GROUP=fw CTHA_INSTANCES=lan wan CTHA_REASON=shutdown CTHA_STATE=STOP CTHA_TYPE=GROUP",
	}
	want := slices.Concat(backup, master, fault, stops)
	if diff := cmp.Diff(want, r.ran()); diff != "" {
		t.Errorf("commands run (-want +got):\n%s", diff)
	}
	// Each command has the timeout of its own block.
	wantTimeouts := []time.Duration{time.Second, time.Second, 7 * time.Second,
		time.Second, time.Second, 2 * time.Second, 7 * time.Second, 7 * time.Second,
		time.Second, time.Second, time.Second, 7 * time.Second, 7 * time.Second}
	if diff := cmp.Diff(wantTimeouts, r.timeouts); diff != "" {
		t.Errorf("timeouts (-want +got):\n%s", diff)
	}
}

// TestNotifyLoneInstance: an instance in no sync group runs its commands
// (no CTHA_GROUP) at once; states it passes through while a command hangs
// are skipped and counted, only the latest runs; its stop commands run
// when asked.
func TestNotifyLoneInstance(t *testing.T) {
	g := NewInstance(quietLog(), "dmz", Notify{
		Master: [][]string{{"/m"}}, Backup: [][]string{{"/b"}}, Fault: [][]string{{"/f"}},
		Stop: [][]string{{"/s", "bye"}}, Timeout: time.Minute,
	})
	r := &recordingExec{hang: "/b", release: make(chan struct{})}
	g.notes.exec = r.exec
	stop := running(g, nil)
	g.InstancesTransitioned([]vrrp.InstanceTransition{move("dmz", vrrp.Init, vrrp.Backup, vrrp.ReasonStartup, 100)}, false)
	eventually(t, "the BACKUP command starts", func() bool { return len(r.ran()) == 1 })
	for _, m := range []vrrp.InstanceTransition{
		move("dmz", vrrp.Backup, vrrp.Master, vrrp.ReasonMasterDown, 100),
		move("dmz", vrrp.Master, vrrp.Fault, vrrp.ReasonFault, 100),
		move("dmz", vrrp.Fault, vrrp.Backup, vrrp.ReasonFaultCleared, 100),
		move("dmz", vrrp.Backup, vrrp.Master, vrrp.ReasonMasterDown, 90),
	} {
		g.InstancesTransitioned([]vrrp.InstanceTransition{m}, false)
	}
	close(r.release)
	eventually(t, "the latest state's command runs", func() bool { return len(r.ran()) == 2 })
	stop()
	g.NotifyStop(context.Background())
	want := []string{
		"/b | CTHA_INSTANCE=dmz CTHA_PRIORITY=100 CTHA_REASON=startup CTHA_STATE=BACKUP CTHA_TYPE=INSTANCE",
		"/m | CTHA_INSTANCE=dmz CTHA_PRIORITY=90 CTHA_REASON=master-down CTHA_STATE=MASTER CTHA_TYPE=INSTANCE",
		"/s bye | CTHA_INSTANCE=dmz CTHA_PRIORITY=90 CTHA_REASON=shutdown CTHA_STATE=STOP CTHA_TYPE=INSTANCE",
	}
	if diff := cmp.Diff(want, r.ran()); diff != "" {
		t.Errorf("commands run (-want +got):\n%s", diff)
	}
	if got := g.NotifySkipped(); got != 3 {
		t.Errorf("NotifySkipped %d, want 3 (MASTER, FAULT and BACKUP passed while BACKUP's command hung)", got)
	}
}
