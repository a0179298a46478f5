package integration

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/ctha/ctha/integration/flowgen"
	"github.com/ctha/ctha/integration/lab"
)

// The chaos run (issue 13): seeded, randomized faults against the example
// pair (fw1 150, fw2 100, preempt, advert 1 s, direct cache) with live TCP
// flows through the VIPs throughout. One fault at a time, each from a
// settled pair and healed before the next, so that every invariant is
// that of a single fault with both nodes up:
//   - once the fault has settled (Master_Down_Interval + 2 s), exactly
//     one node holds each VIP, and again once it is healed;
//   - every live flow survives it;
//   - no packet of those flows is dropped as INVALID;
//   - the daemons' RSS and goroutines stay flat (over each daemon run).
//
// `make chaos` runs it for 10 minutes per seed at two random seeds
// (CHAOS_SEEDS=1,2 CHAOS_DURATION=2m replay or change that); `make
// test` runs it for 25 s at each of two fixed seeds. A failure names
// the seed and the command that replays it.

const (
	chaosAdvert     = time.Second
	chaosMasterDown = 3*chaosAdvert + 610*time.Millisecond // priority 100's skew
	chaosSettle     = chaosMasterDown + 2*time.Second
	chaosBackground = 5000
)

// chaosTraceRuleset marks the forwarded packets conntrack finds INVALID
// for `nft monitor trace`, before the lab's ruleset drops them.
const chaosTraceRuleset = `table inet chaostrace {
	chain marks {
		type filter hook forward priority -10;
		ct state invalid meta nftrace set 1
	}
}
`

// chaosFault is one kind of fault: apply does it and heals it.
type chaosFault struct {
	name  string
	apply func(c *chaosRun, target string)
}

