package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/integration/bench"
	"github.com/ctha/ctha/integration/flowgen"
	"github.com/ctha/ctha/integration/lab"
)

// afterKill is how long the flows run after the kill before the INVALID
// counter is read and they stop: past the 6.2-6.6 s retransmission step
// (spec/bench.md) with room for the 2 s alive window.
const afterKill = 10 * time.Second

// failoverCase is one cell of the failover grid.
type failoverCase struct {
	name       string
	advert     time.Duration
	phase      time.Duration // kill this long after one of the master's adverts
	background int           // ESTABLISHED entries in the master's table besides the flows
}

// haRound is what one kill of the master gave.
type haRound struct {
	report     flowgen.Report
	invalid    uint64
	killToVIPs time.Duration
	vipsToDone time.Duration // baseline: VIPs -> primary-backup.sh done (commit included)
	settings   []string      // the stack's settings as observed (haNode.settings)
}

// liveFlows are the 200 flowgen flows from the client to the server
// through the VIPs.
type liveFlows struct {
	client       *lab.Proc
	stop, report string
}

func startFlows(tb testing.TB, l *lab.Lab) *liveFlows {
	tb.Helper()
	dir := tb.TempDir()
	f := &liveFlows{stop: filepath.Join(dir, "stop"), report: filepath.Join(dir, "report.json")}
	ready := filepath.Join(dir, "ready")
	srv := l.Start(tb, lab.RoleServer, "flowgen-server", flowgenBin, "server", "-listen", lab.ServerAddr.Addr().String()+":5001", "-ready", filepath.Join(dir, "listening"))
	if err := lab.WaitFor(5*time.Second, 10*time.Millisecond, func() (bool, error) {
		_, err := os.Stat(filepath.Join(dir, "listening"))
		return err == nil, nil
	}); err != nil {
		tb.Fatalf("flowgen server: %v\n%s", err, srv.Log())
	}
	f.client = l.Start(tb, lab.RoleClient, "flowgen-client", flowgenBin, "client",
		"-connect", lab.ServerAddr.Addr().String()+":5001", "-flows", "200", "-interval", "50ms",
		"-duration", "3m", "-ready", ready, "-stop-file", f.stop, "-json", f.report)
	if err := lab.WaitFor(15*time.Second, 20*time.Millisecond, func() (bool, error) {
		_, err := os.Stat(ready)
		return err == nil, nil
	}); err != nil {
		tb.Fatalf("flows not up: %v\n%s", err, f.client.Log())
	}
	return f
}

// finish stops the flows and returns their report.
func (f *liveFlows) finish(tb testing.TB) flowgen.Report {
	tb.Helper()
	if err := os.WriteFile(f.stop, nil, 0o644); err != nil {
		tb.Fatal(err)
	}
	select {
	case <-f.client.Done():
	case <-time.After(20 * time.Second):
		tb.Fatalf("flowgen client still running 20 s after its stop file\n%s", f.client.Tail(20))
	}
	if err := f.client.Wait(); err != nil {
		tb.Fatalf("flowgen client: %v\n%s", err, f.client.Tail(20))
	}
	b, err := os.ReadFile(f.report)
	if err != nil {
		tb.Fatal(err)
	}
	var r flowgen.Report
	if err := json.Unmarshal(b, &r); err != nil {
		tb.Fatal(err)
	}
	return r
}

// runFailover runs one round of c for stack in a fresh lab: fw1 master
// with the flows and the background entries, fw2 backup holding them;
// fw1 crashes (its daemons killed, its LAN and WAN links down) c.phase
// after one of its adverts as fw2 captures them.
func runFailover(b *testing.B, stack string, c failoverCase) haRound {
	l := lab.New(b, lab.Options{NoIPv6: true})
	defer l.Close()
	o := haOpts{advert: c.advert}
	fw1 := startHA(b, l, stack, lab.RoleFW1, o)
	fw1.waitSettled(b, l, true, 15*time.Second)
	fw2 := startHA(b, l, stack, lab.RoleFW2, o)
	fw2.waitSettled(b, l, false, 15*time.Second)
	var r haRound
	r.settings = fw2.settings()

	flows := startFlows(b, l)
	if c.background > 0 {
		benchWrite(b, benchCT(b, l.NS(lab.RoleFW1)), kernel.Create, estFlows(20, c.background))
	}
	// The precondition: the backup holds every state.
	fw2.waitCache(b, true, 200+c.background, 60*time.Second)

	capture := l.Start(b, lab.RoleFW2, "tcpdump", "tcpdump", "-i", "lan", "-n", "-tt", "-l", "-U", "ip proto 112")
	kill := killAtPhase(b, capture, c.advert, c.phase, fw1.kill)
	l.SetLink(lab.RoleFW1, "lan", false)
	l.SetLink(lab.RoleFW1, "wan", false)
	var err error
	if r.killToVIPs, err = waitVIPs(l, lab.RoleFW2, kill, 15*time.Second); err != nil {
		b.Fatalf("%s takeover: %v\n%s", stack, err, fw2.tail())
	}
	time.Sleep(time.Until(kill.Add(afterKill)))
	if r.invalid, err = l.InvalidDrops(lab.RoleFW2); err != nil {
		b.Fatal(err)
	}
	if d := fw2.done("primary"); stack == bench.Baseline && !d.IsZero() {
		r.vipsToDone = d.Sub(kill.Add(r.killToVIPs))
	}
	r.report = flows.finish(b)
	return r
}

