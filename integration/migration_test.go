package integration

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/flowgen"
	"github.com/ctha/ctha/integration/lab"
	"github.com/ctha/ctha/internal/control"
)

// migPassword is the pair's VRRPv2 auth_pass, keepalived's and then
// ctha's (imported).
const migPassword = "secret1"

// migNode is one firewall of the migration: keepalived and conntrackd
// (the baseline: external cache, primary-backup.sh), then ctha.
type migNode struct {
	role string
	ka   *lab.Proc
	ctd  *lab.Conntrackd
	ctha *node
}

// startMigBaseline starts conntrackd and keepalived in role as the
// benchmarks' documented baseline (startHA), but VRRPv2 with auth_type
// PASS and 1 s adverts.
func startMigBaseline(t *testing.T, l *lab.Lab, role string, prio int) *migNode {
	t.Helper()
	m := &migNode{role: role}
	dir := t.TempDir()
	m.ctd = l.StartConntrackd(t, role, lab.ConntrackdConfig{})
	script := filepath.Join(dir, "primary-backup.sh")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(notifyScript, m.ctd.ConfigPath, dir)), 0o755); err != nil {
		t.Fatal(err)
	}
	var ins []lab.KeepalivedInstance
	for i, in := range []struct {
		name string
		vip  netip.Prefix
	}{{"lan", lab.LANVIP}, {"wan", lab.WANVIP}} {
		ins = append(ins, lab.KeepalivedInstance{Name: in.name, Interface: in.name, VRID: 51 + i, Priority: prio,
			Version: 2, AdvertInterval: time.Second, VIPs: []netip.Prefix{in.vip}, AuthType: "PASS", AuthPass: migPassword})
	}
	m.ka = l.StartKeepalived(t, role, lab.KeepalivedConfig{Instances: ins, SyncGroup: "fw",
		NotifyMaster: script + " primary", NotifyBackup: script + " backup", NotifyFault: script + " fault"})
	return m
}

