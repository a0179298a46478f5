package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/integration/flowgen"
	"github.com/ctha/ctha/integration/lab"
)

// The multiprimary pair (spec/ctha.md "Multiprimary (active-active)"):
// two sync groups with split VIPs, each mastered by one node, both nodes
// forwarding at once. The lab's SplitVIPs option routes the traffic to
// ServerAddr through group a's VIPs and to ServerAddrB through group b's,
// both ways, so each flow crosses one node only.

// mpGroup is one sync group of the pair and the flows it carries.
type mpGroup struct {
	name   string
	master string // the node with the higher priority
	server netip.Addr
	vips   []mpVIP
	// prio is each node's priority in the group; nil: 150 for the
	// master, 100 for the others.
	prio map[string]int
}

// priority is role's priority in the group.
func (g mpGroup) priority(role string) int {
	switch {
	case g.prio != nil:
		return g.prio[role]
	case g.master == role:
		return 150
	}
	return 100
}

// mpCluster is a multiprimary cluster in the lab: its nodes, in the order
// every node's peers list names them, and its groups.
type mpCluster struct {
	nodes  []string
	groups []mpGroup
	// stateDir, if set, is the parent of each node's state directory,
	// kept across a restart as after a reboot.
	stateDir string
}

// mpPair is the two-node cluster of TestMultiprimaryCrash.
var mpPair = mpCluster{nodes: []string{lab.RoleFW1, lab.RoleFW2}, groups: mpGroups}

// peers are the nodes other than role, in the cluster's order.
func (c mpCluster) peers(role string) []string {
	var ps []string
	for _, n := range c.nodes {
		if n != role {
			ps = append(ps, n)
		}
	}
	return ps
}

// mpVIP is one VRRP instance of a group.
type mpVIP struct {
	iface string
	vrid  int
	vip   netip.Prefix
}

var mpGroups = []mpGroup{
	{name: "a", master: lab.RoleFW1, server: lab.ServerAddr.Addr(),
		vips: []mpVIP{{"lan", 51, lab.LANVIP}, {"wan", 52, lab.WANVIP}}},
	{name: "b", master: lab.RoleFW2, server: lab.ServerAddrB.Addr(),
		vips: []mpVIP{{"lan", 61, lab.LANVIPB}, {"wan", 62, lab.WANVIPB}}},
}

// mpFlowsPerGroup live TCP flows cross each group's master.
const mpFlowsPerGroup = 20

// mpPeer is the other node of the pair.
var mpPeer = map[string]string{lab.RoleFW1: lab.RoleFW2, lab.RoleFW2: lab.RoleFW1}

// mpSyncAddr is each node's address on the sync link.
var mpSyncAddr = map[string]netip.Addr{lab.RoleFW1: lab.FW1Sync.Addr(), lab.RoleFW2: lab.FW2Sync.Addr(), lab.RoleFW3: lab.FW3Sync.Addr()}

// mpConfig is role's configuration in the pair: priority 150 in the
// group it masters, 100 in the other; one sync link to the peer, direct
// cache.
func mpConfig(role string) string { return mpPair.config(role) }

// config is role's configuration: its priority in each group, one sync
// link to every peer, direct cache.
func (c mpCluster) config(role string) string {
	var b strings.Builder
	if c.stateDir != "" {
		fmt.Fprintf(&b, "state_dir = %q\n", filepath.Join(c.stateDir, role))
	}
	fmt.Fprintf(&b, "node_name = %q\nlog {\n  level = \"debug\"\n}\n", role)
	for _, g := range c.groups {
		prio := g.priority(role)
		var names []string
		for _, v := range g.vips {
			name := v.iface + "-" + g.name
			names = append(names, fmt.Sprintf("%q", name))
			fmt.Fprintf(&b, `vrrp_instance %q {
  interface       = %q
  vrid            = %d
  priority        = %d
  advert_interval = "1s"
  virtual_ips     = [%q]
  garp {
    repeat   = 2
    interval = "10ms"
    delay    = "0s"
  }
}
`, name, v.iface, v.vrid, prio, v.vip.String())
		}
		fmt.Fprintf(&b, "sync_group %q {\n  instances = [%s]\n}\n", g.name, strings.Join(names, ", "))
	}
	var peers []string
	for _, p := range c.peers(role) {
		peers = append(peers, fmt.Sprintf("%q", mpSyncAddr[p].String()))
	}
	fmt.Fprintf(&b, `conntrack_sync {
  topology = "multiprimary"
  mode     = "reliable"
  cache    = "direct"
  link "sync0" {
    interface = "sync"
    local     = %q
    peers     = [%s]
    port      = 3780
  }
  auth_key_file = "sync.key"
}
`, mpSyncAddr[role], strings.Join(peers, ", "))
	return b.String()
}

