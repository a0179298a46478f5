package integration

import (
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/integration/lab"
	"github.com/ctha/ctha/internal/control"
)

// TestSyncCommitKeepsOwnFlows: a commit pauses fw2's conntrack events
// (the kernel writes much faster when nothing listens); the flows fw2
// creates itself while it commits must still reach fw1, through the
// resync that follows the commit.
func TestSyncCommitKeepsOwnFlows(t *testing.T) {
	lab.RequireNetns(t)
	const n = 50_000
	p := newSyncPair(t, "external", "external", nil)
	writeFlows(t, p.c1, kernel.Create, mixedFlows(1, 0, n))
	waitEntries(t, p.fw2, 60*time.Second, "fw2: external entries = 50k", func(s control.SyncStatus) bool {
		return s.ExternalEntries == n
	})

	// fw2's own flows, in small batches from before the commit starts
	// until after it ends.
	own := mixedFlows(3, 0, 30_000)
	const batch = 50
	done := make(chan error, 1)
	var out string
	written := 0
	writeFlows(t, p.c2, kernel.Create, own[:batch])
	written += batch
	start := time.Now()
	go func() {
		var err error
		out, err = p.fw2.ctl("sync", "commit")
		done <- err
	}()
	var commitErr error
	ended := false
	for after := 0; after < 10 && written+batch <= len(own); {
		if !ended {
			select {
			case commitErr = <-done:
				ended = true
			default:
			}
		} else {
			after++
		}
		writeFlows(t, p.c2, kernel.Create, own[written:written+batch])
		written += batch
		time.Sleep(2 * time.Millisecond)
	}
	if !ended {
		commitErr = <-done // bounded: ctl gives up after 20 s
	}
	if commitErr != nil {
		t.Fatalf("ctha sync commit: %v\n%s", commitErr, out)
	}
	t.Logf("commit took %v (end to end); fw2 created %d flows of its own meanwhile", time.Since(start).Round(time.Millisecond), written)
	if c := tableCount(t, p.lab, lab.RoleFW2); c < n+written {
		t.Errorf("fw2's table: %d entries, want at least %d committed + %d own", c, n, written)
	}
	// fw1 holds fw2's own flows in its external cache: each of them,
	// those created while fw2's events were paused too.
	waitEntries(t, p.fw1, 15*time.Second, "fw1: external entries = fw2's own flows", func(s control.SyncStatus) bool {
		return s.ExternalEntries == written
	})
	if s := mustSyncStatus(t, p.fw2); s.InternalEntries != written {
		t.Errorf("fw2: %d internal entries, want its %d own flows", s.InternalEntries, written)
	}
}
