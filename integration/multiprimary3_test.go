package integration

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/integration/flowgen"
	"github.com/ctha/ctha/integration/lab"
)

// Three nodes (lab Options.ThirdFirewall with SplitVIPs): groups a, b and
// c mastered by fw1, fw2 and fw3, each carrying the flows to its own
// server address. In each group the priorities fall in three tiers
// spaced by more than the sync-down demotion (50, applied to every group
// of a node while any of its peers is unreachable), so that whichever
// nodes are demoted at a given moment, a group's master is always the
// live node of its highest tier: a dies to fw2 then fw3, b to fw3 then
// fw1, c to fw1 then fw2.
var mp3 = mpCluster{
	nodes: []string{lab.RoleFW1, lab.RoleFW2, lab.RoleFW3},
	groups: []mpGroup{
		{name: "a", master: lab.RoleFW1, server: lab.ServerAddr.Addr(),
			vips: []mpVIP{{"lan", 51, lab.LANVIP}, {"wan", 52, lab.WANVIP}},
			prio: map[string]int{lab.RoleFW1: 250, lab.RoleFW2: 180, lab.RoleFW3: 100}},
		{name: "b", master: lab.RoleFW2, server: lab.ServerAddrB.Addr(),
			vips: []mpVIP{{"lan", 61, lab.LANVIPB}, {"wan", 62, lab.WANVIPB}},
			prio: map[string]int{lab.RoleFW2: 250, lab.RoleFW3: 180, lab.RoleFW1: 100}},
		{name: "c", master: lab.RoleFW3, server: lab.ServerAddrC.Addr(),
			vips: []mpVIP{{"lan", 71, lab.LANVIPC}, {"wan", 72, lab.WANVIPC}},
			prio: map[string]int{lab.RoleFW3: 250, lab.RoleFW1: 180, lab.RoleFW2: 100}},
	},
}

// mp3Flows live TCP flows cross each group's master.
const mp3Flows = 12

// mpLANAddr is each node's own LAN address, the source of its adverts.
var mpLANAddr = map[string]netip.Addr{lab.RoleFW1: lab.FW1LAN.Addr(), lab.RoleFW2: lab.FW2LAN.Addr(), lab.RoleFW3: lab.FW3LAN.Addr()}

// masterAmong is the node that should master g while only the nodes
// in live run: the live one with the highest priority.
func (g mpGroup) masterAmong(live []string) string {
	best := ""
	for _, n := range live {
		if best == "" || g.priority(n) > g.priority(best) {
			best = n
		}
	}
	return best
}

// newMPCluster builds the lab with opts and starts c's nodes; it returns
// once every node holds its groups' expected states and sees all its
// peers up.
func newMPCluster(t *testing.T, c mpCluster, opts lab.Options) *failRig {
	t.Helper()
	r := newRigLabWith(t, "direct", opts)
	for _, role := range c.nodes {
		r.conf[role] = c.config(role)
		r.start(role)
	}
	waitMPReady(t, r, c.nodes, c.groups)
	return r
}

// waitMPReady waits until every node holds each group in the state its
// priorities give it among nodes, and sees all its peers up.
func waitMPReady(t *testing.T, r *failRig, nodes []string, groups []mpGroup) {
	t.Helper()
	for _, role := range nodes {
		for _, g := range groups {
			want := "BACKUP"
			if g.masterAmong(nodes) == role {
				want = "MASTER"
			}
			waitState(t, r.nodes[role], "group:"+g.name, want, 15*time.Second)
		}
		err := lab.WaitFor(15*time.Second, 50*time.Millisecond, func() (bool, error) {
			s, err := syncStatus(r.nodes[role])
			return err == nil && s.PeerUp, err
		})
		if err != nil {
			t.Fatalf("%s: peers not up: %v\n%s", role, err, r.nodes[role].proc.Tail(30))
		}
	}
}

// mpExpect returns the state each group should have on role while the
// nodes in live run.
func mpExpect(role string, live []string) func(mpGroup) string {
	return func(g mpGroup) string {
		if g.masterAmong(live) == role {
			return "MASTER"
		}
		return "BACKUP"
	}
}

