package integration

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/integration/lab"
	"github.com/ctha/ctha/internal/control"
)

// TestSyncAlarm: in alarm mode (no sequence numbers, no ACKs) fw2 gets
// every flow of fw1 (direct mode: into its kernel); fw1 sends every state
// again every refresh_interval, spread over it, so fw2 keeps them past
// cache_timeout; a deletion reaches fw2 at once, well before a timeout
// could remove it; and when fw1 dies, fw2 forgets its states after
// cache_timeout, from its cache and its kernel, not before.
func TestSyncAlarm(t *testing.T) {
	lab.RequireNetns(t)
	const (
		n            = 3000
		refresh      = 2 * time.Second
		cacheTimeout = 8 * time.Second
	)
	extra := `  refresh_interval = "2s"
  cache_timeout    = "8s"`
	l := lab.New(t, lab.Options{})
	p := startSyncPair(t, l,
		syncConfig("fw1", filepath.Join(t.TempDir(), "state"), "alarm",
			[]testLink{{"sync0", "sync", "10.10.3.1", "10.10.3.2", ""}}, extra),
		syncConfig("fw2", filepath.Join(t.TempDir(), "state"), "alarm",
			[]testLink{{"sync0", "sync", "10.10.3.2", "10.10.3.1", ""}}, extra))
	if s := mustSyncStatus(t, p.fw2); s.Mode != "alarm" {
		t.Fatalf("fw2 runs mode %q", s.Mode)
	}

	// Converges.
	flows := mixedFlows(4, 0, n)
	writeFlows(t, p.c1, kernel.Create, flows)
	waitTablesEqual(t, "fw2's kernel vs fw1's (alarm mode)", p.c1, p.c2, true, 20*time.Second)

	// Refreshed, spread over the interval: sample what fw2 receives.
	start := syncStats(t, p.fw2)
	var steps []uint64
	last := start.Records
	for end := time.Now().Add(cacheTimeout + refresh); time.Now().Before(end); {
		time.Sleep(250 * time.Millisecond)
		r := syncStats(t, p.fw2).Records
		steps = append(steps, r-last)
		last = r
	}
	got := last - start.Records
	var most uint64
	for _, s := range steps {
		most = max(most, s)
	}
	t.Logf("figure: records received by fw2 per 250 ms over %v (refresh %v, %d flows): %v", cacheTimeout+refresh, refresh, n, steps)
	// Five intervals: at least three complete refreshes even on a
	// loaded machine.
	if got < 3*n {
		t.Errorf("fw2 received %d records in %v, want >= %d (a refresh of %d flows every %v)", got, cacheTimeout+refresh, 3*n, n, refresh)
	}
	if most > n/2 {
		t.Errorf("fw2 received %d records within 250 ms: the refresh of %d flows every %v is not spread", most, n, refresh)
	}
	if d := tableDiff(dumpTable(t, p.c1), dumpTable(t, p.c2), true, 10); len(d) > 0 {
		t.Fatalf("fw2 lost flows while fw1 refreshes them (past cache_timeout):\n%v", d)
	}
	s2 := syncStats(t, p.fw2)
	if s2.Expired != 0 || s2.Protocol.AcksSent != 0 || s2.Protocol.NacksSent != 0 {
		t.Errorf("fw2: %d expired, %d ACKs, %d NACKs sent; want none in alarm mode with the peer refreshing",
			s2.Expired, s2.Protocol.AcksSent, s2.Protocol.NacksSent)
	}

	// A deletion goes at once: a state refreshed at most refresh ago
	// would only expire cache_timeout-refresh after its deletion.
	del := flows[:300]
	writeFlows(t, p.c1, kernel.Delete, del)
	waitTablesEqual(t, "fw2's kernel after deletions in fw1", p.c1, p.c2, true, cacheTimeout-refresh-time.Second)

	// fw1 dies: fw2 keeps the states until cache_timeout, then forgets them.
	left := n - len(del)
	if err := p.fw1.proc.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	time.Sleep(cacheTimeout - refresh - time.Second)
	if c := len(dumpTable(t, p.c2)); c != left {
		t.Errorf("fw2 holds %d flows %v after fw1 died, want all %d until cache_timeout (%v)", c, time.Since(killed).Round(time.Millisecond), left, cacheTimeout)
	}
	waitEntries(t, p.fw2, cacheTimeout+10*time.Second, "external cache emptied by cache_timeout", func(s control.SyncStatus) bool {
		return s.ExternalEntries == 0
	})
	took := time.Since(killed)
	// The kernel's deletions follow the cache's expiry through the writer
	// goroutine: they land within a moment, not in the same instant.
	if err := lab.WaitFor(2*time.Second, 20*time.Millisecond, func() (bool, error) {
		return len(dumpTable(t, p.c2)) == 0, nil
	}); err != nil {
		t.Errorf("fw2's kernel keeps %d of fw1's flows 2 s after its cache expired them", len(dumpTable(t, p.c2)))
	}
	t.Logf("figure: fw2 forgot fw1's %d states %.1f s after fw1 died (cache_timeout %v)", left, took.Seconds(), cacheTimeout)
	if took < cacheTimeout-refresh {
		t.Errorf("states expired %v after fw1 died, before cache_timeout %v minus one refresh", took, cacheTimeout)
	}
	if s := syncStats(t, p.fw2); s.Expired != uint64(left) {
		t.Errorf("fw2 counted %d expired states, want %d", s.Expired, left)
	}
}