var chaosFaults = []chaosFault{
	{"sigkill, restarted 1 s later", func(c *chaosRun, target string) {
		c.r.nodes[target].proc.Kill()
		time.Sleep(time.Second) // systemd's RestartSec
		c.restart(target)
		c.checkOneHolder("after the restart")
	}},
	{"restarted with an empty table", func(c *chaosRun, target string) {
		c.r.nodes[target].proc.Stop(10 * time.Second)
		if out, err := c.r.l.Exec(target, "conntrack", "-F"); err != nil {
			c.t.Errorf("seed %d: conntrack -F in %s: %v %s", c.seed, target, err, out)
		}
		c.restart(target)
		c.checkOneHolder("after the restart")
	}},
	{"sigterm, started again", func(c *chaosRun, target string) {
		c.r.nodes[target].proc.Stop(10 * time.Second)
		c.checkOneHolder("after the stop")
		c.restart(target)
	}},
	{"crash with the machine, rebooted with an empty table", func(c *chaosRun, target string) {
		c.r.nodes[target].proc.Kill()
		c.r.l.SetLink(target, "lan", false)
		c.r.l.SetLink(target, "wan", false)
		c.r.l.SetLink(target, "sync", false)
		c.checkOneHolder("after the crash")
		if out, err := c.r.l.Exec(target, "conntrack", "-F"); err != nil {
			c.t.Errorf("seed %d: conntrack -F in %s: %v %s", c.seed, target, err, out)
		}
		// A reboot clears the addresses: the VIPs the dead daemon left
		// are gone when the links come back.
		c.r.l.Exec(target, "ip", "addr", "del", lab.LANVIP.String(), "dev", "lan")
		c.r.l.Exec(target, "ip", "addr", "del", lab.WANVIP.String(), "dev", "wan")
		for _, iface := range []string{"lan", "wan", "sync"} {
			c.r.l.SetLink(target, iface, true)
		}
		c.restart(target)
	}},
	{"lan down and up", func(c *chaosRun, target string) { c.linkDownUp(target, "lan") }},
	{"wan down and up", func(c *chaosRun, target string) { c.linkDownUp(target, "wan") }},
	{"sync down and up", func(c *chaosRun, target string) { c.linkDownUp(target, "sync") }},
	{"lan recreated", func(c *chaosRun, target string) { c.recreate(target, "lan") }},
	{"sync recreated", func(c *chaosRun, target string) { c.recreate(target, "sync") }},
	{"sync loss 20%", func(c *chaosRun, target string) {
		for _, fw := range []string{lab.RoleFW1, lab.RoleFW2} {
			c.must(c.r.l.Nft(fw, strings.ReplaceAll(lossRuleset, "< 10", "< 20")))
		}
		c.checkOneHolder("with the loss")
		for _, fw := range []string{lab.RoleFW1, lab.RoleFW2} {
			c.exec(fw, "nft", "delete", "table", "inet", "ctloss")
		}
	}},
	{"sync rate limited to 1 Mbit/s", func(c *chaosRun, target string) {
		c.exec(target, "tc", "qdisc", "add", "dev", "sync", "root", "tbf", "rate", "1mbit", "burst", "32kbit", "latency", "400ms")
		c.checkOneHolder("with the rate limit")
		c.exec(target, "tc", "qdisc", "del", "dev", "sync", "root")
	}},
	{"valid reload: the backup above the master, then back", func(c *chaosRun, _ string) {
		c.reload(lab.RoleFW2, strings.ReplaceAll(c.r.conf[lab.RoleFW2], "priority        = 100", "priority        = 200"))
		c.waitMaster(lab.RoleFW2, 30*time.Second)
		c.checkOneHolder("after the reload")
		c.reload(lab.RoleFW2, c.r.conf[lab.RoleFW2])
	}},
	{"invalid reload", func(c *chaosRun, target string) {
		c.reload(target, c.r.conf[target]+"\nvrrp_instance {{{ garbage\n")
		c.checkOneHolder("after the invalid reload")
		if c.r.nodes[target].proc.Exited() {
			c.t.Errorf("seed %d: an invalid reload stopped %s", c.seed, target)
		}
		c.reload(target, c.r.conf[target])
	}},
	{"ctha failover, then --cancel", func(c *chaosRun, _ string) {
		if out, err := c.r.nodes[lab.RoleFW1].ctl("failover"); err != nil {
			c.t.Errorf("seed %d: ctha failover: %v %s", c.seed, err, out)
		}
		c.waitMaster(lab.RoleFW2, 10*time.Second)
		c.checkOneHolder("after the failover")
		if out, err := c.r.nodes[lab.RoleFW1].ctl("failover", "--cancel"); err != nil {
			c.t.Errorf("seed %d: ctha failover --cancel: %v %s", c.seed, err, out)
		}
	}},
	{"the master's VIPs deleted", func(c *chaosRun, _ string) {
		c.exec(lab.RoleFW1, "ip", "addr", "del", lab.LANVIP.String(), "dev", "lan")
		c.exec(lab.RoleFW1, "ip", "addr", "del", lab.WANVIP.String(), "dev", "wan")
		c.checkOneHolder("after the deletion")
	}},
	{"CPU hog (4 spinning processes, 10 s)", func(c *chaosRun, target string) {
		var hogs []*lab.Proc
		for i := range 4 {
			hogs = append(hogs, c.r.l.Start(c.t, target, fmt.Sprintf("hog%d", i), "sh", "-c", "while :; do :; done"))
		}
		time.Sleep(10 * time.Second)
		for _, h := range hogs {
			h.Kill()
		}
		c.checkOneHolder("under the CPU hog")
	}},
}

// chaosRow is one fault's line of the table.
type chaosRow struct {
	step            int
	fault, target   string
	took            time.Duration // from the fault to the pair settled again
	flows, survived int
	gapMs           float64
	invalid         uint64
}

// memSample is a daemon's memory and goroutines at one time.
type memSample struct {
	pid        int
	rss        int64 // bytes
	goroutines int
}

type chaosRun struct {
	traces  map[string]*lab.Proc // nft monitor trace, by role
	t       *testing.T
	r       *failRig
	seed    uint64
	rng     *rand.Rand
	rows    []chaosRow
	samples map[string][]memSample
}

