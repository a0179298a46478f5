package integration

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/lab"
)

// extrasConfig is one node of TestVRRPExtras: a lone instance on lan with
// a VIP on wan, excluded VIPs of both families, IPv4 and IPv6 routes and
// rules, a track file and (fw1 only) a tracked process.
func extrasConfig(node string, prio int, weightFile, process string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node_name = %q\nlog {\n  level = \"debug\"\n}\n", node)
	fmt.Fprintf(&b, `vrrp_instance "lan" {
  interface       = "lan"
  vrid            = 51
  priority        = %d
  advert_interval = "100ms"
  virtual_ips     = ["10.10.1.1/24", "10.10.2.1/24 dev wan"]
  excluded_virtual_ips = ["203.0.113.5/32 dev wan", "fd00:10:1::99/64"]
  virtual_routes  = [{ to = "198.51.100.0/24", via = "10.10.2.100" },
                     { to = "2001:db8:5::/48", dev = "wan", table = 100 },
                     { to = "192.0.2.0/24", dev = "wan" },
                     { to = "0.0.0.0/0", dev = "wan", metric = 50 }]
  virtual_rules   = [{ from = "10.10.1.0/24", table = 100, priority = 1000 },
                     { to = "2001:db8:7::/48", table = 100, priority = 1001 }]
  track_file %q { weight = 1 }
`, prio, weightFile)
	if process != "" {
		fmt.Fprintf(&b, "  track_process %q { weight = -60 }\n", process)
	}
	b.WriteString("  garp {\n    repeat = 1\n    delay = \"0s\"\n  }\n}\n")
	return b.String()
}

// extrasHeld lists what a master of TestVRRPExtras holds that role lacks
// (want true) or what a non-master holds (want false).
func extrasHeld(l *lab.Lab, role string, want bool) []string {
	checks := []struct {
		what  string
		argv  []string
		match string
	}{
		{"VIP 10.10.1.1 on lan", []string{"ip", "-4", "addr", "show", "dev", "lan"}, "10.10.1.1/24"},
		{"VIP 10.10.2.1 on wan", []string{"ip", "-4", "addr", "show", "dev", "wan"}, "10.10.2.1/24"},
		{"excluded VIP 203.0.113.5 on wan", []string{"ip", "-4", "addr", "show", "dev", "wan"}, "203.0.113.5/32"},
		{"excluded VIP fd00:10:1::99 on lan", []string{"ip", "-6", "addr", "show", "dev", "lan"}, "fd00:10:1::99/64"},
		{"route 198.51.100.0/24", []string{"ip", "-4", "route", "show", "proto", "167", "198.51.100.0/24"}, "via 10.10.2.100"},
		{"default route metric 50", []string{"ip", "-4", "route", "show", "proto", "167", "default"}, "dev wan metric 50"},
		{"route 2001:db8:5::/48 table 100", []string{"ip", "-6", "route", "show", "table", "100", "proto", "167", "2001:db8:5::/48"}, "dev wan"},
		{"rule 1000", []string{"ip", "-4", "rule", "show"}, "1000:\tfrom 10.10.1.0/24 lookup 100 proto 167"},
		{"rule 1001", []string{"ip", "-6", "rule", "show"}, "1001:\tfrom all to 2001:db8:7::/48 lookup 100 proto 167"},
	}
	var wrong []string
	for _, c := range checks {
		out, err := l.Exec(role, c.argv...)
		if err != nil && want {
			wrong = append(wrong, fmt.Sprintf("%s: %v", c.what, err))
			continue
		}
		// Without want, an error is a table that does not exist: absent.
		if strings.Contains(out, c.match) != want {
			wrong = append(wrong, c.what)
		}
	}
	return wrong
}

// adminObjects are routes and a rule of fw2's administrator next to
// TestVRRPExtras's virtual ones: the same prefixes with another metric
// (a default route via a gateway among them), a rule with the same
// selectors and a fwmark besides, and (192.0.2.0/24) a route exactly
// where a virtual route goes. ctha must never touch them.
var adminObjects = []struct{ add, show []string }{
	{[]string{"ip", "route", "add", "198.51.100.0/24", "via", "10.10.2.100", "metric", "100"},
		[]string{"ip", "-4", "route", "show", "198.51.100.0/24", "metric", "100"}},
	{[]string{"ip", "-6", "route", "add", "2001:db8:5::/48", "dev", "wan", "table", "100", "metric", "2048"},
		[]string{"ip", "-6", "route", "show", "table", "100", "2001:db8:5::/48", "metric", "2048"}},
	{[]string{"ip", "route", "add", "default", "via", "10.10.2.100", "dev", "wan", "metric", "117"},
		[]string{"ip", "-4", "route", "show", "default", "metric", "117"}},
	{[]string{"ip", "route", "add", "192.0.2.0/24", "via", "10.10.2.254"},
		[]string{"ip", "-4", "route", "show", "192.0.2.0/24", "via", "10.10.2.254"}},
	{[]string{"ip", "rule", "add", "from", "10.10.1.0/24", "fwmark", "1", "table", "100", "priority", "1000"},
		[]string{"ip", "-4", "rule", "show", "fwmark", "1"}},
}

