package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/flowgen"
	"github.com/ctha/ctha/integration/lab"
)

// TestFailoverLiveFlows is the product's point: 200 live TCP flows run
// from the client to the server through the VIPs of the example pair (the
// strict ruleset: a packet without its conntrack state is dropped as
// INVALID); the master crashes. With replication every flow survives and
// the new master drops none of their packets; the control run without
// replication loses them, which proves the test measures replication.
func TestFailoverLiveFlows(t *testing.T) {
	lab.RequireNetns(t)
	for _, tc := range []struct {
		name      string
		replicate bool
	}{{"direct replication", true}, {"control without replication", false}} {
		t.Run(tc.name, func(t *testing.T) {
			l := lab.New(t, lab.Options{NoIPv6: true})
			conf1, conf2 := exampleConfig(t, "fw1.hcl"), exampleConfig(t, "fw2.hcl")
			if !tc.replicate {
				conf1 = pairOpts{node: "fw1", priority: 150, advert: time.Second}.config()
				conf2 = pairOpts{node: "fw2", priority: 100, advert: time.Second}.config()
			}
			fw1 := startNode(t, l, lab.RoleFW1, conf1)
			waitGroupState(t, fw1, "MASTER", 10*time.Second)
			fw2 := startNode(t, l, lab.RoleFW2, conf2)
			waitGroupState(t, fw2, "BACKUP", 5*time.Second)

			dir := t.TempDir()
			ready, report := filepath.Join(dir, "ready"), filepath.Join(dir, "report.json")
			l.Start(t, lab.RoleServer, "flowgen-server", flowgenBin, "server", "-listen", lab.ServerAddr.Addr().String()+":5001")
			time.Sleep(200 * time.Millisecond)
			client := l.Start(t, lab.RoleClient, "flowgen-client", flowgenBin, "client",
				"-connect", lab.ServerAddr.Addr().String()+":5001", "-flows", "200", "-interval", "50ms",
				"-duration", "16s", "-ready", ready, "-json", report)
			if err := lab.WaitFor(15*time.Second, 20*time.Millisecond, func() (bool, error) {
				_, err := os.Stat(ready)
				return err == nil, nil
			}); err != nil {
				t.Fatalf("flows not up: %v\n%s", err, client.Log())
			}
			if tc.replicate { // the precondition: fw2 holds every live flow's state
				if err := lab.WaitFor(10*time.Second, 50*time.Millisecond, func() (bool, error) {
					st, err := fw2.status()
					return err == nil && st.Sync.ExternalEntries >= 200, err
				}); err != nil {
					t.Fatalf("fw2 never held the 200 flows: %v", err)
				}
			}
			time.Sleep(500 * time.Millisecond)

			kill := time.Now()
			fw1.proc.Kill()
			l.SetLink(lab.RoleFW1, "lan", false)
			l.SetLink(lab.RoleFW1, "wan", false)
			took, err := waitVIP(l, lab.RoleFW2, "lan", lab.LANVIP.Addr(), true, kill, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			// The INVALID counter is read while the flows still run, once they
			// have had time to recover (their first retransmission steps fall
			// within 7 s); what the client's teardown at the end may trip on
			// is not a failover drop.
			time.Sleep(time.Until(kill.Add(9 * time.Second)))
			invalid, err := l.InvalidDrops(lab.RoleFW2)
			if err != nil {
				t.Fatal(err)
			}
			if err := client.Wait(); err != nil {
				t.Fatalf("flowgen client: %v\n%s", err, client.Log())
			}
			b, err := os.ReadFile(report)
			if err != nil {
				t.Fatal(err)
			}
			var r flowgen.Report
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			t.Logf("figure: %s: %d/%d flows survived, kill -> VIP %v, longest gap %.0f ms, INVALID drops on the new master %d",
				tc.name, r.Survived, r.Flows, took.Round(time.Millisecond), r.LongestGapMs, invalid)
			if tc.replicate {
				if r.Survived != r.Flows || r.Flows != 200 {
					t.Errorf("%d of %d flows survived, want all", r.Survived, r.Flows)
				}
				if invalid != 0 {
					t.Errorf("the new master dropped %d packets of live flows as INVALID, want none", invalid)
				}
			} else if r.Survived != 0 {
				t.Errorf("without replication %d flows survived: the test does not measure replication", r.Survived)
			}
		})
	}
}
