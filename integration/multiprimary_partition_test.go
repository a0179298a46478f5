package integration

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/integration/flowgen"
	"github.com/ctha/ctha/integration/lab"
	"github.com/ctha/ctha/internal/control"
)

// mpLabFlows are a table's TCP flows to the servers' port 5001 (the lab's
// live flows), as what must be equal on every node: the tuples, the TCP
// state and the status bits a copy carries; timeouts and counters aside.
func mpLabFlows(table map[ct.Key]ct.Flow, servers []netip.Addr) map[ct.Key]string {
	out := map[ct.Key]string{}
	for k, f := range table {
		if f.Orig.Proto != ct.ProtoTCP || f.Orig.DstPort != 5001 || !slices.Contains(servers, f.Orig.DstAddr()) {
			continue
		}
		out[k] = fmt.Sprintf("%v %v tcp %v status %#x", f.Orig, f.Reply, f.TCP.State, f.Status&(ct.StatusSeenReply|ct.StatusAssured))
	}
	return out
}

// mpCompare describes how b's lab flows differ from a's ("" if equal),
// with at most max examples.
func mpCompare(a, b map[ct.Key]string, nameA, nameB string, max int) string {
	var d []string
	only := func(x, y map[ct.Key]string, in string) {
		for k, v := range x {
			w, ok := y[k]
			switch {
			case !ok:
				d = append(d, fmt.Sprintf("only on %s: %s", in, v))
			case v != w && in == nameA:
				d = append(d, fmt.Sprintf("differs: %s: %s, %s: %s", nameA, v, nameB, w))
			}
		}
	}
	only(a, b, nameA)
	only(b, a, nameB)
	if len(d) == 0 {
		return ""
	}
	slices.Sort(d)
	n := len(d)
	return fmt.Sprintf("%d differences, e.g.:\n%s", n, strings.Join(d[:min(n, max)], "\n"))
}

// mpSyncDrop drops everything fw1 sends or receives on its sync
// interface, at a priority before conntrack: a partition the interface
// does not see (no carrier loss), found by the keep-alives alone.
const mpSyncDrop = `table inet mpcut {
	chain in { type filter hook input priority -350; iifname "sync" drop; }
	chain out { type filter hook output priority -350; oifname "sync" drop; }
}
`

// TestMultiprimaryPartition: the sync link between the two nodes is cut
// while both forward their groups, by its link going down (as
// TestFailoverSyncCut does) or by a drop of its traffic that leaves the
// link up. Neither node fails over (both are demoted alike, and the
// adverts still cross the LAN): every flow goes on, and new flows open on
// both sides, each known to its own node only. When the link heals, the
// queued changes cross and the two kernels' tables of the lab flows
// become equal within a bound.
func TestMultiprimaryPartition(t *testing.T) {
	lab.RequireNetns(t)
	t.Run("link down", func(t *testing.T) {
		testPartition(t, "link down", func(l *lab.Lab, cut bool) error { return l.SetLink(lab.RoleFW1, "sync", !cut) })
	})
	t.Run("nft drop", func(t *testing.T) {
		testPartition(t, "nft drop", func(l *lab.Lab, cut bool) error {
			if cut {
				return l.Nft(lab.RoleFW1, mpSyncDrop)
			}
			return l.Nft(lab.RoleFW1, "delete table inet mpcut\n")
		})
	})
}

