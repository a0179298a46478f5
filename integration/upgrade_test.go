package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/integration/flowgen"
	"github.com/ctha/ctha/integration/lab"
	"github.com/ctha/ctha/internal/control"
)

// prevRelease is the previous release of ctha, which a rolling upgrade
// starts from: the last commit that landed before the multiprimary work
// (2026-12-07 09:13 UTC). Since then the sync protocol gained the NODE
// message (0x21, in every link probe), which that release skips as
// unknown; the status document gained fields. There are no release tags
// yet: when there are, this becomes the previous tag.
const prevRelease = "d8be850419f5a2e58920fb92f6e0d6a41a2f88fb"

// upgradeBackground is the number of idle entries in the master's table
// besides the live flows: enough for a bulk copy of some size, small
// enough to keep the test short.
const upgradeBackground = 5000

// upgradeFlowsB is the number of live flows opened through fw2 while it
// is master: their states reach fw1 only by replication from fw2.
const upgradeFlowsB = 100

// buildPrevRelease builds ctha at prevRelease from this repository's
// history (git archive, then go build) and returns the binary and how
// long the build took. A clone without the commit (a shallow one) fails
// the test with the command that fetches it.
func buildPrevRelease(t *testing.T) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatalf("the previous release is built from this repository's git history, but git rev-parse --show-toplevel failed: %v", err)
	}
	repo := strings.TrimSpace(string(root))
	if out, err := exec.Command("git", "-C", repo, "cat-file", "-e", prevRelease+"^{commit}").CombinedOutput(); err != nil {
		t.Fatalf("commit %s (the previous release, prevRelease) is not in %s (a shallow clone?): %v %s\n"+
			"fetch the history with `git -C %s fetch --unshallow` (or `git fetch origin %s`) and run the test again",
			prevRelease, repo, err, bytes.TrimSpace(out), repo, prevRelease)
	}
	src := t.TempDir()
	tarball := filepath.Join(t.TempDir(), "prev.tar")
	for _, argv := range [][]string{{"git", "-C", repo, "archive", "-o", tarball, prevRelease}, {"tar", "-x", "-f", tarball, "-C", src}} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
		}
	}
	bin := filepath.Join(t.TempDir(), "ctha-old")
	// Built as TestMain builds this release (no -trimpath, which would
	// change every package's cache key): the dependencies the releases
	// share come from the build cache, 4 s instead of 45 s on 2 vCPUs.
	build := exec.Command("go", "build", "-o", bin, "./cmd/ctha")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the previous release %s: %v\n%s", prevRelease, err, out)
	}
	return bin, time.Since(start)
}

// relNode is a ctha daemon of one release: it runs bin, and its CLI is
// the same binary, as on a machine where that release is installed.
type relNode struct {
	*node
	bin     string
	release string // "old" or "new"
}