// killAtPhase waits for an advert of fw1 newer than the capture's start
// and calls kill phase after it; it returns the time of the kill.
func killAtPhase(b *testing.B, capture *lab.Proc, advert, phase time.Duration, kill func()) time.Time {
	from := lab.FW1LAN.Addr().String() + " >"
	last := func() time.Time { return lastCaptured(capture.Log(), "> 224.0.0.18: VRRP", from) }
	var seen time.Time
	if err := lab.WaitFor(5*advert+2*time.Second, time.Millisecond, func() (bool, error) {
		t := last()
		if seen.IsZero() {
			// The first advert captured may be old news: wait for the next.
			if seen = t; seen.IsZero() {
				seen = time.Unix(1, 0)
			}
			return false, nil
		}
		return t.After(seen), nil
	}); err != nil {
		b.Fatalf("no advert of fw1 captured: %v\n%s", err, capture.Log())
	}
	time.Sleep(time.Until(last().Add(phase)))
	at := time.Now()
	kill()
	return at
}

// runRejoin runs one round of the rebooted primary's return: fw2 master
// alone with the flows and background entries, fw1 (priority 150) starts
// with its kernel table flushed and preempts when its stack lets it.
func runRejoin(b *testing.B, stack string, background int) (r haRound, startToVIPs time.Duration) {
	l := lab.New(b, lab.Options{NoIPv6: true})
	defer l.Close()
	o := haOpts{advert: time.Second}
	fw2 := startHA(b, l, stack, lab.RoleFW2, o)
	fw2.waitSettled(b, l, true, 15*time.Second)
	flows := startFlows(b, l)
	if background > 0 {
		benchWrite(b, benchCT(b, l.NS(lab.RoleFW2)), kernel.Create, estFlows(20, background))
	}
	fw2.waitCache(b, false, 200+background, 60*time.Second)
	flushTable(b, benchCT(b, l.NS(lab.RoleFW1)))
	time.Sleep(time.Second)

	start := time.Now()
	fw1 := startHA(b, l, stack, lab.RoleFW1, o)
	var err error
	if startToVIPs, err = waitVIPs(l, lab.RoleFW1, start, 60*time.Second); err != nil {
		b.Fatalf("%s: fw1 never took over: %v\n%s", stack, err, fw1.tail())
	}
	r.settings = fw1.settings()
	time.Sleep(time.Until(start.Add(startToVIPs + afterKill)))
	if r.invalid, err = l.InvalidDrops(lab.RoleFW1); err != nil {
		b.Fatal(err)
	}
	r.report = flows.finish(b)
	return r, startToVIPs
}

// logCase prints every figure of a case for every stack it ran, with
// the ratios of ctha over each baseline.
func logCase(b *testing.B, c *bench.Case) {
	var stacks, bases []string
	for _, s := range bench.Stacks {
		for _, m := range c.Metrics {
			if len(m.Samples[s.ID]) > 0 {
				stacks = append(stacks, s.ID)
				if s.IsBaseline {
					bases = append(bases, s.ID)
				}
				break
			}
		}
	}
	line := fmt.Sprintf("%-40s", c.Scenario+" "+c.Name)
	for _, s := range stacks {
		line += fmt.Sprintf(" %-22s", s)
	}
	for _, base := range bases {
		line += " ctha/" + base
	}
	b.Log(line)
	for _, m := range c.Metrics {
		p := 2
		if m.Unit != "s" {
			p = 1
		}
		line := fmt.Sprintf("  %-38s", m.Name+" ("+m.Unit+")")
		for _, s := range stacks {
			line += fmt.Sprintf(" %-22s", bench.Summarize(m.Samples[s]).Format(p))
		}
		for _, base := range bases {
			line += " " + bench.FormatRatio(m.Ratio(bench.Ctha, base))
		}
		b.Log(line)
	}
}