// importConfig runs the runbook's `ctha import` on the files the
// baseline's daemons run with, and its one edit: protocol = "conntrackd"
// in conntrack_sync (import leaves the protocol out: ctha's own is the
// default). The test adds a state_dir of its own (both nodes share the
// host's filesystem) and checks the file as the runbook does.
func (m *migNode) importConfig(t *testing.T, l *lab.Lab) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "ctha.hcl")
	ka := filepath.Join(m.ka.Dir, "keepalived.conf")
	if res, err := l.Exec(m.role, cthaBin, "import", "--keepalived", ka, "--conntrackd", m.ctd.ConfigPath, "-o", out); err != nil {
		t.Fatalf("%s: ctha import: %v\n%s", m.role, err, res)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	conf := string(b)
	if regexp.MustCompile(`(?m)^\s*protocol\s*=`).MatchString(conf) {
		t.Fatalf("%s: ctha import wrote a protocol; the runbook adds it:\n%s", m.role, conf)
	}
	for _, want := range []string{`type     = "pass"`, `version         = 2`, `advert_interval = "1s"`, `conntrack = true`, `cache = "external"`, `auth_key_file = "sync.key"`} {
		if !strings.Contains(conf, want) {
			t.Errorf("%s: the imported configuration lacks %s:\n%s", m.role, want, conf)
		}
	}
	conf = strings.Replace(conf, "conntrack_sync {\n", "conntrack_sync {\n  protocol = \"conntrackd\"\n", 1)
	conf = fmt.Sprintf("state_dir = %q\n", filepath.Join(filepath.Dir(out), "state")) + conf
	if err := os.WriteFile(out, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if res, err := l.Exec(m.role, cthaBin, "check", "-c", out); err != nil {
		t.Fatalf("%s: ctha check of the imported configuration: %v\n%s\n%s", m.role, err, res, conf)
	}
	return out
}

// startCtha runs `ctha run -c conf` in the node's namespace, its socket
// beside the file, and waits until it answers.
func (m *migNode) startCtha(t *testing.T, l *lab.Lab, conf string) *node {
	t.Helper()
	n := &node{lab: l, role: m.role, dir: filepath.Dir(conf), config: conf}
	n.socket = filepath.Join(n.dir, "ctha.sock")
	n.proc = l.Start(t, m.role, "ctha-"+m.role, cthaBin, "run", "-c", conf, "-s", n.socket)
	if err := lab.WaitFor(10*time.Second, 20*time.Millisecond, func() (bool, error) {
		if n.proc.Exited() {
			return false, fmt.Errorf("ctha exited: %v\n%s", n.proc.Wait(), n.proc.Log())
		}
		_, err := n.status()
		return err == nil, err
	}); err != nil {
		t.Fatalf("ctha in %s does not answer: %v", m.role, err)
	}
	m.ctha = n
	return n
}

// stopBaseline stops the node's keepalived, then its conntrackd, by pid
// (SIGTERM: keepalived resigns with a priority-0 advert and removes its
// VIPs).
func (m *migNode) stopBaseline(t *testing.T) {
	t.Helper()
	if err := m.ka.Stop(5 * time.Second); err != nil {
		t.Fatalf("%s: stop keepalived: %v\n%s", m.role, err, m.ka.Tail(20))
	}
	if err := m.ctd.Stop(5 * time.Second); err != nil {
		t.Fatalf("%s: stop conntrackd: %v\n%s", m.role, err, m.ctd.Tail(20))
	}
}

// migStep is one step of the runbook and what it did to the flows.
type migStep struct {
	name       string
	at, end    time.Time
	holder     string            // the VIPs' node at its end
	from       string            // the VIPs' node before it, if they moved
	invalidAt  map[string]uint64 // INVALID drops by node when it began
	invalid    map[string]uint64 // during it
	longest    float64           // ms, the longest gap that began in it
	gapLimit   time.Duration
	survived   int
	dualHolder time.Duration // how long a VIP was on both nodes
	vipsAdded  int           // VIPs added on either node
	wantAdded  int
}

// vipHolders replays the address events of both firewalls from the
// holders at since and returns, per step, how long any VIP was held by
// both at once.
func vipHolders(steps []*migStep, since time.Time, initial map[netip.Addr]map[string]bool, events map[string][]lab.AddrEvent) {
	type ev struct {
		lab.AddrEvent
		role string
	}
	var all []ev
	for role, es := range events {
		for _, e := range es {
			if _, vip := initial[e.Addr]; vip && !e.At.Before(since) {
				all = append(all, ev{e, role})
			}
		}
	}
	slices.SortStableFunc(all, func(a, b ev) int { return a.At.Compare(b.At) })
	holders := initial
	var dualSince time.Time
	stepAt := func(at time.Time) *migStep {
		for i := len(steps) - 1; i >= 0; i-- {
			if !at.Before(steps[i].at) {
				return steps[i]
			}
		}
		return steps[0]
	}
	dual := func() bool {
		for _, h := range holders {
			if len(h) > 1 {
				return true
			}
		}
		return false
	}
	for _, e := range all {
		if e.Added {
			stepAt(e.At).vipsAdded++
			holders[e.Addr][e.role] = true
		} else {
			delete(holders[e.Addr], e.role)
		}
		switch d := dual(); {
		case d && dualSince.IsZero():
			dualSince = e.At
		case !d && !dualSince.IsZero():
			s := stepAt(dualSince)
			s.dualHolder += max(e.At.Sub(dualSince), time.Microsecond)
			dualSince = time.Time{}
		}
	}
	if !dualSince.IsZero() {
		s := stepAt(dualSince)
		s.dualHolder += time.Since(dualSince)
	}
}

// TestMigrationRunbook (issue 20) follows README's "Migrating a running
// pair" on the lab, with 200 live TCP flows through the VIPs and the
// strict ruleset: fw1 (priority 150) and fw2 (100), both preempting,
// VRRPv2 with auth_type PASS.
//
//  1. Baseline: keepalived + conntrackd (external cache, primary-backup.sh)
//     on both, fw1 master.
//  2. fw2 (backup): keepalived and conntrackd stopped, ctha started from
//     `ctha import` of their files plus protocol = "conntrackd".
//  3. fw1's keepalived and conntrackd stopped: fw2 takes over.
//  4. ctha on fw1 from its imported file: it waits for fw2's copy, then
//     preempts back.
//  5. `ctha keygen` on fw2, the key copied to fw1; protocol = "conntrackd"
//     removed on both, SIGHUP, fw2 (backup) first.
//  6. `ctha failover` on fw1 and `ctha failover --cancel`: fw2 takes over
//     and fw1 preempts back, on ctha's protocol.
//
// Every flow survives every step, neither node drops a packet of them as
// INVALID, and no VIP is ever on both nodes (netlink address events of
// both, replayed).
func TestMigrationRunbook(t *testing.T) {
	lab.RequireNetns(t)
	lab.RequireCommands(t, "keepalived", "conntrackd")
	began := time.Now()
	r := newRigLab(t, "external")
	l := r.l
	for _, role := range []string{lab.RoleFW1, lab.RoleFW2} {
		if err := l.Nft(role, invalidTally); err != nil {
			t.Fatal(err)
		}
	}
	fw1 := startMigBaseline(t, l, lab.RoleFW1, 150)
	fw2 := startMigBaseline(t, l, lab.RoleFW2, 100)
	vips := []netip.Addr{lab.LANVIP.Addr(), lab.WANVIP.Addr()}
	if _, err := waitVIPs(l, lab.RoleFW1, time.Now(), 10*time.Second); err != nil {
		t.Fatalf("baseline: fw1 not master: %v\n%s", err, fw1.ka.Tail(20))
	}
	watch := map[string]*addrWatch{lab.RoleFW1: watchAddrs(t, l, lab.RoleFW1), lab.RoleFW2: watchAddrs(t, l, lab.RoleFW2)}
	watchFrom := time.Now()
	initial := map[netip.Addr]map[string]bool{}
	for i, v := range vips {
		initial[v] = map[string]bool{}
		for _, role := range []string{lab.RoleFW1, lab.RoleFW2} {
			if has, err := l.HasAddr(role, []string{"lan", "wan"}[i], v); err != nil {
				t.Fatal(err)
			} else if has {
				initial[v][role] = true
			}
		}
	}
	if len(initial[vips[0]]) != 1 || !initial[vips[0]][lab.RoleFW1] || len(initial[vips[1]]) != 1 || !initial[vips[1]][lab.RoleFW1] {
		t.Fatalf("baseline: VIP holders %v, want fw1 alone", initial)
	}

	l.Start(t, lab.RoleServer, "flowgen-server", flowgenBin, "server", "-listen", lab.ServerAddr.Addr().String()+":5001")
	time.Sleep(100 * time.Millisecond)
	flows := startMigFlows(t, l)
	ctdExternal := func(m *migNode) int {
		out, err := m.ctd.Ctl("-s")
		if err != nil {
			return -1
		}
		_, ex, err := conntrackdCacheSizes(out)
		if err != nil {
			return -1
		}
		return ex
	}
	if err := lab.WaitFor(10*time.Second, 50*time.Millisecond, func() (bool, error) { return ctdExternal(fw2) >= rigFlows, nil }); err != nil {
		t.Fatalf("baseline: fw2's conntrackd holds %d of fw1's flows, want %d: %v", ctdExternal(fw2), rigFlows, err)
	}
	t.Logf("baseline up %v after the start: fw1 master, fw2's conntrackd holds fw1's %d flows", time.Since(began).Round(time.Millisecond), rigFlows)

	invalidNow := func() map[string]uint64 {
		n := map[string]uint64{}
		for _, role := range []string{lab.RoleFW1, lab.RoleFW2} {
			c, err := l.InvalidDrops(role)
			if err != nil {
				t.Fatal(err)
			}
			n[role] = c
		}
		return n
	}
	// Gap limits: a step that moves no VIP, 500 ms; one that does, the
	// VIPs' time plus the TCP retransmission step the flows are on.
	const quiet, moved = 500 * time.Millisecond, 2500 * time.Millisecond
	// dualLimit: a preemption is VRRP's, the new master's advert makes
	// the old one let go of the VIPs (1-4 ms in the daemons' logs); the
	// address events of two namespaces, read by two goroutines, add
	// their delivery latency (up to 20 ms seen). A poll of both nodes
	// every 50 ms would not see it; a split brain lasts an advert
	// interval or more.
	const dualLimit = 50 * time.Millisecond
	var steps []*migStep
	var cur *migStep
	// settle lets the flows run through the new state of a step (a
	// packet every 50 ms on each), then closes it.
	endStep := func(settle time.Duration) {
		time.Sleep(settle)
		cur.end = time.Now()
		cur.invalid = invalidNow()
		for role, n := range cur.invalidAt {
			cur.invalid[role] -= n
		}
	}
	holder := lab.RoleFW1
	// step begins a step after which holder holds the VIPs.
	step := func(name string, gapLimit time.Duration, to string) {
		cur = &migStep{name: name, at: time.Now(), invalidAt: invalidNow(), gapLimit: gapLimit, holder: to}
		if to != holder {
			cur.from, cur.wantAdded, holder = holder, len(vips), to
		}
		steps = append(steps, cur)
	}

	// 2. fw2, the backup, to ctha speaking conntrackd's protocol.
	step("2 fw2 backup: keepalived+conntrackd -> ctha (protocol conntrackd)", quiet, lab.RoleFW1)
	conf2 := fw2.importConfig(t, l)
	fw2.stopBaseline(t)
	n2 := fw2.startCtha(t, l, conf2)
	waitGroupState(t, n2, "BACKUP", 5*time.Second)
	waitEntries(t, n2, 15*time.Second, "fw2 holds fw1's conntrackd copy", func(s control.SyncStatus) bool {
		return s.Protocol == "conntrackd" && s.PeerUp && s.BulkComplete && s.ExternalEntries >= rigFlows
	})
	// keepalived's PASS adverts accepted.
	checkAuthDrops(t, n2)
	// The external cache: fw1's states are in fw2's ctha, not its kernel,
	// so the flows survive step 3 only through the commit.
	if n := liveStates(r, lab.RoleFW2); n != 0 {
		t.Errorf("%s: fw2's kernel holds %d live flows before its takeover, want 0 (external cache)", cur.name, n)
	}
	endStep(300 * time.Millisecond)

	// 3. fw1's keepalived and conntrackd stopped: fw2 takes over.
	step("3 fw1: keepalived+conntrackd stopped, fw2 takes over", moved, lab.RoleFW2)
	conf1 := fw1.importConfig(t, l)
	fw1.stopBaseline(t)
	if _, err := waitVIPs(l, lab.RoleFW2, cur.at, 6*time.Second); err != nil {
		t.Fatalf("%s: %v\n%s", cur.name, err, n2.proc.Tail(30))
	}
	waitGroupState(t, n2, "MASTER", 3*time.Second)
	// A dump of a changing table may miss an entry: polled.
	if n := liveStates(r, lab.RoleFW2); n < rigFlows {
		out, _ := l.Exec(lab.RoleFW2, "conntrack", "-L", "-p", "tcp", "--dport", "5001")
		var odd []string
		for line := range strings.Lines(out) {
			if !strings.Contains(line, "ESTABLISHED") {
				odd = append(odd, line)
			}
		}
		t.Logf("%s: the first dump of fw2's kernel found %d live flows; not ESTABLISHED now: %q", cur.name, n, odd)
	}
	if err := lab.WaitFor(2*time.Second, 50*time.Millisecond, func() (bool, error) {
		return liveStates(r, lab.RoleFW2) >= rigFlows, nil
	}); err != nil {
		out, _ := l.Exec(lab.RoleFW2, "conntrack", "-L", "-p", "tcp", "--dport", "5001")
		t.Errorf("%s: fw2's kernel holds %d live flows after its takeover, want %d (committed): %v\n%s", cur.name, liveStates(r, lab.RoleFW2), rigFlows, err, out)
	}
	endStep(time.Second)

	// 4. ctha on fw1: it waits for fw2's copy, then preempts.
	step("4 fw1: ctha (protocol conntrackd) waits for fw2's copy, preempts", moved, lab.RoleFW1)
	n1 := fw1.startCtha(t, l, conf1)
	waitRejoin(t, &relNode{node: n1, bin: cthaBin, release: "new"}, rigFlows, cur.name)
	if _, err := waitVIPs(l, lab.RoleFW1, cur.at, 5*time.Second); err != nil {
		t.Fatalf("%s: %v\n%s", cur.name, err, n1.proc.Tail(30))
	}
	waitGroupState(t, n2, "BACKUP", 3*time.Second)
	waitEntries(t, n2, 10*time.Second, "fw2 holds fw1's copy", func(s control.SyncStatus) bool {
		return s.PeerUp && s.BulkComplete && s.ExternalEntries >= rigFlows
	})
	endStep(time.Second)

	// 5. ctha's protocol with a key: keygen on fw2, copied to fw1, the
	// protocol line removed, SIGHUP, fw2 (backup) first.
	step("5 keygen, protocol conntrackd -> ctha, SIGHUP fw2 then fw1", quiet, lab.RoleFW1)
	key2 := filepath.Join(n2.dir, "sync.key")
	if out, err := l.Exec(lab.RoleFW2, cthaBin, "keygen", key2); err != nil {
		t.Fatalf("ctha keygen: %v\n%s", err, out)
	}
	key, err := os.ReadFile(key2)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n1.dir, "sync.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*node{n2, n1} {
		b, err := os.ReadFile(n.config)
		if err != nil {
			t.Fatal(err)
		}
		conf := strings.Replace(string(b), "  protocol = \"conntrackd\"\n", "", 1)
		if conf == string(b) {
			t.Fatalf("%s: no protocol line to remove", n.role)
		}
		if err := os.WriteFile(n.config, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := l.Exec(n.role, cthaBin, "check", "-c", n.config); err != nil {
			t.Fatalf("%s: ctha check: %v\n%s", n.role, err, out)
		}
	}
	for _, n := range []*node{n2, n1} {
		if err := n.proc.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitEntries(t, n, 3*time.Second, "reloaded to ctha's protocol", func(s control.SyncStatus) bool {
			return s.Protocol == "ctha" && s.KeyFingerprint != ""
		})
	}
	waitEntries(t, n2, 10*time.Second, "fw2 holds fw1's copy on ctha's protocol", func(s control.SyncStatus) bool {
		return s.PeerUp && s.BulkComplete && s.ExternalEntries >= rigFlows && s.PeerRole == "MASTER"
	})
	waitEntries(t, n1, 10*time.Second, "fw1 hears fw2 on ctha's protocol", func(s control.SyncStatus) bool {
		return s.PeerUp && s.PeerRole == "BACKUP"
	})
	if s1, s2 := mustSyncStatus(t, n1), mustSyncStatus(t, n2); s1.KeyFingerprint != s2.KeyFingerprint {
		t.Errorf("key fingerprints differ: fw1 %s, fw2 %s", s1.KeyFingerprint, s2.KeyFingerprint)
	}
	holdGroups := func(what string) {
		t.Helper()
		if g1, g2 := n1.states()["group:fw"], n2.states()["group:fw"]; g1 != "MASTER" || g2 != "BACKUP" {
			t.Fatalf("%s: fw1 %s, fw2 %s; want fw1 MASTER, fw2 BACKUP", what, g1, g2)
		}
	}
	for _, n := range []*node{n2, n1} {
		for line := range strings.Lines(n.proc.Log()) {
			if strings.Contains(line, "reload") {
				t.Logf("%s: %s", n.role, strings.TrimSpace(line))
			}
			if strings.Contains(line, `msg="reload applied"`) && !strings.Contains(line, "conntrack_sync: protocol, key; sync engine replaced") {
				t.Errorf("%s: the reload did not replace the engine for the protocol and the key: %s", n.role, line)
			}
		}
	}
	holdGroups(cur.name)
	endStep(300 * time.Millisecond)
	holdGroups(cur.name)

	// 6. A planned failover and back, on ctha's protocol.
	step("6a ctha failover on fw1: fw2 takes over", moved, lab.RoleFW2)
	if out, err := n1.ctl("failover"); err != nil {
		t.Fatalf("ctha failover: %v\n%s", err, out)
	}
	if _, err := waitVIPs(l, lab.RoleFW2, cur.at, 5*time.Second); err != nil {
		t.Fatalf("%s: %v\n%s", cur.name, err, n2.proc.Tail(30))
	}
	waitGroupState(t, n1, "BACKUP", 3*time.Second)
	waitEntries(t, n1, 5*time.Second, "fw1 holds fw2's copy", func(s control.SyncStatus) bool {
		return s.PeerUp && s.ExternalEntries >= rigFlows
	})
	endStep(time.Second)

	step("6b ctha failover --cancel on fw1: fw1 preempts back", moved, lab.RoleFW1)
	if out, err := n1.ctl("failover", "--cancel"); err != nil {
		t.Fatalf("ctha failover --cancel: %v\n%s", err, out)
	}
	if _, err := waitVIPs(l, lab.RoleFW1, cur.at, 5*time.Second); err != nil {
		t.Fatalf("%s: %v\n%s", cur.name, err, n1.proc.Tail(30))
	}
	waitGroupState(t, n2, "BACKUP", 3*time.Second)
	endStep(time.Second)

	// The flows' report, the VIP holders, the table.
	time.Sleep(200 * time.Millisecond) // an echo after the last step's end
	rep := flows.end(t)
	evs := map[string][]lab.AddrEvent{}
	for role, w := range watch {
		w.close()
		e, err := w.snapshot()
		if err != nil {
			t.Errorf("address events of %s: %v", role, err)
		}
		evs[role] = e
	}
	vipHolders(steps, watchFrom, initial, evs)
	migGaps(steps, rep)
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "%-68s %9s %12s %12s %10s %12s\n", "step", "survived", "INVALID 1/2", "longest gap", "VIPs added", "VIP on both")
	for _, s := range steps {
		gap := fmt.Sprintf("%.0f ms", s.longest)
		if s.longest == 0 {
			gap = fmt.Sprintf("< %v", migGapThreshold)
		}
		inv := fmt.Sprintf("%d/%d", s.invalid[lab.RoleFW1], s.invalid[lab.RoleFW2])
		fmt.Fprintf(&tbl, "%-68s %5d/%-3d %12s %12s %10d %12v\n", s.name, s.survived, rep.Flows, inv, gap, s.vipsAdded, s.dualHolder.Round(time.Microsecond))
	}
	t.Logf("figure: migration runbook, %d flows (gaps over %v counted), test %v:\n%s",
		rep.Flows, migGapThreshold, time.Since(began).Round(100*time.Millisecond), tbl.String())
	for _, s := range steps {
		if s.survived != rigFlows {
			t.Errorf("%s: %d of %d flows survived", s.name, s.survived, rigFlows)
		}
		// The VIPs' node must drop nothing: a packet there before its
		// state is a flow the replication failed. The node they left
		// may see, for the few milliseconds that one neighbour has taken
		// the new master's gratuitous ARP and the other not yet, one
		// direction of a flow only: the other side's packets then
		// acknowledge data it never saw, and its window tracking (no
		// be_liberal) drops them as INVALID. They are sent again, to the
		// new master, which has the state; those are reported, not
		// failed. Any other drop on it fails.
		for role, n := range s.invalid {
			if n == 0 {
				continue
			}
			tally, _ := l.Exec(role, "nft", "list", "table", "inet", "tally")
			if role == s.from {
				t.Logf("%s: %s, which the VIPs left, dropped %d packets as INVALID (the gratuitous ARP's moment; by interface and flags, the whole run):\n%s", s.name, role, n, tally)
				continue
			}
			t.Errorf("%s: %s dropped %d packets as INVALID, want none; by interface and flags, the whole run:\n%s", s.name, role, n, tally)
		}
		if s.vipsAdded != s.wantAdded {
			t.Errorf("%s: %d VIPs added, want %d", s.name, s.vipsAdded, s.wantAdded)
		}
		if s.dualHolder > dualLimit {
			t.Errorf("%s: a VIP was on both nodes for %v, over %v", s.name, s.dualHolder, dualLimit)
			for role, es := range evs {
				for _, e := range es {
					t.Logf("%s: %s %v added %v", role, e.At.Format("15:04:05.000000"), e.Addr, e.Added)
				}
			}
		}
		if lim := s.gapLimit; time.Duration(s.longest*float64(time.Millisecond)) > lim {
			t.Errorf("%s: longest gap %.0f ms, over %v", s.name, s.longest, lim)
		}
	}
	if rep.Flows != rigFlows || !rep.AllSurvived() {
		t.Errorf("%d of %d flows survived the whole migration (%d errored)", rep.Survived, rep.Flows, rep.Errored)
	}
}