// TestChaos: see the package's chaos run above.
func TestChaos(t *testing.T) {
	lab.RequireNetns(t)
	seeds, per := []uint64{1, 2}, 25*time.Second
	if s := os.Getenv("CTHA_CHAOS_SEEDS"); s != "" {
		seeds = nil
		for _, f := range strings.Split(s, ",") {
			if f == "random" {
				seeds = append(seeds, rand.Uint64()%1_000_000)
				continue
			}
			n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
			if err != nil {
				t.Fatalf("CTHA_CHAOS_SEEDS: %v", err)
			}
			seeds = append(seeds, n)
		}
	}
	if d := os.Getenv("CTHA_CHAOS_DURATION"); d != "" {
		var err error
		if per, err = time.ParseDuration(d); err != nil {
			t.Fatalf("CTHA_CHAOS_DURATION: %v", err)
		}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			c := &chaosRun{t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, seed)), samples: map[string][]memSample{},
				traces: map[string]*lab.Proc{}}
			defer func() {
				c.report()
				if t.Failed() {
					t.Logf("replay: make chaos CHAOS_SEEDS=%d CHAOS_DURATION=%v", seed, per)
				}
			}()
			c.r = newFailRig(t, "direct", true, chaosBackground)
			c.r.l.Start(t, lab.RoleServer, "flowgen-server", flowgenBin, "server", "-listen", lab.ServerAddr.Addr().String()+":5001")
			// The packets dropped as INVALID are traced, so that a
			// failure shows them.
			for _, fw := range []string{lab.RoleFW1, lab.RoleFW2} {
				c.must(c.r.l.Nft(fw, chaosTraceRuleset))
				c.traces[fw] = c.r.l.Start(t, fw, "nft-trace-"+fw, "nft", "monitor", "trace")
			}
			c.waitSettled(30 * time.Second)
			c.sample()
			faults := chaosFaults
			if only := os.Getenv("CTHA_CHAOS_FAULTS"); only != "" {
				faults = slices.DeleteFunc(slices.Clone(faults), func(f chaosFault) bool { return !strings.Contains(f.name, only) })
				if len(faults) == 0 {
					t.Fatalf("CTHA_CHAOS_FAULTS=%q matches no fault", only)
				}
			}
			for end, step := time.Now().Add(per), 1; time.Now().Before(end) && !t.Failed(); step++ {
				f := faults[c.rng.IntN(len(faults))]
				target := []string{lab.RoleFW1, lab.RoleFW2}[c.rng.IntN(2)]
				c.step(step, f, target)
				c.sample()
			}
			c.checkFlat()
		})
	}
}

// step runs one fault with live flows and checks what it must not break.
func (c *chaosRun) step(n int, f chaosFault, target string) {
	c.t.Helper()
	dir := c.t.TempDir()
	ready, stop, report := filepath.Join(dir, "ready"), filepath.Join(dir, "stop"), filepath.Join(dir, "report.json")
	client := c.r.l.Start(c.t, lab.RoleClient, fmt.Sprintf("flowgen-%d", n), flowgenBin, "client",
		"-connect", lab.ServerAddr.Addr().String()+":5001", "-flows", fmt.Sprint(rigFlows), "-interval", "50ms",
		"-duration", "0", "-stop-file", stop, "-ready", ready, "-json", report)
	if err := lab.WaitFor(15*time.Second, 20*time.Millisecond, func() (bool, error) {
		_, err := os.Stat(ready)
		return err == nil, nil
	}); err != nil {
		c.t.Fatalf("seed %d step %d: flows not up: %v\n%s", c.seed, n, err, client.Log())
	}
	c.r.waitPeerHolds(lab.RoleFW2, chaosBackground+rigFlows, 15*time.Second)
	time.Sleep(300 * time.Millisecond)
	inv1, inv2 := c.invalid()

	start := time.Now()
	c.t.Logf("seed %d step %d: %s on %s", c.seed, n, f.name, target)
	f.apply(c, target)
	c.waitSettled(90 * time.Second)
	took := time.Since(start)
	c.checkOneHolder("once healed")

	// The flows' retransmissions span up to 6.6 s after a loss.
	time.Sleep(7 * time.Second)
	if err := os.WriteFile(stop, nil, 0o644); err != nil {
		c.t.Fatal(err)
	}
	if err := client.Wait(); err != nil {
		c.t.Errorf("seed %d step %d: flowgen client: %v\n%s", c.seed, n, err, client.Log())
	}
	var rep flowgen.Report
	if b, err := os.ReadFile(report); err != nil {
		c.t.Fatalf("seed %d step %d: %v", c.seed, n, err)
	} else if err := json.Unmarshal(b, &rep); err != nil {
		c.t.Fatalf("seed %d step %d: report: %v", c.seed, n, err)
	}
	after1, after2 := c.invalid()
	row := chaosRow{step: n, fault: f.name, target: target, took: took, flows: rep.Flows,
		survived: rep.Survived, gapMs: rep.LongestGapMs, invalid: after1 - inv1 + after2 - inv2}
	c.rows = append(c.rows, row)
	if rep.Flows != rigFlows || rep.Survived != rep.Flows {
		c.t.Errorf("seed %d step %d (%s on %s): %d of %d flows survived", c.seed, n, f.name, target, rep.Survived, rep.Flows)
	}
	if row.invalid != 0 {
		c.t.Errorf("seed %d step %d (%s on %s): %d packets of live flows dropped as INVALID (fw1 %d, fw2 %d)\nfw1:\n%s\nfw2:\n%s\ntraced on fw1:\n%s\ntraced on fw2:\n%s",
			c.seed, n, f.name, target, row.invalid, after1-inv1, after2-inv2,
			c.r.nodes[lab.RoleFW1].proc.Tail(40), c.r.nodes[lab.RoleFW2].proc.Tail(40),
			c.traces[lab.RoleFW1].Tail(60), c.traces[lab.RoleFW2].Tail(60))
	}
}