// recordFlows adds a round's flow figures to a case and prints them.
func recordFlows(b *testing.B, c *bench.Case, stack string, round int, r haRound) {
	c.Add("flows survived", "of 200", stack, float64(r.report.Survived))
	c.Add("INVALID drops on the new master", "packets", stack, float64(r.invalid))
	c.Add("longest gap", "s", stack, r.report.LongestGapMs/1000)
	c.Metric("longest gap", "s").Gap = true
	b.Logf("round %d %-8s survived %d/%d, INVALID drops %d, longest gap %.2f s, kill/start -> VIPs %.2f s",
		round, stack, r.report.Survived, r.report.Flows, r.invalid, r.report.LongestGapMs/1000, r.killToVIPs.Seconds())
}

// stackOrder alternates which stack goes first in a round.
func stackOrder(round int) []string {
	if round%2 == 0 {
		return []string{bench.Ctha, bench.Baseline}
	}
	return []string{bench.Baseline, bench.Ctha}
}

// roundStacks is stackOrder(round) with the extra stacks (the
// best-configured baseline) in the first extraRuns rounds: last in even
// rounds, first in odd ones.
func roundStacks(round int, extra []string, extraRuns int) []string {
	order := stackOrder(round)
	if round >= extraRuns {
		return order
	}
	if round%2 == 0 {
		return append(order, extra...)
	}
	return append(slices.Clone(extra), order...)
}

// failoverModes names each stack's mode in the failover and rejoin cases.
func failoverModes(best bool) string {
	m := "ctha cache direct; baseline external cache, committed by its notify script"
	if best {
		m += "; best DisableExternalCache On"
	}
	return m
}

// failoverCases is the failover grid of c.
func failoverCases(cfg benchConfig) []failoverCase {
	k := fmt.Sprintf("%dk", cfg.entries/1000)
	cases := []failoverCase{
		{"advert 1 s, phase 0.05 s, 0 entries", time.Second, 50 * time.Millisecond, 0},
		{"advert 1 s, phase 0.75 s, 0 entries", time.Second, 750 * time.Millisecond, 0},
		{"advert 1 s, phase 0.05 s, " + k + " entries", time.Second, 50 * time.Millisecond, cfg.entries},
		{"advert 1 s, phase 0.75 s, " + k + " entries", time.Second, 750 * time.Millisecond, cfg.entries},
		{"advert 0.3 s, phase 0.05 s, 0 entries", 300 * time.Millisecond, 50 * time.Millisecond, 0},
	}
	if cfg.entries > 10_000 {
		cases = append(cases, failoverCase{"advert 1 s, phase 0.75 s, 10k entries", time.Second, 750 * time.Millisecond, 10_000})
	}
	return cases
}

func benchFailover(b *testing.B, run *bench.Run, cfg benchConfig) {
	for _, fc := range failoverCases(cfg) {
		var extra []string
		if cfg.bestIn(fc) {
			extra = []string{bench.Best}
		}
		ok := b.Run(fc.name, func(b *testing.B) {
			c := run.Case("failover", fc.name)
			c.Modes = failoverModes(len(extra) > 0)
			for round := range cfg.runs {
				for _, stack := range roundStacks(round, extra, cfg.bestRuns) {
					r := runFailover(b, stack, fc)
					run.SetStack(stack, r.settings...)
					c.Add("kill -> VIPs", "s", stack, r.killToVIPs.Seconds())
					if stack == bench.Baseline {
						c.Add("VIPs -> notify script (commit) done", "s", stack, r.vipsToDone.Seconds())
					}
					recordFlows(b, c, stack, round, r)
				}
			}
			logCase(b, c)
		})
		if !ok {
			run.Notes = append(run.Notes, "failover "+fc.name+": FAILED, its figures are incomplete (see the log)")
		}
	}
}

func benchRejoin(b *testing.B, run *bench.Run, cfg benchConfig) {
	name := fmt.Sprintf("fw1 restarts empty, fw2 master with %dk entries", cfg.entries/1000)
	ok := b.Run("fw1 rejoins", func(b *testing.B) {
		c := run.Case("rejoin", name)
		c.Modes = failoverModes(true)
		for round := range cfg.runs {
			for _, stack := range roundStacks(round, []string{bench.Best}, cfg.bestRuns) {
				r, took := runRejoin(b, stack, cfg.entries)
				run.SetStack(stack, r.settings...)
				r.killToVIPs = took
				c.Add("fw1 start -> VIPs", "s", stack, took.Seconds())
				recordFlows(b, c, stack, round, r)
			}
		}
		logCase(b, c)
	})
	if !ok {
		run.Notes = append(run.Notes, "rejoin: FAILED, its figures are incomplete (see the log)")
	}
}
