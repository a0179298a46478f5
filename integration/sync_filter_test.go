package integration

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/integration/lab"
	"github.com/ctha/ctha/internal/control"
)

// newSyncPairWith is newSyncPair with lab options and more lines for the
// conntrack_sync block of both nodes (a filter, ...).
func newSyncPairWith(t *testing.T, cache1, cache2 string, opts lab.Options, syncLines string) *syncPair {
	t.Helper()
	l := lab.New(t, opts)
	p := &syncPair{t: t, lab: l}
	cfg := func(node, local, peer, cache string) string {
		c := syncOnlyConfig(node, local, peer, cache, filepath.Join(t.TempDir(), "state"))
		return strings.Replace(c, `  auth_key_file = "sync.key"`, `  auth_key_file = "sync.key"`+"\n"+syncLines, 1)
	}
	p.cfg1 = cfg("fw1", lab.FW1Sync.Addr().String(), lab.FW2Sync.Addr().String(), cache1)
	p.cfg2 = cfg("fw2", lab.FW2Sync.Addr().String(), lab.FW1Sync.Addr().String(), cache2)
	p.fw1 = startNode(t, l, lab.RoleFW1, p.cfg1)
	p.fw2 = startNode(t, l, lab.RoleFW2, p.cfg2)
	p.waitPeers()
	p.c1 = dialCT(t, l.NS(lab.RoleFW1))
	p.c2 = dialCT(t, l.NS(lab.RoleFW2))
	return p
}

// TestSyncFilter: with a filter (TCP only, ESTABLISHED only, a /24 and an
// IPv6 /128 ignored) the peer gets exactly the flows the filter keeps, and
// the kernel, not ctha, dropped the events of the others. A flow excluded
// by its state is replicated once it reaches a kept state; a replicated
// flow's end is replicated whatever its final state; a reconciling dump
// applies the same filter.
func TestSyncFilter(t *testing.T) {
	lab.RequireNetns(t)
	flows := mixedFlows(0, 0, 1000)
	ignored6 := flows[16].Orig.SrcAddr() // an IPv6 TCP flow's client
	if !ignored6.Is6() || flows[16].Orig.Proto != ct.ProtoTCP {
		t.Fatalf("flow 16 is %v, not IPv6 TCP", &flows[16])
	}
	ignore := []netip.Prefix{netip.MustParsePrefix("10.20.1.0/24"), netip.PrefixFrom(ignored6, 128)}
	p := newSyncPairWith(t, "direct", "direct", lab.Options{}, `  filter {
    protocols        = ["tcp"]
    ignore_addresses = ["10.20.1.0/24", "`+ignored6.String()+`/128"]
    tcp_states       = ["ESTABLISHED"]
  }`)

	// What the filter keeps, decided here independently of ctha's code.
	keeps := func(f *ct.Flow) bool {
		for _, pf := range ignore {
			if pf.Contains(f.Orig.SrcAddr()) || pf.Contains(f.Orig.DstAddr()) {
				return false
			}
		}
		return f.Orig.Proto == ct.ProtoTCP && f.TCP.State == ct.TCPEstablished
	}
	want := map[ct.Key]ct.Flow{}
	reasons := map[string]int{}
	for _, f := range flows {
		switch {
		case keeps(&f):
			want[f.Key()] = f
		case f.Orig.Proto != ct.ProtoTCP:
			reasons["protocol"]++
		case f.TCP.State != ct.TCPEstablished:
			reasons["state"]++
		default:
			reasons["address"]++
		}
	}
	if len(want) == 0 || reasons["protocol"] == 0 || reasons["state"] == 0 || reasons["address"] < 2 {
		t.Fatalf("the test set does not exercise the filter: %d kept, excluded %v", len(want), reasons)
	}
	t.Logf("%d flows: %d kept, excluded %v", len(flows), len(want), reasons)

	before := syncStats(t, p.fw1)
	writeFlows(t, p.c1, kernel.Create, flows)
	checkWritten(t, "fw1's kernel", flows, dumpTable(t, p.c1))
	waitPeerTable(t, p, want, 15*time.Second)

	// A SYN_SENT flow is left out until it is established.
	syn := ct.Flow{Orig: ct.NewTuple(ct.ProtoTCP, netip.MustParseAddr("10.20.9.1"), netip.MustParseAddr("10.30.9.1"), 1234, 443),
		Status: ct.StatusConfirmed, Timeout: 120, TCP: ct.TCPInfo{State: ct.TCPSynSent}}
	syn.Reply = syn.Orig.Reverse()
	writeFlows(t, p.c1, kernel.Create, []ct.Flow{syn})
	time.Sleep(300 * time.Millisecond)
	if _, ok := dumpTable(t, p.c2)[syn.Key()]; ok {
		t.Fatalf("a SYN_SENT flow reached the peer")
	}
	est := syn
	est.Status |= ct.StatusSeenReply | ct.StatusAssured
	est.TCP.State, est.Timeout = ct.TCPEstablished, 3600
	writeFlows(t, p.c1, kernel.Update, []ct.Flow{est})
	want[est.Key()] = est
	waitPeerTable(t, p, want, 10*time.Second)

	// The kernel dropped the excluded events: ctha saw none of them.
	after := syncStats(t, p.fw1)
	events := after.Events - before.Events
	t.Logf("fw1: %d kernel events read for %d flows written (+1 update); filtered in userspace: %v", events, len(flows), after.Filtered)
	for _, r := range []string{"protocol", "ignored_address", "tcp_state"} {
		if n := after.Filtered[r] - before.Filtered[r]; n != 0 {
			t.Errorf("fw1 filtered %d events for %s in userspace: the kernel should have dropped them", n, r)
		}
	}
	if events > uint64(len(want))+10 {
		t.Errorf("fw1 read %d events for %d kept flows: the kernel did not drop the excluded ones", events, len(want))
	}

	// A reconciling dump goes through the same filter.
	if out, err := p.fw1.ctl("sync", "resync"); err != nil {
		t.Fatalf("ctha sync resync: %v: %s", err, out)
	}
	time.Sleep(300 * time.Millisecond)
	waitPeerTable(t, p, want, 10*time.Second)
	waitEntries(t, p.fw1, 5*time.Second, "internal entries = the kept flows", func(s control.SyncStatus) bool {
		return s.InternalEntries == len(want)
	})

	// A replicated flow that ends in a state the filter leaves out: its
	// state change is not sent, its end is.
	closing := est
	closing.TCP.State = ct.TCPFinWait
	writeFlows(t, p.c1, kernel.Update, []ct.Flow{closing})
	time.Sleep(300 * time.Millisecond)
	if g, ok := dumpTable(t, p.c2)[est.Key()]; !ok || g.TCP.State != ct.TCPEstablished {
		t.Errorf("after FIN_WAIT in fw1, fw2 has %v (present %v); want it kept ESTABLISHED until its end", &g, ok)
	}
	writeFlows(t, p.c1, kernel.Delete, append(flows, est))
	waitPeerTable(t, p, map[ct.Key]ct.Flow{}, 10*time.Second)
}

// waitPeerTable waits until fw2's kernel holds exactly want.
func waitPeerTable(t *testing.T, p *syncPair, want map[ct.Key]ct.Flow, timeout time.Duration) {
	t.Helper()
	var d []string
	err := lab.WaitFor(timeout, 200*time.Millisecond, func() (bool, error) {
		d = tableDiff(want, dumpTable(t, p.c2), true, 10)
		return len(d) == 0, nil
	})
	if err != nil {
		t.Fatalf("fw2's kernel is not the filtered subset after %v:\n%s", timeout, strings.Join(d, "\n"))
	}
}
