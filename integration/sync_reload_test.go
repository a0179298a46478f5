package integration

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/integration/lab"
	"github.com/ctha/ctha/internal/control"
	"github.com/ctha/ctha/internal/events"
)

// rotatedKey is the sync key both nodes move to.
const rotatedKey = "# rotated\nffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\n"

// TestSyncReload: conntrack_sync changes apply on SIGHUP without a
// restart and without a VRRP transition (issue 20). On the rig's pair
// with 200 live flows (direct cache): a reload whose link address does not
// exist is reported and changes nothing; then the sync key is rotated,
// the backup first (meanwhile each node refuses the other's datagrams and
// counts them), then the master. Neither node moves (a demotion, both
// nodes alike, would come only if the keys differed for over a second),
// every flow survives, the backup gets a new complete copy, and a flow
// the master makes after the reload reaches the backup's kernel.
func TestSyncReload(t *testing.T) {
	lab.RequireNetns(t)
	r := newFailRig(t, "direct", true, 0)
	r.startFlows(9 * time.Second)
	fw1, fw2 := r.nodes[lab.RoleFW1], r.nodes[lab.RoleFW2]
	ev1, ev2 := startEvents(t, fw1), startEvents(t, fw2)
	before := r.transitions()
	bulks := syncStats(t, fw2).BulksReceived
	event := time.Now()

	reload := func(n *node, conf string) {
		t.Helper()
		if err := os.WriteFile(n.config, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := n.proc.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	// waitLog waits until the node's log holds s.
	waitLog := func(n *node, s string) {
		t.Helper()
		if err := lab.WaitFor(5*time.Second, 20*time.Millisecond, func() (bool, error) {
			return strings.Contains(n.proc.Log(), s), nil
		}); err != nil {
			t.Fatalf("%s: %q not logged: %v\n%s", n.role, s, err, n.proc.Tail(20))
		}
	}

	// A link address the node does not have: the running engine goes on.
	badAddr := strings.Replace(r.conf[lab.RoleFW2], `local     = "10.10.3.2"`, `local     = "10.10.3.99"`, 1)
	if badAddr == r.conf[lab.RoleFW2] {
		t.Fatal("fw2's configuration has no sync link address to break")
	}
	reload(fw2, badAddr)
	waitLog(fw2, "conntrack_sync change not applied")
	if s := mustSyncStatus(t, fw2); !s.PeerUp || !s.BulkComplete {
		t.Errorf("fw2 after the refused sync change: peer_up %v bulk_complete %v, want the running engine's", s.PeerUp, s.BulkComplete)
	}

	// The key, backup first.
	for _, n := range []*node{fw2, fw1} {
		if err := os.WriteFile(filepath.Join(n.dir, "sync.key"), []byte(rotatedKey), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	reload(fw2, r.conf[lab.RoleFW2])
	waitLog(fw2, "sync engine replaced")
	if err := lab.WaitFor(2*time.Second, 20*time.Millisecond, func() (bool, error) {
		return syncStats(t, fw1).Drops["auth"] > 0 && syncStats(t, fw2).Drops["auth"] > 0, nil
	}); err != nil {
		t.Errorf("while the keys differ, the datagrams are not refused as auth failures on both nodes: %v", err)
	}
	reload(fw1, r.conf[lab.RoleFW1])
	waitLog(fw1, "sync engine replaced")
	err := lab.WaitFor(5*time.Second, 50*time.Millisecond, func() (bool, error) {
		s, err := syncStatus(fw2)
		return err == nil && s.PeerUp && s.BulkComplete && s.BulkReceived >= rigFlows && syncStats(t, fw2).BulksReceived > bulks, err
	})
	if err != nil {
		s, _ := syncStatus(fw2)
		t.Fatalf("fw2 got no new complete copy of the %d flows after the master's reload: %v (sync %+v)\n%s", rigFlows, err, s, fw2.proc.Tail(20))
	}
	t.Logf("new complete copy on fw2 %v after the first SIGHUP", time.Since(event).Round(time.Millisecond))

	// A flow the master's new engine finds reaches the backup's kernel.
	o := ct.NewTuple(ct.ProtoTCP, netip.MustParseAddr("10.10.1.77"), netip.MustParseAddr("10.10.2.200"), 40000, 80)
	fresh := ct.Flow{Orig: o, Reply: o.Reverse(), Status: ct.StatusConfirmed | ct.StatusSeenReply | ct.StatusAssured,
		Timeout: 600, TCP: ct.TCPInfo{State: ct.TCPEstablished}}
	writeFlows(t, dialCT(t, r.l.NS(lab.RoleFW1)), kernel.Create, []ct.Flow{fresh})
	c2 := dialCT(t, r.l.NS(lab.RoleFW2))
	if err := lab.WaitFor(3*time.Second, 50*time.Millisecond, func() (bool, error) {
		_, ok := dumpTable(t, c2)[fresh.Key()]
		return ok, nil
	}); err != nil {
		t.Errorf("a flow made on the master after the reload is not in the backup's kernel: %v", err)
	}

	// The peer's role comes with its first keep-alive to the new engine.
	if err := r.waitStatus(2*time.Second, func(_ string, st control.Status) bool {
		return st.Sync != nil && st.Sync.PeerRole != "UNKNOWN"
	}); err != nil {
		t.Error(err)
	}
	r.checkStatus(lab.RoleFW1, "MASTER", "BACKUP")
	r.checkStatus(lab.RoleFW2, "BACKUP", "MASTER")
	r.expectTransitions(before, "the sync reloads")
	out := r.finish(lab.RoleFW1, event.Add(-6*time.Second))
	r.expectSurvived(out)
	for role, evs := range map[string][]events.Event{lab.RoleFW1: ev1.stop(t), lab.RoleFW2: ev2.stop(t)} {
		for _, e := range evs {
			switch e.Type {
			case events.GroupTransition, events.InstanceTransition, events.SplitBrainBegin:
				t.Errorf("%s: %s event across the sync reloads: %+v", role, e.Type, e)
			case events.DemotionSet:
				// Only if the keys differed for over the peer timeout (a
				// loaded machine between the two SIGHUPs): both nodes are
				// demoted alike, which moves nothing.
				t.Logf("%s: demoted across the sync reloads: %+v", role, e)
			}
		}
		applied := 0
		for _, e := range evs {
			if e.Type == events.ReloadApplied && strings.Contains(strings.Join(e.Changes, " "), "conntrack_sync: key") {
				applied++
			}
		}
		if applied != 1 {
			t.Errorf("%s: %d reload_applied events with the new key, want 1: %+v", role, applied, evs)
		}
		if role == lab.RoleFW2 {
			if _, ok := findEvent(evs, events.ReloadApplied, func(e events.Event) bool {
				return strings.Contains(e.Error, "conntrack_sync change not applied") && strings.Contains(e.Error, "10.10.3.99")
			}); !ok {
				t.Errorf("fw2: the refused sync change is not in a reload event: %+v", evs)
			}
		}
	}
}