// testPartition runs TestMultiprimaryPartition with a way to cut and heal
// the sync link.
func testPartition(t *testing.T, how string, cutSync func(l *lab.Lab, cut bool) error) {
	const oldFlows, newFlows = 10, 5
	nodes := mpPair.nodes
	r := newMPRig(t)
	k := mpDial(r, mpPair)
	mpStartServers(r, mpGroups)
	fs := mpStartClients(r, mpGroups, oldFlows, 2*time.Minute, "-before")
	servers := []netip.Addr{}
	want := map[netip.Addr]int{}
	for _, g := range mpGroups {
		servers = append(servers, g.server)
		want[g.server] = oldFlows
	}
	mpWaitAllHold(r, k, nodes, want, 10*time.Second)
	invalid := r.mpInvalid(nodes)
	transitions := r.transitions()

	cut := time.Now()
	if err := cutSync(r.l, true); err != nil {
		t.Fatal(err)
	}
	err := r.waitStatus(10*time.Second, func(_ string, st control.Status) bool {
		return st.Sync != nil && !st.Sync.PeerUp
	})
	if err != nil {
		t.Fatalf("the nodes never saw each other down: %v", err)
	}
	peerDown := time.Since(cut)
	for _, role := range nodes {
		r.mpCheckStatusOf(mpPair, role, mpExpect(role, nodes), func(string) bool { return false })
	}
	fs = append(fs, mpStartClients(r, mpGroups, newFlows, 2*time.Minute, "-during")...)
	// Each node forwards its new flows; its peer must not know them yet.
	time.Sleep(time.Second)
	for _, g := range mpGroups {
		want[g.server] = oldFlows + newFlows
	}
	tables := map[string]map[ct.Key]ct.Flow{}
	for _, role := range nodes {
		tables[role] = dumpTable(t, k[role])
	}
	for _, g := range mpGroups {
		own, other := len(mpLiveFlows(tables[g.master], g.server)), len(mpLiveFlows(tables[mpPeer[g.master]], g.server))
		if own != oldFlows+newFlows || other != oldFlows {
			t.Errorf("during the cut, group %s: %s holds %d established flows to %s, %s %d; want %d and %d (the new ones on their own node only)",
				g.name, g.master, own, g.server, mpPeer[g.master], other, oldFlows+newFlows, oldFlows)
		}
	}
	time.Sleep(time.Until(cut.Add(6 * time.Second)))

	if err := cutSync(r.l, false); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	var diff string
	var equalAfter time.Duration
	err = lab.WaitFor(15*time.Second, 100*time.Millisecond, func() (bool, error) {
		a := mpLabFlows(dumpTable(t, k[lab.RoleFW1]), servers)
		b := mpLabFlows(dumpTable(t, k[lab.RoleFW2]), servers)
		diff = mpCompare(a, b, lab.RoleFW1, lab.RoleFW2, 6)
		if diff == "" && len(a) != len(mpGroups)*(oldFlows+newFlows) {
			diff = fmt.Sprintf("equal, but %d flows, want %d", len(a), len(mpGroups)*(oldFlows+newFlows))
		}
		equalAfter = time.Since(healed)
		return diff == "", nil
	})
	if err != nil {
		t.Fatalf("the tables are not equal 15 s after the link healed: %s\nfw1:\n%s\nfw2:\n%s",
			diff, r.nodes[lab.RoleFW1].proc.Tail(30), r.nodes[lab.RoleFW2].proc.Tail(30))
	}
	mpWaitAllHold(r, k, nodes, want, 5*time.Second)
	err = r.waitStatus(10*time.Second, func(_ string, st control.Status) bool {
		return st.Sync != nil && st.Sync.PeerUp
	})
	if err != nil {
		t.Fatalf("the nodes never saw each other up again: %v", err)
	}
	for _, role := range nodes {
		r.mpCheckStatusOf(mpPair, role, mpExpect(role, nodes), func(string) bool { return true })
	}
	r.expectTransitions(transitions, "the cut and its healing")

	var reps []flowgen.Report
	for _, f := range fs {
		reps = append(reps, f.end(t))
	}
	flows, survived, longest := 0, 0, 0.0
	for _, rep := range reps {
		flows += rep.Flows
		survived += rep.Survived
		longest = max(longest, rep.LongestGapMs)
		if rep.Survived != rep.Flows {
			t.Errorf("flows to %s: %d of %d survived, want all:\n%s", rep.Target, rep.Survived, rep.Flows, mpDeadFlows(rep, 5))
		}
	}
	drops := mpDelta(invalid, r.mpInvalid(nodes))
	t.Logf("figure: multiprimary partition healed: tables equal after %.1f s (cut by %s; %d flows on each node, %d opened during the cut); cut seen %v after it; %d/%d flows survived, %d INVALID, longest gap %.1f s",
		equalAfter.Seconds(), how, len(mpGroups)*(oldFlows+newFlows), len(mpGroups)*newFlows, peerDown.Round(time.Millisecond),
		survived, flows, drops[lab.RoleFW1]+drops[lab.RoleFW2], longest/1000)
	if drops[lab.RoleFW1]+drops[lab.RoleFW2] != 0 {
		t.Errorf("packets of live flows dropped as INVALID: %v, want none", drops)
	}
	if survived != flows || flows != len(mpGroups)*(oldFlows+newFlows) {
		t.Errorf("%d of %d flows survived, want all %d", survived, flows, len(mpGroups)*(oldFlows+newFlows))
	}
}