// mpStatus is the part of `ctha status --json` the multiprimary contract
// adds or changes (spec/ctha.md), decoded on its own so that a missing
// field shows as missing.
type mpStatus struct {
	Groups []struct {
		Name       string `json:"name"`
		State      string `json:"state"`
		SplitBrain *bool  `json:"split_brain"`
		// PreemptDeferred: the node waits for its copies.
		PreemptDeferred bool `json:"preempt_deferred"`
	} `json:"groups"`
	Sync *struct {
		Topology        string          `json:"topology"`
		PeerUp          bool            `json:"peer_up"`
		PeerRole        json.RawMessage `json:"peer_role"`
		InternalEntries int             `json:"internal_entries"`
		ExternalEntries int             `json:"external_entries"`
		Peers           []mpPeerStatus  `json:"peers"`
	} `json:"sync"`
}

// mpPeerStatus is one of sync.peers[].
type mpPeerStatus struct {
	Node         string   `json:"node"`
	Address      string   `json:"address"`
	Up           bool     `json:"up"`
	BulkComplete bool     `json:"bulk_complete"`
	Entries      int      `json:"entries"`
	LastSeenMS   *float64 `json:"last_seen_ms"`
	BulkReceived int      `json:"bulk_received"`
	BulkExpected int      `json:"bulk_expected"`
}

// mpStatusOf runs `ctha status --json` on role's node.
func (r *failRig) mpStatusOf(role string) (mpStatus, string) {
	r.t.Helper()
	out, err := r.nodes[role].ctl("status", "--json")
	if err != nil {
		r.t.Fatalf("%s: ctha status: %v\n%s", role, err, out)
	}
	var st mpStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		r.t.Fatalf("%s: ctha status --json: %v\n%s", role, err, out)
	}
	return st, out
}

// mpCheckStatus asserts role's status: multiprimary, each group in the
// state want gives (MASTER or BACKUP) without split brain, no peer role,
// and its one peer up (peerUp) or down. It returns the status.
func (r *failRig) mpCheckStatus(role string, want func(mpGroup) string, peerUp bool) mpStatus {
	r.t.Helper()
	return r.mpCheckStatusOf(mpPair, role, want, func(string) bool { return peerUp })
}

// mpCheckStatusOf asserts role's status in cluster c: multiprimary, each
// group in the state want gives (MASTER or BACKUP) without split brain,
// no peer role, every other node listed as a peer in the cluster's order,
// up as up says, and peer_up true only if all are. It returns the status.
func (r *failRig) mpCheckStatusOf(c mpCluster, role string, want func(mpGroup) string, up func(peer string) bool) mpStatus {
	r.t.Helper()
	st, raw := r.mpStatusOf(role)
	var errs []string
	if len(st.Groups) != len(c.groups) {
		errs = append(errs, fmt.Sprintf("%d groups, want %d", len(st.Groups), len(c.groups)))
	}
	for _, g := range c.groups {
		found := false
		for _, got := range st.Groups {
			if got.Name != g.name {
				continue
			}
			found = true
			if got.State != want(g) {
				errs = append(errs, fmt.Sprintf("group %s %s, want %s", g.name, got.State, want(g)))
			}
			if got.SplitBrain == nil || *got.SplitBrain {
				errs = append(errs, fmt.Sprintf("group %s split_brain %v, want false", g.name, got.SplitBrain))
			}
		}
		if !found {
			errs = append(errs, fmt.Sprintf("no group %s", g.name))
		}
	}
	switch s := st.Sync; {
	case s == nil:
		errs = append(errs, "no sync status")
	default:
		if s.Topology != "multiprimary" {
			errs = append(errs, fmt.Sprintf("topology %q, want multiprimary", s.Topology))
		}
		if pr := strings.TrimSpace(string(s.PeerRole)); pr != "null" {
			errs = append(errs, fmt.Sprintf("peer_role %q, want null", pr))
		}
		peers := c.peers(role)
		allUp := true
		for _, p := range peers {
			allUp = allUp && up(p)
		}
		if s.PeerUp != allUp {
			errs = append(errs, fmt.Sprintf("peer_up %v, want %v", s.PeerUp, allUp))
		}
		if len(s.Peers) != len(peers) {
			errs = append(errs, fmt.Sprintf("%d peers, want %d", len(s.Peers), len(peers)))
		} else {
			for i, want := range peers {
				// A peer never heard since this node started has no
				// name yet.
				if p := s.Peers[i]; p.Up != up(want) || p.Node != want && (up(want) || p.Node != "") || !sameAddr(p.Address, mpSyncAddr[want]) {
					errs = append(errs, fmt.Sprintf("peer %d %+v, want node %s address %s up %v", i, p, want, mpSyncAddr[want], up(want)))
				}
			}
		}
	}
	if len(errs) > 0 {
		var compact bytes.Buffer
		if json.Compact(&compact, []byte(raw)) != nil {
			compact.WriteString(raw)
		}
		r.t.Errorf("%s status: %s\n%s", role, strings.Join(errs, "; "), compact.String())
	}
	return st
}