// mpKernels are ctnetlink connections to the nodes' namespaces, by role;
// they outlive the daemons' restarts.
type mpKernels map[string]*kernel.Conn

// mpDial connects to the kernel of every node of c.
func mpDial(r *failRig, c mpCluster) mpKernels {
	r.t.Helper()
	k := mpKernels{}
	for _, role := range c.nodes {
		k[role] = dialCT(r.t, r.l.NS(role))
	}
	return k
}

// mpWaitAllHold waits until the kernel of every node in live holds want
// established TCP flows to each server's port 5001, the same ones on
// every node, and fails the test otherwise.
func mpWaitAllHold(r *failRig, k mpKernels, live []string, want map[netip.Addr]int, timeout time.Duration) {
	r.t.Helper()
	var problems []string
	err := lab.WaitFor(timeout, 250*time.Millisecond, func() (bool, error) {
		problems = problems[:0]
		tables := map[string]map[ct.Key]ct.Flow{}
		for _, role := range live {
			tables[role] = dumpTable(r.t, k[role])
		}
		for _, server := range slices.SortedFunc(maps.Keys(want), netip.Addr.Compare) {
			var first map[ct.Key]ct.Flow
			for _, role := range live {
				held := mpLiveFlows(tables[role], server)
				if len(held) != want[server] {
					problems = append(problems, fmt.Sprintf("%s holds %d established flows to %s, want %d", role, len(held), server, want[server]))
				}
				if first == nil {
					first = held
					continue
				}
				missing := 0
				for k := range first {
					if _, ok := held[k]; !ok {
						missing++
					}
				}
				if missing > 0 {
					problems = append(problems, fmt.Sprintf("%s lacks %d of %s's flows to %s", role, missing, live[0], server))
				}
			}
		}
		return len(problems) == 0, nil
	})
	if err != nil {
		r.t.Fatalf("the kernels of %v do not all hold every flow after %v:\n%s", live, timeout, strings.Join(problems, "\n"))
	}
}

// mpAfterAdvert waits until phase after the next advert of role's node
// heard on observer's LAN (failRig.afterAdvert with any observer).
func (r *failRig) mpAfterAdvert(role, observer string, phase time.Duration) {
	r.t.Helper()
	r.afterAdvertFrom(role, mpLANAddr[role], observer, phase)
}

// mpInvalid reads every firewall's INVALID drop counter.
func (r *failRig) mpInvalid(nodes []string) map[string]uint64 {
	r.t.Helper()
	m := map[string]uint64{}
	for _, role := range nodes {
		n, err := r.l.InvalidDrops(role)
		if err != nil {
			r.t.Fatal(err)
		}
		m[role] = n
	}
	return m
}

// mpStep is one event of a scenario and what the flows saw of it.
type mpStep struct {
	name   string
	at     time.Time // the event: a kill, a start
	check  time.Time // when the flows were checked, recovered
	took   time.Duration
	detail string
	// invalid are the INVALID drops of each node during the step.
	invalid map[string]uint64
}

// invalidSum is the step's INVALID drops on all nodes.
func (s mpStep) invalidSum() uint64 {
	var n uint64
	for _, v := range s.invalid {
		n += v
	}
	return n
}

// mpStepFlows measures one step in the reports: how many flows were
// alive at its check (no gap spanning it, no error before it) and the
// longest gap that began from a second before the event until end.
func mpStepFlows(reps []flowgen.Report, s mpStep, end time.Time) (flows, alive int, longest float64) {
	for _, rep := range reps {
		for _, f := range rep.PerFlow {
			flows++
			ok := f.Error == "" || f.ErrorAt.After(s.check)
			for _, g := range f.Gaps {
				if g.Start.Before(s.check) && (g.End.After(s.check) || g.Ongoing) {
					ok = false
				}
				if !g.Start.Before(s.at.Add(-time.Second)) && g.Start.Before(end) {
					longest = max(longest, g.Ms)
				}
			}
			if ok {
				alive++
			}
		}
	}
	return flows, alive, longest
}