// migGaps fills each step's survivors (flows without an error by the
// step's end and with an echo after it) and longest gap (of those that
// began from 200 ms before the step to the next).
func migGaps(steps []*migStep, rep flowgen.Report) {
	for i, s := range steps {
		next := time.Now()
		if i+1 < len(steps) {
			next = steps[i+1].at
		}
		for _, f := range rep.PerFlow {
			if (f.ErrorAt.IsZero() || f.ErrorAt.After(s.end)) && f.LastEcho.After(s.end) {
				s.survived++
			}
			for _, g := range f.Gaps {
				if !g.Start.Before(s.at.Add(-200*time.Millisecond)) && g.Start.Before(next.Add(-200*time.Millisecond)) {
					s.longest = max(s.longest, g.Ms)
				}
			}
		}
	}
}

// migGapThreshold: gaps over it are listed per flow (flowgen's default,
// 5 intervals, is 250 ms).
const migGapThreshold = 100 * time.Millisecond

// startMigFlows opens the live flows (startBatch with gaps listed from
// migGapThreshold on).
func startMigFlows(t *testing.T, l *lab.Lab) *flowBatch {
	t.Helper()
	dir := t.TempDir()
	b := &flowBatch{stop: filepath.Join(dir, "stop"), report: filepath.Join(dir, "report.json")}
	ready := filepath.Join(dir, "ready")
	b.proc = l.Start(t, lab.RoleClient, "flowgen-client", flowgenBin, "client",
		"-connect", lab.ServerAddr.Addr().String()+":5001", "-flows", fmt.Sprint(rigFlows), "-interval", "50ms",
		"-gap-threshold", migGapThreshold.String(), "-duration", "0", "-stop-file", b.stop, "-ready", ready, "-json", b.report)
	if err := lab.WaitFor(15*time.Second, 20*time.Millisecond, func() (bool, error) {
		_, err := os.Stat(ready)
		return err == nil, nil
	}); err != nil {
		t.Fatalf("flows not up: %v\n%s", err, b.proc.Log())
	}
	return b
}