// sameAddr reports whether s is a, with or without a port.
func sameAddr(s string, a netip.Addr) bool {
	if got, err := netip.ParseAddr(s); err == nil {
		return got == a
	}
	got, err := netip.ParseAddrPort(s)
	return err == nil && got.Addr() == a
}

// newMPRig builds the lab with split VIPs and starts both nodes; it
// returns once each masters its group, backs up the other, and sees its
// peer up.
func newMPRig(t *testing.T) *failRig {
	t.Helper()
	r := newRigLabWith(t, "direct", lab.Options{NoIPv6: true, SplitVIPs: true})
	for _, role := range []string{lab.RoleFW1, lab.RoleFW2} {
		r.conf[role] = mpConfig(role)
		r.start(role)
	}
	waitMPReady(t, r, []string{lab.RoleFW1, lab.RoleFW2}, mpGroups)
	return r
}

// mpFlows is one group's flowgen client.
type mpFlows struct {
	group  mpGroup
	client *lab.Proc
	report string
	stop   string // the client stops when this file appears
}

// mpStartFlows starts an echo server on each group's server address and
// mpFlowsPerGroup flows to it, running for d, and waits until all are up.
func mpStartFlows(r *failRig, d time.Duration) []*mpFlows {
	r.t.Helper()
	mpStartServers(r, mpGroups)
	return mpStartClients(r, mpGroups, mpFlowsPerGroup, d, "")
}

// mpStartServers starts an echo server on each group's server address.
func mpStartServers(r *failRig, groups []mpGroup) {
	r.t.Helper()
	for _, g := range groups {
		dir := r.t.TempDir()
		addr := netip.AddrPortFrom(g.server, 5001).String()
		r.l.Start(r.t, lab.RoleServer, "flowgen-server-"+g.name, flowgenBin, "server", "-listen", addr, "-ready", filepath.Join(dir, "listening"))
		waitFile(r.t, filepath.Join(dir, "listening"), 5*time.Second)
	}
}

// mpStartClients starts n flows to each group's server, running for d
// (or until stopped), and waits until all are up; tag tells the clients
// apart in the lab's process names.
func mpStartClients(r *failRig, groups []mpGroup, n int, d time.Duration, tag string) []*mpFlows {
	r.t.Helper()
	var fs []*mpFlows
	for _, g := range groups {
		dir := r.t.TempDir()
		addr := netip.AddrPortFrom(g.server, 5001).String()
		f := &mpFlows{group: g, report: filepath.Join(dir, "report.json"), stop: filepath.Join(dir, "stop")}
		f.client = r.l.Start(r.t, lab.RoleClient, "flowgen-client-"+g.name+tag, flowgenBin, "client",
			"-connect", addr, "-flows", fmt.Sprint(n), "-interval", "50ms", "-duration", d.String(),
			"-stop-file", f.stop, "-ready", filepath.Join(dir, "ready"), "-json", f.report)
		fs = append(fs, f)
	}
	for _, f := range fs {
		if err := waitFileErr(filepath.Join(filepath.Dir(f.report), "ready"), 15*time.Second); err != nil {
			r.t.Fatalf("group %s: flows not up: %v\n%s", f.group.name, err, f.client.Log())
		}
	}
	return fs
}