// waitSettled waits for the pair's resting state: fw1 master with both
// VIPs, fw2 backup without them, each hearing the other on the sync link
// and fw2 with fw1's complete copy.
func (c *chaosRun) waitSettled(timeout time.Duration) {
	c.t.Helper()
	var last string
	err := lab.WaitFor(timeout, 100*time.Millisecond, func() (bool, error) {
		s1, err1 := c.r.nodes[lab.RoleFW1].status()
		s2, err2 := c.r.nodes[lab.RoleFW2].status()
		if err1 != nil || err2 != nil {
			last = fmt.Sprintf("status: %v %v", err1, err2)
			return false, nil
		}
		switch {
		case len(s1.Groups) != 1 || s1.Groups[0].State != "MASTER" || s1.Groups[0].Demoted != "":
			last = fmt.Sprintf("fw1 %+v", s1.Groups)
		case len(s2.Groups) != 1 || s2.Groups[0].State != "BACKUP":
			last = fmt.Sprintf("fw2 %+v", s2.Groups)
		case s1.Sync == nil || s2.Sync == nil || !s1.Sync.PeerUp || !s2.Sync.PeerUp || !s2.Sync.BulkComplete:
			last = fmt.Sprintf("sync fw1 %+v fw2 %+v", s1.Sync, s2.Sync)
		default:
			h := c.holders()
			last = fmt.Sprintf("holders %v", h)
			return h["lan"] == lab.RoleFW1 && h["wan"] == lab.RoleFW1, nil
		}
		return false, nil
	})
	if err != nil {
		c.t.Fatalf("seed %d: the pair did not settle within %v: %s\nfw1:\n%s\nfw2:\n%s", c.seed, timeout, last,
			c.r.nodes[lab.RoleFW1].proc.Tail(20), c.r.nodes[lab.RoleFW2].proc.Tail(20))
	}
}

// holders returns, per VIP interface, who holds it: a role, "" for
// nobody, "both". A VIP on an interface that is down is held by nobody
// (a machine that crashed keeps its addresses, unreachable).
func (c *chaosRun) holders() map[string]string {
	out := map[string]string{}
	for iface, vip := range map[string]netip.Prefix{"lan": lab.LANVIP, "wan": lab.WANVIP} {
		var who []string
		for _, fw := range []string{lab.RoleFW1, lab.RoleFW2} {
			// "lan  UP  10.10.1.2/24 10.10.1.1/24"
			line, err := c.r.l.Exec(fw, "ip", "-br", "-4", "addr", "show", "dev", iface)
			f := strings.Fields(line)
			if err == nil && len(f) > 2 && f[1] == "UP" && slices.Contains(f[2:], vip.String()) {
				who = append(who, fw)
			}
		}
		switch len(who) {
		case 0:
			out[iface] = ""
		case 1:
			out[iface] = who[0]
		default:
			out[iface] = "both"
		}
	}
	return out
}