// mp3Crash kills victim (SIGKILL, links down) 750 ms after one of its
// adverts seen from observer, waits until the survivors in live (the
// nodes left) hold the VIPs of the groups that move, and until the flows
// had 9 s to recover. It checks the survivors' status.
func (r *failRig) mp3Crash(c mpCluster, victim, observer string, live []string) mpStep {
	r.t.Helper()
	before := r.mpInvalid(c.nodes)
	r.mpAfterAdvert(victim, observer, 750*time.Millisecond)
	s := mpStep{name: victim + " killed"}
	s.at = r.crash(victim)
	var moved []string
	for _, g := range c.groups {
		to := g.masterAmong(live)
		if g.masterAmong(append(slices.Clone(live), victim)) != victim {
			continue
		}
		moved = append(moved, fmt.Sprintf("group %s to %s", g.name, to))
		for _, v := range g.vips {
			d, err := waitVIP(r.l, to, v.iface, v.vip.Addr(), true, s.at, 10*time.Second)
			if err != nil {
				r.t.Fatalf("%s: %v\n%s", to, err, r.nodes[to].proc.Tail(40))
			}
			s.took = max(s.took, d)
		}
	}
	s.detail = strings.Join(moved, ", ")
	time.Sleep(time.Until(s.at.Add(9 * time.Second)))
	s.check = time.Now()
	s.invalid = mpDelta(before, r.mpInvalid(c.nodes))
	for _, role := range live {
		r.mpCheckStatusOf(c, role, mpExpect(role, live), func(p string) bool { return slices.Contains(live, p) })
	}
	return s
}

// mpDelta is after - before, per node.
func mpDelta(before, after map[string]uint64) map[string]uint64 {
	d := map[string]uint64{}
	for k, v := range after {
		d[k] = v - before[k]
	}
	return d
}

// mp3Rejoin restarts role as after a reboot (empty table, links up, ctha
// started with its state directory) while the nodes in others run, and
// checks the rejoin: it must not master any group before it holds a
// complete copy from every live peer (its log says why it allowed
// preemption), then takes back the groups it masters, receives exactly
// one copy per live peer, and its kernel holds every flow (want).
func (r *failRig) mp3Rejoin(c mpCluster, k mpKernels, role string, others []string, want map[netip.Addr]int) mpStep {
	r.t.Helper()
	t := r.t
	live := append(slices.Clone(others), role)
	before := r.mpInvalid(c.nodes)
	r.l.MustExec(t, role, "conntrack", "-F")
	for _, ifname := range []string{"lan", "wan"} {
		if err := r.l.SetLink(role, ifname, true); err != nil {
			t.Fatal(err)
		}
	}
	s := mpStep{name: fmt.Sprintf("%s rejoined (live peers %s)", role, strings.Join(others, ", "))}
	s.at = time.Now()
	n := r.start(role)

	var mine []mpGroup
	expect := map[string]string{} // by group
	for _, g := range c.groups {
		expect[g.name] = mpExpect(role, live)(g)
		if expect[g.name] == "MASTER" {
			mine = append(mine, g)
		}
	}
	var problems []string
	err := lab.WaitFor(30*time.Second, 20*time.Millisecond, func() (bool, error) {
		st, _ := r.mpStatusOf(role)
		if st.Sync == nil {
			return false, fmt.Errorf("%s: status has no sync", role)
		}
		// Complete: a complete copy from every live peer.
		complete, heard := true, 0
		for _, p := range st.Sync.Peers {
			if slices.Contains(others, p.Node) {
				heard++
				complete = complete && p.BulkComplete
			}
		}
		complete = complete && heard == len(others)
		done := true
		for _, g := range st.Groups {
			switch {
			case g.State == "MASTER" && expect[g.Name] != "MASTER":
				problems = append(problems, fmt.Sprintf("+%v: group %s MASTER, which %s must not be with %v live",
					time.Since(s.at).Round(time.Millisecond), g.Name, role, live))
			case g.State == "MASTER" && !complete:
				problems = append(problems, fmt.Sprintf("+%v: group %s MASTER before a complete copy from every live peer: %+v",
					time.Since(s.at).Round(time.Millisecond), g.Name, st.Sync.Peers))
			case expect[g.Name] == "MASTER" && g.State != "MASTER":
				done = false
			}
		}
		return done || len(problems) > 0, nil
	})
	if len(problems) > 0 {
		t.Errorf("%s's rejoin:\n%s\n%s", role, strings.Join(problems, "\n"), n.proc.Tail(40))
	}
	if err != nil {
		t.Fatalf("%s never took its groups back: %v\n%s", role, err, n.proc.Tail(60))
	}
	for _, g := range mine {
		for _, v := range g.vips {
			d, err := waitVIP(r.l, role, v.iface, v.vip.Addr(), true, s.at, 10*time.Second)
			if err != nil {
				t.Fatalf("%s: %v\n%s", role, err, n.proc.Tail(40))
			}
			s.took = max(s.took, d)
		}
	}
	timeline := r.mpRejoinTimeline(c, n, others, live)
	if st, raw := r.mpStatusOf(role); st.Sync != nil {
		for _, p := range st.Sync.Peers {
			if slices.Contains(others, p.Node) && (!p.BulkComplete || !p.Up || p.BulkReceived != p.BulkExpected) {
				t.Errorf("%s: live peer %s: %+v, want up, bulk_complete, as many received as expected\n%s", role, p.Node, p, raw)
			}
		}
	}
	st := syncStats(t, n)
	if st.BulksReceived != uint64(len(others)) {
		t.Errorf("%s received %d complete copies, want one from each of its %d live peers", role, st.BulksReceived, len(others))
	}
	mpWaitAllHold(r, k, live, want, 10*time.Second)
	s.detail = fmt.Sprintf("bulks_received %d; %s", st.BulksReceived, timeline)
	time.Sleep(time.Until(s.at.Add(s.took + 3*time.Second)))
	s.check = time.Now()
	s.invalid = mpDelta(before, r.mpInvalid(c.nodes))
	for _, node := range live {
		r.mpCheckStatusOf(c, node, mpExpect(node, live), func(p string) bool { return slices.Contains(live, p) })
	}
	return s
}