// startRelease runs bin as role's daemon with the example configuration
// and the state directory stateDir (kept across restarts) and waits until
// it answers.
func startRelease(t *testing.T, r *failRig, role, bin, release, stateDir string) *relNode {
	t.Helper()
	n := &node{lab: r.l, role: role, dir: t.TempDir()}
	n.config = filepath.Join(n.dir, "ctha.hcl")
	n.socket = filepath.Join(n.dir, "ctha.sock")
	if err := os.WriteFile(filepath.Join(n.dir, "sync.key"), []byte(testKey), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("state_dir = %q\n", stateDir) + exampleConfig(t, role+".hcl")
	if err := os.WriteFile(n.config, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	n.proc = r.l.Start(t, role, "ctha-"+release+"-"+role, bin, "run", "-c", n.config, "-s", n.socket)
	rn := &relNode{node: n, bin: bin, release: release}
	err := lab.WaitFor(10*time.Second, 20*time.Millisecond, func() (bool, error) {
		if n.proc.Exited() {
			return false, fmt.Errorf("ctha exited: %v\n%s", n.proc.Wait(), n.proc.Log())
		}
		_, err := rn.status()
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("ctha (%s) in %s does not answer: %v", release, role, err)
	}
	r.nodes[role] = n
	return rn
}

// ctl runs the node's own release's CLI against its socket.
func (n *relNode) ctl(args ...string) (string, error) {
	return n.lab.ExecTimeout(20*time.Second, n.role, append(append([]string{n.bin}, args...), "-s", n.socket)...)
}

// status is `ctha status --json` of the node's release, read into this
// release's document (an older one lacks fields, which stay zero).
func (n *relNode) status() (control.Status, error) {
	out, err := n.ctl("status", "--json")
	if err != nil {
		return control.Status{}, fmt.Errorf("%s (%s) status: %w\n%s", n.role, n.release, err, out)
	}
	var st control.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return control.Status{}, fmt.Errorf("%s (%s) status --json: %w\n%s", n.role, n.release, err, out)
	}
	return st, nil
}

// waitGroup waits until the node's group fw is in state.
func (n *relNode) waitGroup(t *testing.T, state string, timeout time.Duration) {
	t.Helper()
	var st control.Status
	err := lab.WaitFor(timeout, 20*time.Millisecond, func() (bool, error) {
		var err error
		st, err = n.status()
		return err == nil && len(st.Groups) == 1 && st.Groups[0].State == state, nil
	})
	if err != nil {
		t.Fatalf("%s (%s): group not %s within %v: %+v\n%s", n.role, n.release, state, timeout, st.Groups, n.proc.Tail(40))
	}
}

// checkPair waits up to 3 s (a keep-alive carries the role) until both
// nodes' status shows the group's state and the sync peer up with the
// other's role, no split brain; then it fails the test with what it saw.
func checkPair(t *testing.T, step string, master, backup *relNode) {
	t.Helper()
	var errs []string
	_ = lab.WaitFor(3*time.Second, 50*time.Millisecond, func() (bool, error) {
		errs = nil
		for _, c := range []struct {
			n               *relNode
			state, peerRole string
		}{{master, "MASTER", "BACKUP"}, {backup, "BACKUP", "MASTER"}} {
			errs = append(errs, pairErrs(c.n, c.state, c.peerRole)...)
		}
		return len(errs) == 0, nil
	})
	if len(errs) > 0 {
		t.Errorf("%s: %s", step, strings.Join(errs, "; "))
	}
}

// pairErrs says how n's status differs from a node in state whose peer
// is up in peerRole.
func pairErrs(n *relNode, state, peerRole string) []string {
	st, err := n.status()
	if err != nil {
		return []string{err.Error()}
	}
	var errs []string
	if len(st.Groups) != 1 || st.Groups[0].State != state {
		errs = append(errs, fmt.Sprintf("groups %+v, want fw %s", st.Groups, state))
	}
	switch s := st.Sync; {
	case s == nil:
		errs = append(errs, "no sync status")
	case !s.PeerUp || s.PeerRole != peerRole || s.SplitBrain:
		errs = append(errs, fmt.Sprintf("peer_up %v peer_role %q split_brain %v, want the peer up as %s", s.PeerUp, s.PeerRole, s.SplitBrain, peerRole))
	case n.release == "new" && (len(s.Peers) != 1 || !s.Peers[0].Up):
		errs = append(errs, fmt.Sprintf("peers %+v, want one up", s.Peers))
	}
	for i := range errs {
		errs[i] = fmt.Sprintf("%s (%s) status: %s", n.role, n.release, errs[i])
	}
	return errs
}

// liveStates counts role's kernel entries of the live flows (TCP to the
// flowgen server, established).
func liveStates(r *failRig, role string) int {
	out, err := r.l.Exec(role, "conntrack", "-L", "-p", "tcp", "--dport", "5001", "-d", lab.ServerAddr.Addr().String())
	if err != nil {
		return -1
	}
	n := 0
	for line := range strings.Lines(out) {
		if strings.Contains(line, "ESTABLISHED") {
			n++
		}
	}
	return n
}

// waitLiveStates waits until role's kernel holds at least n live flows.
func waitLiveStates(t *testing.T, r *failRig, role string, n int, timeout time.Duration, why string) {
	t.Helper()
	if err := lab.WaitFor(timeout, 50*time.Millisecond, func() (bool, error) {
		return liveStates(r, role) >= n, nil
	}); err != nil {
		t.Fatalf("%s: %s's kernel holds %d live flows, want %d: %v", why, role, liveStates(r, role), n, err)
	}
}

// flowBatch is one flowgen client, stopped by a stop file.
type flowBatch struct {
	proc         *lab.Proc
	stop, report string
}

func startBatch(t *testing.T, r *failRig, name string, flows int) *flowBatch {
	t.Helper()
	dir := t.TempDir()
	b := &flowBatch{stop: filepath.Join(dir, "stop"), report: filepath.Join(dir, "report.json")}
	ready := filepath.Join(dir, "ready")
	b.proc = r.l.Start(t, lab.RoleClient, "flowgen-"+name, flowgenBin, "client",
		"-connect", lab.ServerAddr.Addr().String()+":5001", "-flows", fmt.Sprint(flows), "-interval", "50ms",
		"-duration", "0", "-stop-file", b.stop, "-ready", ready, "-json", b.report)
	if err := lab.WaitFor(15*time.Second, 20*time.Millisecond, func() (bool, error) {
		_, err := os.Stat(ready)
		return err == nil, nil
	}); err != nil {
		t.Fatalf("flows %s not up: %v\n%s", name, err, b.proc.Log())
	}
	return b
}

// end stops the batch and returns its report.
func (b *flowBatch) end(t *testing.T) flowgen.Report {
	t.Helper()
	if err := os.WriteFile(b.stop, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.proc.Done():
	case <-time.After(15 * time.Second):
		t.Fatalf("flowgen %s did not stop\n%s", b.proc.Name, b.proc.Log())
	}
	if err := b.proc.Wait(); err != nil {
		t.Fatalf("flowgen %s: %v\n%s", b.proc.Name, err, b.proc.Log())
	}
	data, err := os.ReadFile(b.report)
	if err != nil {
		t.Fatal(err)
	}
	var rep flowgen.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

// upgradeStep is one event of the upgrade and what the flows saw after it.
type upgradeStep struct {
	name     string
	at       time.Time     // the command, the kill, the start
	took     time.Duration // at -> the new master holds both VIPs
	gapLimit time.Duration
	longest  float64 // ms, the longest gap that began in this step
}

// invalidTally counts, before the lab's ruleset drops them, the INVALID
// packets by interface and kind (a bare ACK is 52 bytes with the
// timestamp option): what a failure reports.
const invalidTally = `table inet tally {
  chain forward {
    type filter hook forward priority -5; policy accept;
    ct state invalid iifname "lan" tcp flags & (syn | fin | rst) != 0 counter comment "from lan, syn/fin/rst"
    ct state invalid iifname "lan" tcp flags & (syn | fin | rst) == 0 ip length <= 52 counter comment "from lan, bare ack"
    ct state invalid iifname "lan" tcp flags & (syn | fin | rst) == 0 ip length > 52 counter comment "from lan, data"
    ct state invalid iifname "wan" tcp flags & (syn | fin | rst) != 0 counter comment "from wan, syn/fin/rst"
    ct state invalid iifname "wan" tcp flags & (syn | fin | rst) == 0 ip length <= 52 counter comment "from wan, bare ack"
    ct state invalid iifname "wan" tcp flags & (syn | fin | rst) == 0 ip length > 52 counter comment "from wan, data"
  }
}
`

// noInvalid fails the test if either firewall has dropped a packet as
// INVALID so far, with the tally of those packets.
func noInvalid(t *testing.T, r *failRig, step string) {
	t.Helper()
	for _, role := range []string{lab.RoleFW1, lab.RoleFW2} {
		n, err := r.l.InvalidDrops(role)
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			tally, _ := r.l.Exec(role, "nft", "list", "table", "inet", "tally")
			t.Errorf("after %s: %s dropped %d packets of live flows as INVALID, want none; by interface and flags:\n%s\nits kernel holds %d live flows",
				step, role, n, tally, liveStates(r, role))
		}
	}
}

// TestRollingUpgrade (issue 17): a node of the previous release
// (prevRelease, built from this repository's history) and one of this
// release replicate and fail over together, both ways, planned and by a
// crash; then the old node is upgraded. The example pair, direct cache,
// the strict ruleset, live TCP flows through the VIPs:
//
//  1. fw1 old MASTER, fw2 new BACKUP: fw2's kernel holds fw1's flows.
//  2. `ctha failover` on fw1 (old): fw2 (new) takes over.
//  3. More flows through fw2: fw1's (old) kernel gets them.
//  4. fw2 (new) crashes: fw1 (old, still demoted) takes over; the flows
//     opened through fw2 survive only by replication new -> old.
//  5. fw2 reboots (empty table) on the new release: it waits for fw1's
//     (old) complete copy, then preempts the demoted fw1.
//  6. The upgrade of fw1: stopped, started on the new release with its
//     state directory; it waits for fw2's copy and preempts back
//     (`ctha failover --cancel` after it: a restart has already ended the
//     demotion).
//
// Every flow survives every step, and no packet of them is dropped as
// INVALID by either node.
func TestRollingUpgrade(t *testing.T) {
	lab.RequireNetns(t)
	oldBin, buildTook := buildPrevRelease(t)
	t.Logf("previous release %.12s built in %v", prevRelease, buildTook.Round(10*time.Millisecond))
	began := time.Now()

	r := newRigLab(t, "direct")
	for _, role := range []string{lab.RoleFW1, lab.RoleFW2} {
		if err := r.l.Nft(role, invalidTally); err != nil {
			t.Fatal(err)
		}
	}
	state := map[string]string{lab.RoleFW1: filepath.Join(t.TempDir(), "state"), lab.RoleFW2: filepath.Join(t.TempDir(), "state")}
	fw1 := startRelease(t, r, lab.RoleFW1, oldBin, "old", state[lab.RoleFW1])
	fw1.waitGroup(t, "MASTER", 10*time.Second)
	c := dialCT(t, r.l.NS(lab.RoleFW1))
	writeFlows(t, c, kernel.Create, backgroundFlows(upgradeBackground))
	fw2 := startRelease(t, r, lab.RoleFW2, cthaBin, "new", state[lab.RoleFW2])
	fw2.waitGroup(t, "BACKUP", 5*time.Second)
	r.l.Start(t, lab.RoleServer, "flowgen-server", flowgenBin, "server", "-listen", lab.ServerAddr.Addr().String()+":5001")
	time.Sleep(200 * time.Millisecond)
	a := startBatch(t, r, "a", rigFlows)

	// 1. Replication old -> new.
	waitLiveStates(t, r, lab.RoleFW2, rigFlows, 15*time.Second, "old -> new")
	if err := lab.WaitFor(15*time.Second, 50*time.Millisecond, func() (bool, error) {
		st, err := fw2.status()
		return err == nil && st.Sync != nil && st.Sync.ExternalEntries >= upgradeBackground+rigFlows, nil
	}); err != nil {
		st, _ := fw2.status()
		t.Fatalf("fw2 (new) never held fw1's (old) %d states: %v (sync %+v)", upgradeBackground+rigFlows, err, st.Sync)
	}
	checkPair(t, "old master, new backup", fw1, fw2)
	if st, err := fw2.status(); err == nil && st.Sync != nil && len(st.Sync.Peers) == 1 {
		p := st.Sync.Peers[0]
		t.Logf("fw2 (new) sees its old peer: node %q (an old release sends no NODE message), address %s, up %v, entries %d, copy %d of %d",
			p.Node, p.Address, p.Up, p.Entries, p.BulkReceived, p.BulkExpected)
	}
	time.Sleep(300 * time.Millisecond)

	var steps []*upgradeStep
	step := func(name string) *upgradeStep {
		s := &upgradeStep{name: name, at: time.Now(), gapLimit: firstStepAfter(1200*time.Millisecond) + 500*time.Millisecond}
		steps = append(steps, s)
		return s
	}

	// 2. Planned handover old -> new.
	s := step("failover old fw1 -> new fw2")
	if out, err := fw1.ctl("failover"); err != nil {
		t.Fatalf("ctha failover (old) on fw1: %v\n%s", err, out)
	}
	s.took = r.waitVIPs(lab.RoleFW2, s.at, 10*time.Second)
	fw1.waitGroup(t, "BACKUP", 5*time.Second)
	if limit := 1200 * time.Millisecond; s.took > limit {
		t.Errorf("%s: VIPs on fw2 after %v, want a drained handover under %v", s.name, s.took, limit)
	}
	checkPair(t, s.name, fw2, fw1)
	time.Sleep(time.Until(s.at.Add(2500 * time.Millisecond)))
	noInvalid(t, r, s.name)

	// 3. Replication new -> old: flows only fw2 forwards.
	b := startBatch(t, r, "b", upgradeFlowsB)
	waitLiveStates(t, r, lab.RoleFW1, rigFlows+upgradeFlowsB, 15*time.Second, "new -> old")
	time.Sleep(300 * time.Millisecond)

	// 4. The new master crashes; the old backup takes over.
	r.afterAdvert(lab.RoleFW2, 750*time.Millisecond)
	s = step("crash of new fw2, old fw1 takes over")
	r.crash(lab.RoleFW2)
	s.took = r.waitVIPs(lab.RoleFW1, s.at, 10*time.Second)
	s.gapLimit = firstStepAfter(s.took) + 500*time.Millisecond
	// fw1 is still demoted by the failover (priority 1): its
	// Master_Down_Interval is 3.996 s after the last advert, 3.25 s after
	// the kill.
	if limit := 3700 * time.Millisecond; s.took > limit {
		t.Errorf("%s: kill -> VIPs %v, want Master_Down_Interval - 0.75 s, under %v", s.name, s.took, limit)
	}
	time.Sleep(time.Until(s.at.Add(9 * time.Second))) // up to the 6.6 s retransmission
	noInvalid(t, r, s.name)

	// 5. fw2 reboots on the new release: an empty table, the old master's
	// copy, then preemption of the demoted fw1.
	r.l.MustExec(t, lab.RoleFW2, "conntrack", "-F")
	for _, ifname := range []string{"lan", "wan"} {
		if err := r.l.SetLink(lab.RoleFW2, ifname, true); err != nil {
			t.Fatal(err)
		}
	}
	s = step("new fw2 rejoins, takes old fw1's copy, preempts")
	fw2 = startRelease(t, r, lab.RoleFW2, cthaBin, "new", state[lab.RoleFW2])
	waitRejoin(t, fw2, upgradeBackground+rigFlows+upgradeFlowsB, s.name)
	s.took = r.waitVIPs(lab.RoleFW2, s.at, 5*time.Second)
	fw1.waitGroup(t, "BACKUP", 5*time.Second)
	checkPair(t, s.name, fw2, fw1)
	time.Sleep(2500 * time.Millisecond)
	noInvalid(t, r, s.name)
	if st := syncStats(t, fw2.node); st.BulksReceived != 1 {
		t.Errorf("%s: fw2 received %d complete copies from the old fw1, want one", s.name, st.BulksReceived)
	}

	// 6. fw1 upgraded: stopped, started on the new release with its state
	// directory; it takes fw2's copy and preempts back.
	s = step("fw1 upgraded, preempts new fw2")
	if err := fw1.proc.Stop(10 * time.Second); err != nil {
		t.Errorf("the old fw1 did not stop cleanly: %v\n%s", err, fw1.proc.Tail(20))
	}
	fw1 = startRelease(t, r, lab.RoleFW1, cthaBin, "new", state[lab.RoleFW1])
	waitRejoin(t, fw1, upgradeBackground+rigFlows+upgradeFlowsB, s.name)
	s.took = r.waitVIPs(lab.RoleFW1, s.at, 5*time.Second)
	if out, err := fw1.ctl("failover", "--cancel"); err != nil {
		t.Errorf("ctha failover --cancel on the upgraded fw1: %v\n%s", err, out)
	}
	fw2.waitGroup(t, "BACKUP", 5*time.Second)
	time.Sleep(2500 * time.Millisecond)
	checkPair(t, s.name, fw1, fw2)
	noInvalid(t, r, s.name)

	ra, rb := a.end(t), b.end(t)
	for _, rep := range []flowgen.Report{ra, rb} {
		for _, f := range rep.PerFlow {
			for _, g := range f.Gaps {
				for i := len(steps) - 1; i >= 0; i-- {
					if !g.Start.Before(steps[i].at.Add(-200 * time.Millisecond)) {
						steps[i].longest = max(steps[i].longest, g.Ms)
						break
					}
				}
			}
		}
	}
	var invalid uint64
	for _, role := range []string{lab.RoleFW1, lab.RoleFW2} {
		n, _ := r.l.InvalidDrops(role)
		invalid += n
	}
	var gaps []string
	for _, s := range steps {
		gaps = append(gaps, fmt.Sprintf("%s: VIPs %v, longest gap %.0f ms", s.name, s.took.Round(time.Millisecond), s.longest))
		if time.Duration(s.longest*float64(time.Millisecond)) > s.gapLimit {
			t.Errorf("%s: longest gap %.0f ms, over %v: the flows waited past the first retransmission step after the VIPs moved", s.name, s.longest, s.gapLimit)
		}
	}
	t.Logf("figure: rolling upgrade, previous release %.7s, %d background: %d/%d and %d/%d flows survived (opened through old fw1, through new fw2), INVALID drops %d; %s; old build %v, test %v",
		prevRelease, upgradeBackground, ra.Survived, ra.Flows, rb.Survived, rb.Flows, invalid, strings.Join(gaps, "; "),
		buildTook.Round(10*time.Millisecond), time.Since(began).Round(100*time.Millisecond))
	for _, c := range []struct {
		rep   flowgen.Report
		flows int
	}{{ra, rigFlows}, {rb, upgradeFlowsB}} {
		if c.rep.Flows != c.flows || !c.rep.AllSurvived() {
			t.Errorf("%d of %d flows survived (%d errored), want all %d", c.rep.Survived, c.rep.Flows, c.rep.Errored, c.flows)
		}
	}
}

// waitRejoin waits until a (re)started node of this release has taken
// over, and checks from its log that it was allowed to preempt only once
// it held a complete copy of at least want of its peer's entries.
func waitRejoin(t *testing.T, n *relNode, want int, step string) {
	t.Helper()
	n.waitGroup(t, "MASTER", 20*time.Second)
	log := n.proc.Log()
	allowed := strings.Index(log, `msg="preemption allowed"`)
	took := strings.Index(log, `msg="group transition" group=fw from=BACKUP to=MASTER`)
	if allowed < 0 || took < allowed {
		t.Errorf("%s: %s (%s) took over before its preemption was allowed\n%s", step, n.role, n.release, n.proc.Tail(30))
		return
	}
	line, _, _ := strings.Cut(log[allowed:], "\n")
	var received int
	if i := strings.Index(line, "copy_received="); i >= 0 {
		fmt.Sscan(line[i+len("copy_received="):], &received)
	}
	if !strings.Contains(line, `reason="bulk copy complete"`) || received < want {
		t.Errorf("%s: %s (%s) was allowed to preempt with %q, want a complete copy of at least %d entries", step, n.role, n.release, line, want)
	}
}
