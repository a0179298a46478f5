package integration

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/integration/lab"
	"github.com/ctha/ctha/internal/control"
)

// TestSyncDirect100k: 100k flows of mixed kinds (TCP, UDP, ICMP, IPv4 and
// IPv6, SNAT and DNAT, marks, zones) created in fw1's kernel appear in
// fw2's kernel (direct mode), equal field by field, the timeouts within
// tolerance; deleting them in fw1 deletes them in fw2. It logs the
// figures: time for 100k flows to reach the peer, CPU per replicated flow
// on each side, bytes per flow on the sync link.
func TestSyncDirect100k(t *testing.T) {
	lab.RequireNetns(t)
	const n = 100_000
	p := newSyncPair(t, "direct", "direct", nil)
	flows := mixedFlows(0, 0, n)
	base2 := tableCount(t, p.lab, lab.RoleFW2)

	m := p.meter()
	writeFlows(t, p.c1, kernel.Create, flows)
	created := time.Since(m.start)
	err := lab.WaitFor(60*time.Second, 20*time.Millisecond, func() (bool, error) {
		return tableCount(t, p.lab, lab.RoleFW2)-base2 >= n, nil
	})
	if err != nil {
		t.Fatalf("fw2's kernel does not hold the %d flows: %v (it has %d)", n, err, tableCount(t, p.lab, lab.RoleFW2)-base2)
	}
	t.Logf("figure: 100k flows to peer: %.2f s from the first create to all in fw2's kernel (creating them in fw1 took %.2f s)",
		time.Since(m.start).Seconds(), created.Seconds())
	m.report("replicate 100k creates (direct)", n)

	checkWritten(t, "fw1's kernel", flows, dumpTable(t, p.c1))
	waitTablesEqual(t, "fw2's kernel vs fw1's", p.c1, p.c2, true, 10*time.Second)
	waitEntries(t, p.fw1, 5*time.Second, "internal entries = 100k", func(s control.SyncStatus) bool {
		return s.InternalEntries == n && s.ExternalEntries == 0
	})
	waitEntries(t, p.fw2, 5*time.Second, "external entries = 100k", func(s control.SyncStatus) bool {
		return s.ExternalEntries == n && s.InternalEntries == 0
	})

	// Deletions follow.
	m = p.meter()
	writeFlows(t, p.c1, kernel.Delete, flows)
	err = lab.WaitFor(60*time.Second, 20*time.Millisecond, func() (bool, error) {
		return tableCount(t, p.lab, lab.RoleFW2) <= base2, nil
	})
	if err != nil {
		t.Fatalf("fw2's kernel keeps flows deleted in fw1: %v (%d left)", err, tableCount(t, p.lab, lab.RoleFW2)-base2)
	}
	t.Logf("figure: 100k deletions to peer: %.2f s", time.Since(m.start).Seconds())
	m.report("replicate 100k deletes (direct)", n)
	if left := dumpTable(t, p.c2); len(left) > 0 {
		t.Fatalf("fw2's kernel still has %d test flows", len(left))
	}
	waitEntries(t, p.fw2, 5*time.Second, "no external entries", func(s control.SyncStatus) bool { return s.ExternalEntries == 0 })
	waitEntries(t, p.fw1, 5*time.Second, "no internal entries", func(s control.SyncStatus) bool { return s.InternalEntries == 0 })
	for _, nd := range []*node{p.fw1, p.fw2} {
		s := syncStats(t, nd)
		t.Logf("%s: stats %+v", nd.role, s)
		if s.KernelFailures != 0 || s.Overruns != 0 {
			t.Errorf("%s: %d kernel write failures, %d netlink overruns; want none", nd.role, s.KernelFailures, s.Overruns)
		}
	}
}

// commitOutput is what `ctha sync commit` prints.
var commitOutput = regexp.MustCompile(`committed (\d+) entries in ([0-9.]+) ms`)

// TestSyncExternalCommit100k: in external mode 100k mixed flows created
// in fw1 reach fw2's external cache, and not its kernel; `ctha sync
// commit` then writes them into fw2's kernel, equal field by field.
// Deleting them in fw1 empties fw2's external cache. It logs the time to
// reach the peer and the commit time.
func TestSyncExternalCommit100k(t *testing.T) {
	lab.RequireNetns(t)
	const n = 100_000
	p := newSyncPair(t, "external", "external", nil)
	flows := mixedFlows(1, 0, n)
	base2 := tableCount(t, p.lab, lab.RoleFW2)

	m := p.meter()
	writeFlows(t, p.c1, kernel.Create, flows)
	waitEntries(t, p.fw2, 60*time.Second, "external entries = 100k", func(s control.SyncStatus) bool {
		return s.ExternalEntries == n
	})
	t.Logf("figure: 100k flows to peer (external cache): %.2f s from the first create", time.Since(m.start).Seconds())
	m.report("replicate 100k creates (external)", n)
	if c := tableCount(t, p.lab, lab.RoleFW2) - base2; c != 0 {
		t.Fatalf("external mode: fw2's kernel got %d entries before any commit", c)
	}
	if s := mustSyncStatus(t, p.fw2); s.InternalEntries != 0 {
		t.Errorf("fw2: %d internal entries, want 0", s.InternalEntries)
	}

	start := time.Now()
	out, err := p.fw2.ctl("sync", "commit")
	took := time.Since(start)
	if err != nil {
		t.Fatalf("ctha sync commit: %v\n%s", err, out)
	}
	mm := commitOutput.FindStringSubmatch(out)
	if mm == nil {
		t.Fatalf("ctha sync commit printed %q", out)
	}
	if e, _ := strconv.Atoi(mm[1]); e != n {
		t.Errorf("commit: %d entries, want %d", e, n)
	}
	t.Logf("figure: commit of 100k (external mode): %s ms in the daemon, %.0f ms for `ctha sync commit` end to end", mm[2], took.Seconds()*1000)
	if s := mustSyncStatus(t, p.fw2); s.LastCommit == nil || s.LastCommit.Entries != n || s.LastCommit.Failed != 0 {
		t.Errorf("fw2: last_commit %+v, want %d entries, none failed", s.LastCommit, n)
	}

	checkWritten(t, "fw1's kernel", flows, dumpTable(t, p.c1))
	waitTablesEqual(t, "fw2's kernel after commit vs fw1's", p.c1, p.c2, true, 5*time.Second)

	// Deletions follow, in the external cache.
	start = time.Now()
	writeFlows(t, p.c1, kernel.Delete, flows)
	waitEntries(t, p.fw2, 60*time.Second, "no external entries", func(s control.SyncStatus) bool { return s.ExternalEntries == 0 })
	t.Logf("figure: 100k deletions to peer (external cache): %.2f s", time.Since(start).Seconds())
	if s := syncStats(t, p.fw2); s.KernelFailures != 0 {
		t.Errorf("fw2: %d kernel write failures", s.KernelFailures)
	}
}
