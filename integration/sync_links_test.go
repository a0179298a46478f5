package integration

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/integration/lab"
	"github.com/ctha/ctha/internal/control"
)

// testLink is one link block of a test configuration: peer or group.
type testLink struct {
	name, iface, local, peer, group string
}

// syncConfig is a sync-only node (as syncOnlyConfig) with the given mode,
// links and extra conntrack_sync settings.
func syncConfig(node, stateDir, mode string, links []testLink, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node_name = %q\nstate_dir = %q\nlog {\n  level = \"debug\"\n}\n", node, stateDir)
	fmt.Fprintf(&b, "conntrack_sync {\n  mode = %q\n  cache = \"direct\"\n  auth_key_file = \"sync.key\"\n%s\n", mode, extra)
	for _, l := range links {
		fmt.Fprintf(&b, "  link %q {\n    interface = %q\n    local = %q\n", l.name, l.iface, l.local)
		if l.group != "" {
			fmt.Fprintf(&b, "    multicast_group = %q\n", l.group)
		} else {
			fmt.Fprintf(&b, "    peer = %q\n", l.peer)
		}
		b.WriteString("  }\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// startSyncPair starts the two sync-only nodes of cfg1 and cfg2 in l and
// waits until each holds the other's complete copy.
func startSyncPair(t *testing.T, l *lab.Lab, cfg1, cfg2 string) *syncPair {
	t.Helper()
	p := &syncPair{t: t, lab: l, cfg1: cfg1, cfg2: cfg2}
	p.fw1 = startNode(t, l, lab.RoleFW1, cfg1)
	p.fw2 = startNode(t, l, lab.RoleFW2, cfg2)
	p.waitPeers()
	p.c1 = dialCT(t, l.NS(lab.RoleFW1))
	p.c2 = dialCT(t, l.NS(lab.RoleFW2))
	return p
}

// ifaceBytes is a statistics counter (tx_bytes, rx_bytes) of role's
// interface.
func ifaceBytes(t *testing.T, l *lab.Lab, role, iface, counter string) int64 {
	t.Helper()
	out, err := l.Exec(role, "cat", "/sys/class/net/"+iface+"/statistics/"+counter)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// linkStates renders a node's links as "name:up/down[:active]" for
// comparison and messages.
func linkStates(ls []control.LinkStatus) string {
	var parts []string
	for _, l := range ls {
		s := l.Name + ":down"
		if l.Up {
			s = l.Name + ":up"
		}
		if l.Active {
			s += ":active"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// waitLinks waits until both nodes' status shows the links as want
// (linkStates' format).
func waitLinks(t *testing.T, p *syncPair, timeout time.Duration, want string) {
	t.Helper()
	for _, n := range []*node{p.fw1, p.fw2} {
		var got string
		err := lab.WaitFor(timeout, 50*time.Millisecond, func() (bool, error) {
			s, err := syncStatus(n)
			got = linkStates(s.Links)
			return err == nil && got == want, err
		})
		if err != nil {
			t.Fatalf("%s: links %q, want %q (%v)", n.role, got, want, err)
		}
	}
}

// txMeter measures what fw1 sends on each sync interface.
type txMeter struct {
	t           *testing.T
	l           *lab.Lab
	sync, sync2 int64
}

func newTxMeter(t *testing.T, l *lab.Lab) *txMeter {
	return &txMeter{t: t, l: l, sync: ifaceBytes(t, l, lab.RoleFW1, "sync", "tx_bytes"),
		sync2: ifaceBytes(t, l, lab.RoleFW1, "sync2", "tx_bytes")}
}

// since returns the bytes fw1 sent on sync and sync2 since the meter began.
func (m *txMeter) since() (sync, sync2 int64) {
	return ifaceBytes(m.t, m.l, lab.RoleFW1, "sync", "tx_bytes") - m.sync,
		ifaceBytes(m.t, m.l, lab.RoleFW1, "sync2", "tx_bytes") - m.sync2
}

// TestSyncLinkFailover: with two sync links, flows created continuously on
// fw1 go over the first; when it is cut mid-stream they go over the
// second, and the peer ends with every flow (nothing lost at the switch);
// status shows the first down and the second active. When the first link
// comes back the traffic returns to it. With unicast links, with multicast
// links (IPv4 on the first, IPv6 on the second), and with the first link
// broken in one direction only, its carrier up (silence tells).
func TestSyncLinkFailover(t *testing.T) {
	lab.RequireNetns(t)
	unicast1 := []testLink{{"sync0", "sync", "10.10.3.1", "10.10.3.2", ""}, {"sync1", "sync2", "10.10.4.1", "10.10.4.2", ""}}
	unicast2 := []testLink{{"sync0", "sync", "10.10.3.2", "10.10.3.1", ""}, {"sync1", "sync2", "10.10.4.2", "10.10.4.1", ""}}
	tests := []struct {
		name           string
		links1, links2 []testLink
		silent         bool // cut fw1's datagrams on the first link instead of its carrier
	}{
		{"unicast", unicast1, unicast2, false},
		{"multicast",
			[]testLink{{"sync0", "sync", "10.10.3.1", "", "225.0.0.50"}, {"sync1", "sync2", "fd00:10:4::1", "", "ff12::3780"}},
			[]testLink{{"sync0", "sync", "10.10.3.2", "", "225.0.0.50"}, {"sync1", "sync2", "fd00:10:4::2", "", "ff12::3780"}},
			false},
		{"one-way silence", unicast1, unicast2, true},
	}
	for set, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			testLinkFailover(t, 2+set, tc.links1, tc.links2, tc.silent)
		})
	}
}

// cutScript drops what fw1 sends on the first sync link: its carrier
// stays up, fw2 stops hearing fw1 there, fw1 still hears fw2.
const cutScript = `table inet cut {
	chain out {
		type filter hook output priority 0;
		oifname "sync" udp dport 3780 drop
	}
}
`

func testLinkFailover(t *testing.T, set int, links1, links2 []testLink, silent bool) {
	l := lab.New(t, lab.Options{SecondSyncLink: true})
	p := startSyncPair(t, l,
		syncConfig("fw1", filepath.Join(t.TempDir(), "state"), "reliable", links1, ""),
		syncConfig("fw2", filepath.Join(t.TempDir(), "state"), "reliable", links2, ""))
	waitLinks(t, p, 5*time.Second, "sync0:up:active sync1:up")
	for _, n := range []*node{p.fw1, p.fw2} {
		// The sync links' own flows (to a group too) are not replicated.
		if s := mustSyncStatus(t, n); s.InternalEntries != 0 || s.ExternalEntries != 0 {
			t.Errorf("%s: %d internal, %d external entries before any test flow", n.role, s.InternalEntries, s.ExternalEntries)
		}
	}

	const batch, batches, cutAt = 200, 50, 15
	flows := mixedFlows(set, 0, batch*(batches+20))
	var before, after [2]int64 // bytes fw1 sent on sync, sync2 before and after the cut
	m := newTxMeter(t, l)
	cut := time.Now()
	for b := range batches {
		writeFlows(t, p.c1, kernel.Create, flows[b*batch:(b+1)*batch])
		if b == cutAt-1 {
			before[0], before[1] = m.since()
			m = newTxMeter(t, l)
			var err error
			if silent {
				err = l.Nft(lab.RoleFW1, cutScript)
			} else {
				err = l.SetLink(lab.RoleFW1, "sync", false)
			}
			if err != nil {
				t.Fatal(err)
			}
			cut = time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d flows created in batches of %d, the first link cut after %d; the last batch %.1f s after the cut",
		batches*batch, batch, cutAt*batch, time.Since(cut).Seconds())
	waitTablesEqual(t, "fw2's kernel vs fw1's after the cut", p.c1, p.c2, true, 30*time.Second)
	after[0], after[1] = m.since()
	t.Logf("figure: fw1 tx bytes before the cut: sync %d, sync2 %d; after: sync %d, sync2 %d",
		before[0], before[1], after[0], after[1])
	// About 20+ bytes per flow on the wire; probes are a few hundred
	// bytes per second.
	if min := int64(cutAt * batch * 15); before[0] < min || before[1] > before[0]/5 {
		t.Errorf("before the cut the first link should carry the traffic: sync %d B (want >= %d), sync2 %d B", before[0], min, before[1])
	}
	if min := int64((batches - cutAt) * batch * 15); after[1] < min {
		t.Errorf("after the cut the second link carried %d B, want >= %d", after[1], min)
	}
	waitLinks(t, p, 5*time.Second, "sync0:down sync1:up:active")
	for _, n := range []*node{p.fw1, p.fw2} {
		s := mustSyncStatus(t, n)
		if s.Links[0].Carrier == !silent {
			t.Errorf("%s: link sync0 carrier %v after the cut, want %v", n.role, s.Links[0].Carrier, silent)
		}
		if !s.PeerUp {
			t.Errorf("%s: peer down with the second link up", n.role)
		}
		if st := syncStats(t, n); st.LinkSwitches < 1 {
			t.Errorf("%s: %d link switches, want >= 1", n.role, st.LinkSwitches)
		}
	}

	// The first link back: traffic returns to it.
	if silent {
		l.MustExec(t, lab.RoleFW1, "nft", "delete", "table", "inet", "cut")
	} else if err := l.SetLink(lab.RoleFW1, "sync", true); err != nil {
		t.Fatal(err)
	}
	waitLinks(t, p, 10*time.Second, "sync0:up:active sync1:up")
	m = newTxMeter(t, l)
	rest := flows[batches*batch:]
	writeFlows(t, p.c1, kernel.Create, rest)
	waitTablesEqual(t, "fw2's kernel vs fw1's after the first link came back", p.c1, p.c2, true, 30*time.Second)
	back, back2 := m.since()
	t.Logf("figure: fw1 tx bytes after the first link came back (%d flows): sync %d, sync2 %d", len(rest), back, back2)
	if min := int64(len(rest) * 15); back < min || back2 > back/5 {
		t.Errorf("the first link back should carry the traffic again: sync %d B (want >= %d), sync2 %d B", back, min, back2)
	}
	got := dumpTable(t, p.c2)
	missing := 0
	for _, f := range flows {
		if _, ok := got[f.Key()]; !ok {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("fw2 misses %d of the %d flows created in fw1", missing, len(flows))
	}
	for k, f := range got {
		if k.Orig.Proto != 0 && len(got) > len(flows) && !slices.ContainsFunc(flows, func(w ct.Flow) bool { return w.Key() == k }) {
			t.Logf("other flow in fw2: %v", &f)
		}
	}
}
