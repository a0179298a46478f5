package integration

import (
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/integration/lab"
	"github.com/ctha/ctha/internal/control"
)

// lossRuleset drops 10% of the sync link's datagrams, in and out.
const lossRuleset = `table inet ctloss {
	chain in {
		type filter hook input priority -300;
		udp dport 3780 numgen random mod 100 < 10 counter drop
	}
	chain out {
		type filter hook output priority -300;
		udp dport 3780 numgen random mod 100 < 10 counter drop
	}
}
`

var nftCounter = regexp.MustCompile(`counter packets (\d+)`)

// lossDrops is how many datagrams the loss rules of role dropped.
func lossDrops(t *testing.T, l *lab.Lab, role string) int {
	t.Helper()
	out := l.MustExec(t, role, "nft", "list", "table", "inet", "ctloss")
	n := 0
	for _, m := range nftCounter.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.Atoi(m[1])
		n += v
	}
	return n
}

// TestSyncLoss: with 10% of the sync link's datagrams dropped in both
// namespaces, in and out, 20k mixed flows created in fw1 still end equal
// in fw2's kernel (direct mode), and their deletions follow.
func TestSyncLoss(t *testing.T) {
	lab.RequireNetns(t)
	const n = 20_000
	p := newSyncPair(t, "direct", "direct", func(l *lab.Lab) {
		for _, fw := range []string{lab.RoleFW1, lab.RoleFW2} {
			if err := l.Nft(fw, lossRuleset); err != nil {
				t.Fatal(err)
			}
		}
	})
	flows := mixedFlows(3, 0, n)
	start := time.Now()
	writeFlows(t, p.c1, kernel.Create, flows)
	checkWritten(t, "fw1's kernel", flows, dumpTable(t, p.c1))
	waitTablesEqual(t, "fw2's kernel vs fw1's, 10% loss", p.c1, p.c2, true, 60*time.Second)
	t.Logf("figure: 20k flows to peer with 10%% loss each way: %.2f s", time.Since(start).Seconds())
	waitEntries(t, p.fw2, 10*time.Second, "external entries = 20k", func(s control.SyncStatus) bool { return s.ExternalEntries == n })

	writeFlows(t, p.c1, kernel.Delete, flows)
	waitTablesEqual(t, "fw2's kernel vs fw1's after deletions, 10% loss", p.c1, p.c2, true, 60*time.Second)
	waitEntries(t, p.fw2, 10*time.Second, "no external entries", func(s control.SyncStatus) bool { return s.ExternalEntries == 0 })

	d1, d2 := lossDrops(t, p.lab, lab.RoleFW1), lossDrops(t, p.lab, lab.RoleFW2)
	s1, s2 := syncStats(t, p.fw1), syncStats(t, p.fw2)
	t.Logf("loss rules dropped %d datagrams in fw1, %d in fw2; fw1 resent %d, fw2 sent %d NACKs", d1, d2, s1.Protocol.Resent, s2.Protocol.NacksSent)
	if d1 == 0 || d2 == 0 || s1.Protocol.Resent == 0 {
		t.Errorf("no loss happened: the test proves nothing")
	}
}

// TestSyncPeerRestart: fw2's ctha is killed while fw1's flows are being
// created and started again meanwhile; its request for a bulk copy brings
// its external cache and its kernel table (direct mode) back equal to
// fw1's, and fw1's later deletions still reach fw2's kernel. 20k flows.
func TestSyncPeerRestart(t *testing.T) {
	lab.RequireNetns(t)
	const n, batch = 20_000, 500
	p := newSyncPair(t, "direct", "direct", nil)
	flows := mixedFlows(4, 0, n)
	for i := 0; i < n; i += batch {
		writeFlows(t, p.c1, kernel.Create, flows[i:i+batch])
		switch i {
		case 5000:
			// Mid-stream: a crash.
			if err := p.fw2.proc.Kill(); err != nil {
				t.Fatal(err)
			}
			t.Logf("fw2's ctha killed after %d flows", i+batch)
		case 12000:
			p.restartFW2()
			t.Logf("fw2's ctha started again after %d flows", i+batch)
		}
		time.Sleep(10 * time.Millisecond)
	}
	checkWritten(t, "fw1's kernel", flows, dumpTable(t, p.c1))
	waitEntries(t, p.fw2, 30*time.Second, "external entries = 20k after the restart", func(s control.SyncStatus) bool {
		return s.ExternalEntries == n && s.BulkComplete && s.PeerUp
	})
	waitTablesEqual(t, "fw2's kernel vs fw1's after the restart", p.c1, p.c2, true, 30*time.Second)
	// The restarted node's copies are the peer's flows, not its own: it
	// claims none of them.
	waitEntries(t, p.fw2, 5*time.Second, "no internal entries", func(s control.SyncStatus) bool { return s.InternalEntries == 0 })
	waitEntries(t, p.fw1, 5*time.Second, "internal 20k, no external entries", func(s control.SyncStatus) bool {
		return s.InternalEntries == n && s.ExternalEntries == 0
	})

	writeFlows(t, p.c1, kernel.Delete, flows)
	waitTablesEqual(t, "fw2's kernel vs fw1's after deletions", p.c1, p.c2, true, 30*time.Second)
	waitEntries(t, p.fw2, 10*time.Second, "no external entries", func(s control.SyncStatus) bool { return s.ExternalEntries == 0 })
}

