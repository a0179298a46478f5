package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/lab"
)

// countFlows counts conntrack entries of role matching the lab's test
// flows (dport 5001 from the client).
func countFlows(l *lab.Lab, role string) int {
	out, err := l.Exec(role, "conntrack", "-L", "-p", "tcp", "--dport", "5001")
	if err != nil {
		return -1
	}
	return strings.Count(out, "dport=5001")
}

// TestChoreographySmoke: the example pair replicates flows created on the
// master; a crash hands them to the backup, which adopts them; the
// rebooted primary waits for its bulk copy before it preempts.
func TestChoreographySmoke(t *testing.T) {
	lab.RequireNetns(t)
	l := lab.New(t, lab.Options{NoIPv6: true})
	fw1 := startNode(t, l, lab.RoleFW1, exampleConfig(t, "fw1.hcl"))
	waitGroupState(t, fw1, "MASTER", 10*time.Second)
	fw2 := startNode(t, l, lab.RoleFW2, exampleConfig(t, "fw2.hcl"))
	waitGroupState(t, fw2, "BACKUP", 5*time.Second)

	const n = 50
	for i := range n {
		l.MustExec(t, lab.RoleFW1, "conntrack", "-I", "-p", "tcp", "-s", "10.10.1.100", "-d", "10.10.2.100",
			"--sport", fmt.Sprint(41000+i), "--dport", "5001", "--state", "ESTABLISHED", "-t", "3600", "-u", "ASSURED,SEEN_REPLY")
	}
	if err := lab.WaitFor(5*time.Second, 50*time.Millisecond, func() (bool, error) { return countFlows(l, lab.RoleFW2) >= n, nil }); err != nil {
		t.Fatalf("fw2 has %d of %d flows", countFlows(l, lab.RoleFW2), n)
	}

	fw1.proc.Kill()
	l.SetLink(lab.RoleFW1, "lan", false)
	l.SetLink(lab.RoleFW1, "wan", false)
	waitGroupState(t, fw2, "MASTER", 10*time.Second)
	if err := lab.WaitFor(3*time.Second, 50*time.Millisecond, func() (bool, error) {
		st, err := fw2.status()
		return err == nil && st.Sync.InternalEntries >= n && st.Sync.ExternalEntries == 0, err
	}); err != nil {
		st, _ := fw2.status()
		t.Fatalf("fw2 did not adopt the flows: %+v\n%s", st.Sync, fw2.proc.Tail(20))
	}

	// fw1 reboots: empty table, links back.
	l.MustExec(t, lab.RoleFW1, "conntrack", "-F")
	l.SetLink(lab.RoleFW1, "lan", true)
	l.SetLink(lab.RoleFW1, "wan", true)
	fw1 = startNode(t, l, lab.RoleFW1, exampleConfig(t, "fw1.hcl"))
	// It must not take the VIP before its copy is complete...
	sawDeferred := false
	err := lab.WaitFor(15*time.Second, 10*time.Millisecond, func() (bool, error) {
		st, err := fw1.status()
		if err != nil {
			return false, err
		}
		sawDeferred = sawDeferred || st.Groups[0].PreemptDeferred
		if st.Groups[0].State == "MASTER" {
			if c := countFlows(l, lab.RoleFW1); c < n {
				return false, fmt.Errorf("fw1 took over with %d of %d flows", c, n)
			}
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, fw1.proc.Tail(30))
	}
	// The deferral may last only milliseconds (50 flows): if status
	// never caught it, the log says why preemption was allowed.
	if lifted := `msg="preemption allowed" group=fw reason="bulk copy complete"`; !sawDeferred && !strings.Contains(fw1.proc.Log(), lifted) {
		t.Errorf("status never showed preempt_deferred, and the log does not say the copy lifted it")
	}
	if want := fmt.Sprintf("copy_received=%d copy_expected=%d", n, n); !strings.Contains(fw1.proc.Log(), want) {
		t.Errorf("the deferral was not lifted by the copy of the %d flows (%s):\n%s", n, want, fw1.proc.Tail(30))
	}
	// The metrics endpoint (control.metrics default 127.0.0.1:9477) tells the same.
	m := l.MustExec(t, lab.RoleFW1, "curl", "-sf", "http://127.0.0.1:9477/metrics")
	for _, want := range []string{`ctha_group_state{group="fw"} 2`, `ctha_vrrp_state{instance="lan"} 2`, "ctha_sync_peer_up 1",
		`ctha_sync_drops_total{reason="auth"} 0`, `ctha_sync_cache_entries{cache="internal"}`,
		"go_goroutines ", "process_resident_memory_bytes "} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Every metric the monitoring examples name (primary-backup).
	checkScrapeNames(t, m)
	if out, err := fw1.ctl("dump", "internal"); err != nil || !strings.Contains(out, fmt.Sprintf("%d entries", n)) && !strings.Contains(out, "10.10.1.100:41000") {
		t.Errorf("dump internal: %v\n%s", err, out)
	}
	t.Log(fw1.proc.Tail(15))
}
