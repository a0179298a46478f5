package integration

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/lab"
	"github.com/ctha/ctha/internal/control"
)

// ctdProtocolConfig is a sync-only node that speaks conntrackd's
// protocol to a conntrackd peer.
func ctdProtocolConfig(stateDir string) string {
	return fmt.Sprintf(`node_name = "fw1"
state_dir = %q
log {
  level = "debug"
}
conntrack_sync {
  protocol = "conntrackd"
  cache    = "direct"
  link "sync0" {
    interface = "sync"
    local     = %q
    peer      = %q
  }
}
`, stateDir, lab.FW1Sync.Addr(), lab.FW2Sync.Addr())
}

// TestConntrackdProtocol: fw1 runs ctha with protocol = "conntrackd", fw2
// the real conntrackd 1.4.7 (FTFW over UDP, checksum on, external cache).
// A flow created in fw1's table reaches conntrackd's external cache, and
// its deletion follows; a flow created in fw2's reaches ctha's external
// cache and fw1's kernel (direct); after conntrackd's external cache is
// flushed, `conntrackd -n` (a RESYNC) brings ctha's table back into it,
// and so does `ctha sync bulk`; `ctha sync request` brings conntrackd's;
// a restarted conntrackd gets ctha's table unasked (its HELLO).
func TestConntrackdProtocol(t *testing.T) {
	lab.RequireNetns(t)
	start := time.Now()
	l := lab.New(t, lab.Options{NoIPv6: true})
	ctd := l.StartConntrackd(t, lab.RoleFW2, lab.ConntrackdConfig{})
	fw1 := startNode(t, l, lab.RoleFW1, ctdProtocolConfig(filepath.Join(t.TempDir(), "state")))
	waitEntries(t, fw1, 10*time.Second, "conntrackd peer up, its copy complete", func(s control.SyncStatus) bool {
		return s.PeerUp && s.BulkComplete
	})
	if s := mustSyncStatus(t, fw1); s.Protocol != "conntrackd" || s.KeyFingerprint != "" || len(s.Links) != 1 || !s.Links[0].Up {
		t.Errorf("fw1's sync status: protocol %q, key_fingerprint %q, links %+v", s.Protocol, s.KeyFingerprint, s.Links)
	}

	insert := func(role string, sport int) {
		l.MustExec(t, role, "conntrack", "-I", "-p", "tcp", "-s", "10.10.1.100", "-d", "10.10.2.100",
			"--sport", fmt.Sprint(sport), "--dport", "5001", "--state", "ESTABLISHED", "-t", "3600", "-u", "ASSURED,SEEN_REPLY")
	}
	inExternal := func(sport int) (bool, error) {
		out, err := ctd.Ctl("-e")
		return strings.Contains(out, fmt.Sprintf("sport=%d ", sport)), err
	}
	waitExternal := func(what string, sport int, want bool) {
		t.Helper()
		if err := lab.WaitFor(5*time.Second, 50*time.Millisecond, func() (bool, error) {
			ok, err := inExternal(sport)
			return ok == want, err
		}); err != nil {
			out, _ := ctd.Ctl("-e")
			t.Fatalf("%s: %v\nconntrackd -e:\n%s\nconntrackd -s:\n%s", what, err, out, must(ctd.Ctl("-s")))
		}
	}

	// fw1 -> conntrackd.
	insert(lab.RoleFW1, 40001)
	insert(lab.RoleFW1, 40002)
	waitExternal("fw1's flow in conntrackd's external cache", 40001, true)
	waitExternal("fw1's second flow in conntrackd's external cache", 40002, true)
	l.MustExec(t, lab.RoleFW1, "conntrack", "-D", "-p", "tcp", "--sport", "40002", "--dport", "5001")
	waitExternal("fw1's deleted flow gone from conntrackd's external cache", 40002, false)

	// conntrackd -> fw1.
	insert(lab.RoleFW2, 40101)
	waitEntries(t, fw1, 5*time.Second, "conntrackd's flow in ctha's external cache", func(s control.SyncStatus) bool {
		return s.ExternalEntries == 1 && s.InternalEntries == 1
	})
	if err := lab.WaitFor(5*time.Second, 50*time.Millisecond, func() (bool, error) {
		out, err := l.Exec(lab.RoleFW1, "conntrack", "-L", "-p", "tcp", "--sport", "40101")
		return strings.Contains(out, "sport=40101 "), err
	}); err != nil {
		t.Fatalf("conntrackd's flow not in fw1's kernel (direct cache): %v", err)
	}

	// conntrackd -n: ctha answers the RESYNC with its table.
	if _, err := ctd.Ctl("-f", "external"); err != nil {
		t.Fatal(err)
	}
	waitExternal("conntrackd's external cache flushed", 40001, false)
	sent := syncStats(t, fw1).BulksSent
	if _, err := ctd.Ctl("-n"); err != nil {
		t.Fatal(err)
	}
	waitExternal("ctha's table in conntrackd's external cache after conntrackd -n", 40001, true)
	if got := syncStats(t, fw1).BulksSent; got != sent+1 {
		t.Errorf("fw1 sent %d tables after conntrackd -n, want %d", got, sent+1)
	}

	// ctha sync request: conntrackd answers with its internal cache.
	before := syncStats(t, fw1).BulksReceived
	if out, err := fw1.ctl("sync", "request"); err != nil {
		t.Fatalf("ctha sync request: %v\n%s", err, out)
	}
	waitEntries(t, fw1, 8*time.Second, "conntrackd's copy complete again after ctha sync request", func(s control.SyncStatus) bool {
		return s.BulkComplete && s.BulkReceived == 1 && s.ExternalEntries == 1
	})
	if got := syncStats(t, fw1).BulksReceived; got <= before {
		t.Errorf("bulks received %d after ctha sync request, %d before", got, before)
	}
	// ctha sync bulk (conntrackd -B): ctha's table, unasked.
	if _, err := ctd.Ctl("-f", "external"); err != nil {
		t.Fatal(err)
	}
	waitExternal("conntrackd's external cache flushed again", 40001, false)
	if out, err := fw1.ctl("sync", "bulk"); err != nil {
		t.Fatalf("ctha sync bulk: %v\n%s", err, out)
	}
	waitExternal("ctha's table in conntrackd's external cache after ctha sync bulk", 40001, true)

	// conntrackd restarts (empty caches): its first messages say HELLO,
	// and ctha sends it its table unasked, and asks for its own.
	if err := ctd.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	ctd = l.StartConntrackd(t, lab.RoleFW2, lab.ConntrackdConfig{})
	waitExternal("ctha's table in the restarted conntrackd's external cache", 40001, true)
	waitEntries(t, fw1, 8*time.Second, "the restarted conntrackd's copy complete", func(s control.SyncStatus) bool {
		return s.PeerUp && s.BulkComplete && s.ExternalEntries == 1
	})
	if n := strings.Count(fw1.proc.Log(), "conntrackd peer started"); n != 2 {
		t.Errorf("fw1 logged %d starts of conntrackd, want 2 (the first contact and the restart)", n)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("took %v, want under 20 s", took.Round(time.Millisecond))
	}
	t.Logf("took %v", time.Since(start).Round(time.Millisecond))
}

func must(s string, _ error) string { return s }