// TestSyncNetlinkOverrun: fw1's ctha is frozen (SIGSTOP) while far more
// conntrack events than its 64 MiB event buffer holds happen in fw1's
// kernel (120k creates, 120k deletes, 60k creates); once it runs again it
// sees the overrun (netlink_overruns >= 1), resyncs from a dump, and fw2's
// kernel ends equal to fw1's: the 20k flows fw2 had before are gone, the
// 60k new ones are there, none of the 100k created and deleted meanwhile
// is. fw1's table never holds more than 120k entries.
func TestSyncNetlinkOverrun(t *testing.T) {
	lab.RequireNetns(t)
	p := newSyncPair(t, "direct", "direct", nil)
	a := mixedFlows(5, 0, 20_000)
	writeFlows(t, p.c1, kernel.Create, a)
	waitTablesEqual(t, "fw2's kernel vs fw1's before the overrun", p.c1, p.c2, true, 30*time.Second)
	before := syncStats(t, p.fw1)

	if err := p.fw1.proc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	t.Cleanup(func() {
		if stopped {
			p.fw1.proc.Signal(syscall.SIGCONT)
		}
	})
	b := mixedFlows(6, 0, 100_000)
	c := mixedFlows(7, 0, 60_000)
	start := time.Now()
	writeFlows(t, p.c1, kernel.Create, b)
	writeFlows(t, p.c1, kernel.Delete, append(a, b...))
	writeFlows(t, p.c1, kernel.Create, c)
	t.Logf("%d events made in fw1 in %.1f s while its ctha was stopped", len(a)+2*len(b)+len(c), time.Since(start).Seconds())
	if err := p.fw1.proc.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	resumed := time.Now()

	err := lab.WaitFor(30*time.Second, 100*time.Millisecond, func() (bool, error) {
		return syncStats(t, p.fw1).Overruns > before.Overruns, nil
	})
	if err != nil {
		t.Fatalf("fw1 saw no netlink overrun: %v", err)
	}
	checkWritten(t, "fw1's kernel", c, dumpTable(t, p.c1))
	waitTablesEqual(t, "fw2's kernel vs fw1's after the overrun", p.c1, p.c2, true, 45*time.Second)
	t.Logf("figure: fw2 equal again %.1f s after fw1's ctha resumed from the overrun", time.Since(resumed).Seconds())
	after := syncStats(t, p.fw1)
	t.Logf("fw1: netlink_overruns %d -> %d, resyncs %d -> %d", before.Overruns, after.Overruns, before.Resyncs, after.Resyncs)
	if after.Resyncs <= before.Resyncs {
		t.Errorf("no resync after the overrun")
	}
	waitEntries(t, p.fw2, 10*time.Second, "external entries = 60k", func(s control.SyncStatus) bool { return s.ExternalEntries == len(c) })
	waitEntries(t, p.fw1, 10*time.Second, "internal entries = 60k", func(s control.SyncStatus) bool { return s.InternalEntries == len(c) })
	writeFlows(t, p.c1, kernel.Delete, c)
	waitTablesEqual(t, "fw2's kernel vs fw1's after deletions", p.c1, p.c2, true, 30*time.Second)
}

// TestSyncLinkRecreated: the sync cable is deleted (both ends) and
// created again a second later with its addresses, as ifupdown or
// networkd rebuild an interface: new indexes, so sockets bound to the old
// ones would neither send nor receive. Both engines reopen their sync
// socket on the new interface; the flows created afterwards reach fw2's
// kernel.
func TestSyncLinkRecreated(t *testing.T) {
	lab.RequireNetns(t)
	const n = 2000
	p := newSyncPair(t, "direct", "direct", nil)
	before := mixedFlows(5, 0, n)
	writeFlows(t, p.c1, kernel.Create, before)
	waitTablesEqual(t, "fw2's kernel vs fw1's", p.c1, p.c2, true, 30*time.Second)
	if err := p.lab.RecreateLink(lab.RoleFW1, "sync", time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	after := mixedFlows(6, 0, n)
	writeFlows(t, p.c1, kernel.Create, after)
	waitTablesEqual(t, "fw2's kernel vs fw1's after the sync cable came back", p.c1, p.c2, true, 30*time.Second)
	t.Logf("figure: %d flows created after the sync cable was recreated reached fw2 in %.2f s", n, time.Since(start).Seconds())
	for _, fw := range []*node{p.fw1, p.fw2} {
		if !strings.Contains(fw.proc.Log(), "sync link reopened on its interface") {
			t.Errorf("%s did not log the reopening:\n%s", fw.role, fw.proc.Tail(10))
		}
	}
}