// mpRejoinTimeline checks in n's log (a node that has just rejoined
// while the nodes in others ran) that it allowed preemption in every
// group only once it had a complete copy from every live peer, for that
// reason and not startup_sync_timeout, and took the groups it masters
// only after that, and no other. It returns the timeline, from the
// daemon's first record.
func (r *failRig) mpRejoinTimeline(c mpCluster, n *node, others, live []string) string {
	r.t.Helper()
	log := n.proc.Log()
	recs := parseLog(log)
	if len(recs) == 0 {
		r.t.Errorf("%s: no log records:\n%s", n.role, log)
		return ""
	}
	start := recs[0].at
	since := func(at time.Time) string { return "+" + at.Sub(start).Round(time.Millisecond).String() }
	var copies time.Time // when the last live peer's copy was complete
	var tl []string
	for _, p := range others {
		at, ok := firstLog(recs, map[string]string{"msg": "complete copy from the peer received", "peer": p})
		if a, ok2 := firstLog(recs, map[string]string{"msg": "complete copy from the peer received", "peer": mpSyncAddr[p].String()}); ok2 && (!ok || a.Before(at)) {
			at, ok = a, true
		}
		if !ok {
			r.t.Errorf("%s's log has no complete copy from %s:\n%s", n.role, p, grepLines(log, "copy"))
			continue
		}
		tl = append(tl, fmt.Sprintf("copy from %s %s", p, since(at)))
		if at.After(copies) {
			copies = at
		}
	}
	for _, g := range c.groups {
		allowed, ok := firstLog(recs, map[string]string{"msg": "preemption allowed", "group": g.name, "reason": "bulk copy complete"})
		if !ok {
			r.t.Errorf("%s's log does not say it allowed preemption in group %s on a complete copy:\n%s", n.role, g.name, grepLines(log, "preempt"))
			continue
		}
		if allowed.Before(copies) {
			r.t.Errorf("%s allowed preemption in group %s at %s, before the last live peer's copy was complete (%s)", n.role, g.name, since(allowed), since(copies))
		}
		became, master := firstLog(recs, map[string]string{"msg": "group transition", "group": g.name, "to": "MASTER"})
		switch {
		case g.masterAmong(live) != n.role && master:
			r.t.Errorf("%s became MASTER of group %s at %s, which it must not with %v live", n.role, g.name, since(became), live)
		case g.masterAmong(live) != n.role:
		case !master:
			r.t.Errorf("%s's log has no transition of group %s to MASTER", n.role, g.name)
		case became.Before(allowed):
			r.t.Errorf("%s became MASTER of group %s at %s, before it allowed preemption (%s)", n.role, g.name, since(became), since(allowed))
		default:
			tl = append(tl, fmt.Sprintf("group %s: preemption allowed %s, MASTER %s", g.name, since(allowed), since(became)))
		}
	}
	return strings.Join(tl, ", ")
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestMultiprimaryThreeNodes: three nodes, each master of one group and
// forwarding its flows; every kernel holds every flow. fw1 crashes: its
// group moves to fw2 and every flow goes on; fw2 crashes: fw3, the last
// one, holds all three groups and every flow still goes on. Then the
// rejoins (TestMultiprimaryRejoin's contract, on the same run): fw1
// comes back from a reboot with one live peer, fw2 with two; each defers
// its preemption until it holds a complete copy from every live peer,
// receives one copy from each, takes its group back, and its kernel then
// holds every flow. No packet of a live flow is ever dropped as INVALID.
func TestMultiprimaryThreeNodes(t *testing.T) {
	lab.RequireNetns(t)
	c := mp3
	c.stateDir = t.TempDir()
	r := newMPCluster(t, c, lab.Options{NoIPv6: true, SplitVIPs: true, ThirdFirewall: true})
	mpStartServers(r, c.groups)
	fs := mpStartClients(r, c.groups, mp3Flows, 3*time.Minute, "")
	want := map[netip.Addr]int{}
	for _, g := range c.groups {
		want[g.server] = mp3Flows
	}
	all := c.nodes
	k := mpDial(r, c)
	mpWaitAllHold(r, k, all, want, 10*time.Second)
	for _, role := range all {
		r.mpCheckStatusOf(c, role, mpExpect(role, all), func(string) bool { return true })
	}

	f1, f2, f3 := lab.RoleFW1, lab.RoleFW2, lab.RoleFW3
	steps := []mpStep{
		r.mp3Crash(c, f1, f2, []string{f2, f3}),
	}
	steps = append(steps, r.mp3Crash(c, f2, f3, []string{f3}))
	steps = append(steps, r.mp3Rejoin(c, k, f1, []string{f3}, want))
	steps = append(steps, r.mp3Rejoin(c, k, f2, []string{f1, f3}, want))

	var reps []flowgen.Report
	for _, f := range fs {
		reps = append(reps, f.end(t))
	}
	for _, rep := range reps {
		if rep.Flows != mp3Flows || rep.Survived != rep.Flows {
			t.Errorf("flows to %s: %d of %d survived, want all %d:\n%s", rep.Target, rep.Survived, rep.Flows, mp3Flows, mpDeadFlows(rep, 5))
		}
	}
	for i, s := range steps {
		end := time.Now()
		if i+1 < len(steps) {
			end = steps[i+1].at
		}
		flows, alive, longest := mpStepFlows(reps, s, end)
		t.Logf("figure: multiprimary 3 nodes, %s: %d/%d flows survived, %d INVALID, longest gap %.1f s; event -> VIPs %v; %s",
			s.name, alive, flows, s.invalidSum(), longest/1000, s.took.Round(time.Millisecond), s.detail)
		if alive != flows {
			t.Errorf("%s: %d of %d flows alive %v after it, want all", s.name, alive, flows, s.check.Sub(s.at).Round(time.Millisecond))
		}
		if n := s.invalidSum(); n != 0 {
			t.Errorf("%s: %d packets of live flows dropped as INVALID (per node %v), want none", s.name, n, s.invalid)
		}
		if strings.HasSuffix(s.name, "killed") {
			if limit := firstStepAfter(s.took) + 500*time.Millisecond; time.Duration(longest*1e6) > limit {
				t.Errorf("%s: longest gap %.0f ms: flows waited past the first retransmission step after the takeover (%v)", s.name, longest, limit)
			}
		}
	}
}