// checkAdmin fails unless role holds all of adminObjects.
func checkAdmin(t *testing.T, l *lab.Lab, role, when string) {
	t.Helper()
	for _, o := range adminObjects {
		if out, err := l.Exec(role, o.show...); err != nil || strings.TrimSpace(out) == "" {
			t.Errorf("%s: the administrator's %q is gone (%v)", when, strings.Join(o.add[1:], " "), err)
		}
	}
}

// waitExtras waits until role holds everything (want) or nothing.
func waitExtras(t *testing.T, l *lab.Lab, role string, want bool, timeout time.Duration, n *node) {
	t.Helper()
	var wrong []string
	err := lab.WaitFor(timeout, 20*time.Millisecond, func() (bool, error) {
		wrong = extrasHeld(l, role, want)
		return len(wrong) == 0, nil
	})
	if err != nil {
		verb := "lacks"
		if !want {
			verb = "still holds"
		}
		t.Fatalf("%s %s after %v: %v\n%s", role, verb, timeout, wrong, n.proc.Tail(30))
	}
}

// effective returns the instance's effective priority.
func effective(t *testing.T, n *node) int {
	t.Helper()
	st, err := n.status()
	if err != nil || len(st.Instances) == 0 {
		t.Fatalf("%s: status: %v", n.role, err)
	}
	return int(st.Instances[0].EffectivePriority)
}

func waitEffective(t *testing.T, n *node, want int, timeout time.Duration) {
	t.Helper()
	err := lab.WaitFor(timeout, 20*time.Millisecond, func() (bool, error) {
		st, err := n.status()
		return err == nil && len(st.Instances) > 0 && int(st.Instances[0].EffectivePriority) == want, nil
	})
	if err != nil {
		t.Fatalf("%s: effective priority %d, want %d within %v\n%s", n.role, effective(t, n), want, timeout, n.proc.Tail(20))
	}
}