// result waits for the client to end and reads its report.
func (f *mpFlows) result(t *testing.T) flowgen.Report {
	t.Helper()
	if err := f.client.Wait(); err != nil {
		t.Fatalf("group %s: flowgen client: %v\n%s", f.group.name, err, f.client.Log())
	}
	b, err := os.ReadFile(f.report)
	if err != nil {
		t.Fatal(err)
	}
	var rep flowgen.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

// end stops the client now (its stop file) and returns its report.
func (f *mpFlows) end(t *testing.T) flowgen.Report {
	t.Helper()
	if err := os.WriteFile(f.stop, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return f.result(t)
}

// waitFile fails the test unless path appears within timeout.
func waitFile(t testing.TB, path string, timeout time.Duration) {
	t.Helper()
	if err := waitFileErr(path, timeout); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func waitFileErr(path string, timeout time.Duration) error {
	return lab.WaitFor(timeout, 20*time.Millisecond, func() (bool, error) {
		_, err := os.Stat(path)
		return err == nil, nil
	})
}

// mpLiveFlows returns the established TCP entries of a table to server's
// port 5001.
func mpLiveFlows(table map[ct.Key]ct.Flow, server netip.Addr) map[ct.Key]ct.Flow {
	out := map[ct.Key]ct.Flow{}
	for k, f := range table {
		if f.Orig.Proto == ct.ProtoTCP && f.Orig.DstAddr() == server && f.Orig.DstPort == 5001 && f.TCP.State == ct.TCPEstablished {
			out[k] = f
		}
	}
	return out
}

// mpWaitCrossHeld waits until each node's kernel holds, established,
// every live flow of the group its peer masters (and forwards), as its
// peer's kernel has it.
func mpWaitCrossHeld(r *failRig, timeout time.Duration) {
	r.t.Helper()
	conns := map[string]*kernel.Conn{}
	for _, role := range []string{lab.RoleFW1, lab.RoleFW2} {
		conns[role] = dialCT(r.t, r.l.NS(role))
	}
	var problems []string
	err := lab.WaitFor(timeout, 250*time.Millisecond, func() (bool, error) {
		problems = problems[:0]
		tables := map[string]map[ct.Key]ct.Flow{}
		for role, c := range conns {
			tables[role] = dumpTable(r.t, c)
		}
		for _, g := range mpGroups {
			own := mpLiveFlows(tables[g.master], g.server)
			copies := mpLiveFlows(tables[mpPeer[g.master]], g.server)
			if len(own) != mpFlowsPerGroup {
				problems = append(problems, fmt.Sprintf("group %s: %s holds %d established flows to %s, want %d",
					g.name, g.master, len(own), g.server, mpFlowsPerGroup))
			}
			missing := 0
			for k := range own {
				if _, ok := copies[k]; !ok {
					missing++
				}
			}
			if missing > 0 || len(copies) != len(own) {
				problems = append(problems, fmt.Sprintf("group %s: %s holds %d established copies of %s's %d flows (%d missing)",
					g.name, mpPeer[g.master], len(copies), g.master, len(own), missing))
			}
		}
		return len(problems) == 0, nil
	})
	if err != nil {
		r.t.Fatalf("the nodes' kernels do not hold each other's flows after %v:\n%s", timeout, strings.Join(problems, "\n"))
	}
}

// mpOutcome is what one crash did to the flows.
type mpOutcome struct {
	reports map[string]flowgen.Report // by group
	invalid uint64                    // INVALID drops on the survivor
}

// mpFinish reads the survivor's INVALID counter once the flows have had
// time to recover, then waits for the clients and reads their reports.
func mpFinish(r *failRig, fs []*mpFlows, survivor string, event time.Time) mpOutcome {
	r.t.Helper()
	time.Sleep(time.Until(event.Add(9 * time.Second)))
	invalid, err := r.l.InvalidDrops(survivor)
	if err != nil {
		r.t.Fatal(err)
	}
	o := mpOutcome{reports: map[string]flowgen.Report{}, invalid: invalid}
	for _, f := range fs {
		o.reports[f.group.name] = f.result(r.t)
	}
	return o
}

// mpDeadFlows describes the flows of a report that did not survive.
func mpDeadFlows(rep flowgen.Report, max int) string {
	var d []string
	for _, f := range rep.PerFlow {
		if !f.Survived && len(d) < max {
			d = append(d, fmt.Sprintf("flow %d from %s: last echo %s, error %q", f.ID, f.Local, f.LastEcho.Format("15:04:05.000"), f.Error))
		}
	}
	return strings.Join(d, "\n")
}

// TestMultiprimaryCrash: two nodes, each master of one group and
// forwarding its flows; one node crashes (SIGKILL, links down). The
// survivor already holds the dead node's flows in its kernel (direct
// cache): it takes over the dead node's group, becomes master of both,
// and every flow of both groups goes on, with no packet dropped as
// INVALID.
func TestMultiprimaryCrash(t *testing.T) {
	lab.RequireNetns(t)
	for _, victim := range []string{lab.RoleFW1, lab.RoleFW2} {
		t.Run("crash "+victim, func(t *testing.T) {
			survivor := mpPeer[victim]
			r := newMPRig(t)
			fs := mpStartFlows(r, 15*time.Second)
			mpWaitCrossHeld(r, 10*time.Second)
			for _, role := range []string{lab.RoleFW1, lab.RoleFW2} {
				r.mpCheckStatus(role, func(g mpGroup) string {
					if g.master == role {
						return "MASTER"
					}
					return "BACKUP"
				}, true)
			}
			if victim == lab.RoleFW1 {
				// A live multiprimary node has every metric the
				// monitoring examples name (labelled by peer and group).
				checkScrapeNames(t, r.l.MustExec(t, lab.RoleFW1, "curl", "-sf", "http://127.0.0.1:9477/metrics"))
			}

			r.afterAdvert(victim, 750*time.Millisecond)
			kill := r.crash(victim)
			var took time.Duration
			for _, g := range mpGroups {
				for _, v := range g.vips {
					d, err := waitVIP(r.l, survivor, v.iface, v.vip.Addr(), true, kill, 10*time.Second)
					if err != nil {
						t.Fatalf("%s: %v\n%s", survivor, err, r.nodes[survivor].proc.Tail(30))
					}
					took = max(took, d)
				}
			}
			o := mpFinish(r, fs, survivor, kill)
			st := r.mpCheckStatus(survivor, func(mpGroup) string { return "MASTER" }, false)
			var held string
			if st.Sync != nil {
				held = fmt.Sprintf("; the survivor holds %d states as its own, %d as the dead peer's", st.Sync.InternalEntries, st.Sync.ExternalEntries)
			}

			flows, survived, longest := 0, 0, 0.0
			var perGroup []string
			for _, g := range mpGroups {
				rep := o.reports[g.name]
				flows += rep.Flows
				survived += rep.Survived
				longest = max(longest, rep.LongestGapMs)
				gaps := "no gap"
				if rep.FlowsWithGap > 0 {
					gaps = fmt.Sprintf("%d with gaps over %.0f ms from kill%+.2fs", rep.FlowsWithGap, rep.GapThresholdMs, rep.FirstGapStart.Sub(kill).Seconds())
				}
				perGroup = append(perGroup, fmt.Sprintf("group %s (via %s): %d/%d, longest gap %.1fs, %s",
					g.name, g.master, rep.Survived, rep.Flows, rep.LongestGapMs/1000, gaps))
			}
			t.Logf("figure: multiprimary crash %s: %d/%d flows survived, %d INVALID, longest gap %.1fs; kill -> VIPs %v; %s%s",
				victim, survived, flows, o.invalid, longest/1000, took.Round(time.Millisecond), strings.Join(perGroup, "; "), held)

			for _, g := range mpGroups {
				if rep := o.reports[g.name]; rep.Flows != mpFlowsPerGroup || rep.Survived != rep.Flows {
					t.Errorf("group %s (forwarded by %s): %d of %d flows survived, want all %d:\n%s",
						g.name, g.master, rep.Survived, rep.Flows, mpFlowsPerGroup, mpDeadFlows(rep, 5))
				}
			}
			if o.invalid != 0 {
				t.Errorf("the survivor %s dropped %d packets of live flows as INVALID, want none", survivor, o.invalid)
			}
			// The victim's group moves after Master_Down_Interval (3.61 s
			// after its last advert, 2.86 s after the kill), with nothing
			// to commit first; its flows then wait for their next
			// retransmission, the survivor's own flows for nothing.
			if limit := 3300 * time.Millisecond; took > limit {
				t.Errorf("kill -> VIPs %v, want Master_Down_Interval - 0.75 s, under %v", took, limit)
			}
			if limit := firstStepAfter(took) + 500*time.Millisecond; time.Duration(longest*1e6) > limit {
				t.Errorf("longest gap %.0f ms: flows waited past the first retransmission step after the takeover (%v)", longest, limit)
			}
		})
	}
}