// checkOneHolder asserts that, once the fault has had
// Master_Down_Interval + 2 s to settle, exactly one node holds each VIP,
// over three looks 100 ms apart.
func (c *chaosRun) checkOneHolder(when string) {
	c.t.Helper()
	time.Sleep(chaosSettle)
	for range 3 {
		h := c.holders()
		if h["lan"] == "" || h["lan"] == "both" || h["wan"] == "" || h["wan"] == "both" {
			c.t.Errorf("seed %d: %s: VIP holders %v, want exactly one each\nfw1:\n%s\nfw2:\n%s", c.seed, when, h,
				c.r.nodes[lab.RoleFW1].proc.Tail(10), c.r.nodes[lab.RoleFW2].proc.Tail(10))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *chaosRun) restart(role string) {
	c.t.Helper()
	c.r.start(role)
}

func (c *chaosRun) linkDownUp(role, iface string) {
	c.t.Helper()
	c.must(c.r.l.SetLink(role, iface, false))
	c.checkOneHolder(iface + " down")
	c.must(c.r.l.SetLink(role, iface, true))
}

func (c *chaosRun) recreate(role, iface string) {
	c.t.Helper()
	c.must(c.r.l.RecreateLink(role, iface, time.Second))
	c.checkOneHolder(iface + " recreated")
}

// reload writes conf as role's configuration and sends SIGHUP.
func (c *chaosRun) reload(role, conf string) {
	c.t.Helper()
	n := c.r.nodes[role]
	c.must(os.WriteFile(n.config, []byte(conf), 0o644))
	c.must(n.proc.Signal(syscall.SIGHUP))
}

func (c *chaosRun) waitMaster(role string, timeout time.Duration) {
	c.t.Helper()
	if err := lab.WaitFor(timeout, 50*time.Millisecond, func() (bool, error) {
		st, err := c.r.nodes[role].status()
		return err == nil && len(st.Groups) == 1 && st.Groups[0].State == "MASTER", nil
	}); err != nil {
		c.t.Errorf("seed %d: %s not master within %v", c.seed, role, timeout)
	}
}

func (c *chaosRun) invalid() (uint64, uint64) {
	c.t.Helper()
	a, err1 := c.r.l.InvalidDrops(lab.RoleFW1)
	b, err2 := c.r.l.InvalidDrops(lab.RoleFW2)
	c.must(err1)
	c.must(err2)
	return a, b
}

func (c *chaosRun) exec(role string, argv ...string) {
	c.t.Helper()
	if out, err := c.r.l.Exec(role, argv...); err != nil {
		c.t.Errorf("seed %d: %s in %s: %v %s", c.seed, strings.Join(argv, " "), role, err, out)
	}
}

func (c *chaosRun) must(err error) {
	c.t.Helper()
	if err != nil {
		c.t.Fatalf("seed %d: %v", c.seed, err)
	}
}

var (
	goroutinesRe = regexp.MustCompile(`(?m)^go_goroutines (\d+)`)
	rssRe        = regexp.MustCompile(`(?m)^VmRSS:\s+(\d+) kB`)
)

// sample records each daemon's RSS and goroutines.
func (c *chaosRun) sample() {
	for _, role := range []string{lab.RoleFW1, lab.RoleFW2} {
		n := c.r.nodes[role]
		s := memSample{pid: n.proc.Pid()}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid)); err == nil {
			if m := rssRe.FindSubmatch(b); m != nil {
				kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
				s.rss = kb << 10
			}
		}
		if out, err := c.r.l.Exec(role, "curl", "-sf", "http://127.0.0.1:9477/metrics"); err == nil {
			if m := goroutinesRe.FindStringSubmatch(out); m != nil {
				s.goroutines, _ = strconv.Atoi(m[1])
			}
		}
		c.samples[role] = append(c.samples[role], s)
	}
}

// checkFlat: over each daemon run sampled at least three times (a run
// ends with a restart), the goroutines may not grow by more than 10 and
// the RSS by more than 16 MiB from its second sample (the first is taken
// before its caches filled).
func (c *chaosRun) checkFlat() {
	for role, ss := range c.samples {
		for i := 0; i < len(ss); {
			j := i
			for j < len(ss) && ss[j].pid == ss[i].pid {
				j++
			}
			run := ss[i:j]
			if len(run) >= 3 {
				base, last := run[1], run[len(run)-1]
				if d := last.goroutines - base.goroutines; d > 10 {
					c.t.Errorf("seed %d: %s (pid %d): goroutines %d -> %d over %d faults", c.seed, role, base.pid, base.goroutines, last.goroutines, len(run)-2)
				}
				if d := last.rss - base.rss; d > 16<<20 {
					c.t.Errorf("seed %d: %s (pid %d): RSS %d -> %d MiB over %d faults", c.seed, role, base.pid, base.rss>>20, last.rss>>20, len(run)-2)
				}
			}
			i = j
		}
	}
}

// report prints the table of faults and the daemons' samples.
func (c *chaosRun) report() {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "seed %d\nSTEP\tFAULT\tON\tSETTLED IN\tFLOWS\tLONGEST GAP\tINVALID\n", c.seed)
	for _, r := range c.rows {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%.1f s\t%d/%d\t%.0f ms\t%d\n", r.step, r.fault, r.target, r.took.Seconds(), r.survived, r.flows, r.gapMs, r.invalid)
	}
	fmt.Fprintln(tw, "\nNODE\tPID\tRSS\tGOROUTINES")
	for _, role := range []string{lab.RoleFW1, lab.RoleFW2} {
		for _, s := range c.samples[role] {
			fmt.Fprintf(tw, "%s\t%d\t%.1f MiB\t%d\n", role, s.pid, float64(s.rss)/(1<<20), s.goroutines)
		}
	}
	tw.Flush()
	c.t.Log("chaos table:\n" + b.String())
}