// TestVRRPExtras: keepalived's everyday extras in one pair run. VIPs on
// another interface and excluded ones, IPv4 and IPv6 routes and rules
// follow the master; the adverts list the VIPs but not the excluded
// ones; what is deleted under the master (and the route the kernel drops
// with its link) comes back; a track file and a tracked process move the
// effective priority, and the master with it. ctha's routes and rules
// carry protocol 167, and the backup's administrator's routes and rule
// (adminObjects) survive its start, its checks and the failovers; where
// one holds a virtual route's place, fw2 as master reports the conflict
// and leaves it.
func TestVRRPExtras(t *testing.T) {
	lab.RequireNetns(t)
	lab.RequireCommands(t, "tcpdump")
	start := time.Now()
	l := lab.New(t, lab.Options{NoIPv6: true})
	dir := t.TempDir()
	w1, w2 := filepath.Join(dir, "weight-fw1"), filepath.Join(dir, "weight-fw2")

	// A process of a name nobody else has: /proc is the host's.
	var rnd [4]byte
	rand.Read(rnd[:])
	name := "cthap" + hex.EncodeToString(rnd[:])
	bin := filepath.Join(dir, name)
	sleep, err := os.ReadFile("/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, sleep, 0o755); err != nil {
		t.Fatal(err)
	}
	proc := l.Start(t, lab.RoleFW1, name, bin, "120")

	fw1 := startNode(t, l, lab.RoleFW1, extrasConfig("fw1", 150, w1, name))
	waitState(t, fw1, "lan", "MASTER", 3*time.Second)
	// fw2's administrator's routes and rule: ctha's start-up (removing
	// what an earlier run left), its checks as a backup, its failovers
	// must leave them; the rule, added once ctha runs, wakes a check.
	for _, o := range adminObjects[:4] {
		l.MustExec(t, lab.RoleFW2, o.add...)
	}
	fw2 := startNode(t, l, lab.RoleFW2, extrasConfig("fw2", 100, w2, ""))
	waitState(t, fw2, "lan", "BACKUP", 3*time.Second)
	l.MustExec(t, lab.RoleFW2, adminObjects[4].add...)
	waitExtras(t, l, lab.RoleFW1, true, 2*time.Second, fw1)
	waitExtras(t, l, lab.RoleFW2, false, 2*time.Second, fw2)
	if out, err := l.Exec(lab.RoleFW1, "ip", "route", "show", "192.0.2.0/24", "proto", "167"); err != nil || !strings.Contains(out, "dev wan") {
		t.Errorf("fw1 lacks its virtual route 192.0.2.0/24 dev wan: %q %v", out, err)
	}
	time.Sleep(200 * time.Millisecond) // the check the rule woke
	checkAdmin(t, l, lab.RoleFW2, "a backup's start and check")
	if got := effective(t, fw1); got != 150 {
		t.Fatalf("fw1: effective priority %d with its process running and no weight file, want 150", got)
	}

	// The adverts list the VIPs, on lan and on wan, never the excluded ones.
	out, err := l.ExecTimeout(5*time.Second, lab.RoleFW2, "tcpdump", "-i", "lan", "-n", "-v", "-c", "2", "-l",
		"ip proto 112 and src "+lab.FW1LAN.Addr().String())
	if err != nil {
		t.Fatalf("capturing fw1's adverts: %v\n%s", err, out)
	}
	if !strings.Contains(out, "10.10.1.1,10.10.2.1") || strings.Contains(out, "203.0.113.5") {
		t.Errorf("fw1's advert should list 10.10.1.1 and 10.10.2.1 and not the excluded 203.0.113.5:\n%s", out)
	}
	t.Logf("fw1's adverts, as fw2 captured them:\n%s", strings.TrimSpace(out))

	// Deleted under the master: restored. A link that goes down drops its
	// routes; they come back with it.
	for _, argv := range [][]string{
		{"ip", "route", "del", "198.51.100.0/24"},
		{"ip", "-6", "route", "del", "2001:db8:5::/48", "table", "100"},
		{"ip", "rule", "del", "priority", "1000"},
		{"ip", "-6", "rule", "del", "priority", "1001"},
		{"ip", "addr", "del", "10.10.2.1/24", "dev", "wan"},
		{"ip", "addr", "del", "203.0.113.5/32", "dev", "wan"},
		{"ip", "addr", "del", "fd00:10:1::99/64", "dev", "lan"},
	} {
		l.MustExec(t, lab.RoleFW1, argv...)
	}
	waitExtras(t, l, lab.RoleFW1, true, 2*time.Second, fw1)
	if err := l.SetLink(lab.RoleFW1, "wan", false); err != nil {
		t.Fatal(err)
	}
	if wrong := extrasHeld(l, lab.RoleFW1, true); len(wrong) == 0 {
		t.Log("the kernel kept the routes with wan down")
	}
	if err := l.SetLink(lab.RoleFW1, "wan", true); err != nil {
		t.Fatal(err)
	}
	waitExtras(t, l, lab.RoleFW1, true, 3*time.Second, fw1)
	restored := time.Now()
	for _, msg := range []string{"virtual IPs removed under the master by someone else: restored",
		"routes or rules removed under the master: restored"} {
		if !strings.Contains(fw1.proc.Log(), msg) {
			t.Errorf("fw1 did not log %q\n%s", msg, fw1.proc.Tail(30))
		}
	}

	// track_file: fw1's file says -60: 150-60 = 90 < 100, fw2 takes over
	// and everything moves.
	if err := os.WriteFile(w1, []byte("-60\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitEffective(t, fw1, 90, 2*time.Second)
	waitState(t, fw2, "lan", "MASTER", 3*time.Second)
	waitState(t, fw1, "lan", "BACKUP", 3*time.Second)
	waitExtras(t, l, lab.RoleFW2, true, 2*time.Second, fw2)
	waitExtras(t, l, lab.RoleFW1, false, 2*time.Second, fw1)
	checkAdmin(t, l, lab.RoleFW2, "fw2 master")
	// Where the administrator's route holds 192.0.2.0/24, fw2 adds none
	// and says so.
	if err := lab.WaitFor(time.Second, 20*time.Millisecond, func() (bool, error) {
		return strings.Contains(fw2.proc.Log(), "another route (not ctha's) holds the same table, destination and metric"), nil
	}); err != nil {
		t.Errorf("fw2 did not report the conflict on 192.0.2.0/24\n%s", fw2.proc.Tail(20))
	}
	if out, _ := l.Exec(lab.RoleFW2, "ip", "route", "show", "192.0.2.0/24", "proto", "167"); strings.TrimSpace(out) != "" {
		t.Errorf("fw2 holds a route of ctha's next to the administrator's 192.0.2.0/24: %q", out)
	}

	// Back to 0: fw1 preempts.
	if err := os.WriteFile(w1, []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitEffective(t, fw1, 150, 2*time.Second)
	waitState(t, fw1, "lan", "MASTER", 3*time.Second)
	waitExtras(t, l, lab.RoleFW1, true, 2*time.Second, fw1)
	waitExtras(t, l, lab.RoleFW2, false, 2*time.Second, fw2)
	checkAdmin(t, l, lab.RoleFW2, "fw2 back to backup")

	// track_process: the process ends, weight -60: fw2 takes over.
	proc.Kill()
	waitEffective(t, fw1, 90, 3*time.Second)
	waitState(t, fw2, "lan", "MASTER", 3*time.Second)
	waitExtras(t, l, lab.RoleFW2, true, 2*time.Second, fw2)
	waitExtras(t, l, lab.RoleFW1, false, 2*time.Second, fw1)
	checkAdmin(t, l, lab.RoleFW2, "the end")
	t.Logf("whole run %v (of which restoring what was deleted and the wan link's routes, until %v)",
		time.Since(start).Round(time.Millisecond), restored.Sub(start).Round(time.Millisecond))
}
