package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/bench"
	"github.com/ctha/ctha/integration/lab"
)

// benchConfig is the grid of BenchmarkStacks, from the environment:
// CTHA_BENCH_RUNS (rounds per stack and case for ctha and the documented
// baseline, default 3), CTHA_BENCH_QUICK=1 (10k entries instead of 100k,
// 1 round by default) and CTHA_BENCH_BEST=all (the best-configured
// baseline in every failover case, not only those with the full number
// of entries).
type benchConfig struct {
	runs     int
	entries  int // background entries and replicated flows
	lagFlows int
	lagRate  int // new flows per second
	quick    bool
	bestRuns int  // rounds of the best-configured baseline's rows
	bestAll  bool // the best-configured baseline in every failover case
}

func benchConfigFromEnv(b *testing.B) benchConfig {
	c := benchConfig{runs: 3, entries: 100_000, lagFlows: 60_000, lagRate: 20_000, bestRuns: 1}
	if os.Getenv("CTHA_BENCH_QUICK") == "1" {
		c = benchConfig{runs: 1, entries: 10_000, lagFlows: 20_000, lagRate: 20_000, quick: true, bestRuns: 1}
	}
	if s := os.Getenv("CTHA_BENCH_RUNS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("CTHA_BENCH_RUNS=%q: want a positive number", s)
		}
		c.runs = n
	}
	switch s := os.Getenv("CTHA_BENCH_BEST"); s {
	case "":
	case "all":
		c.bestAll = true
	default:
		b.Fatalf("CTHA_BENCH_BEST=%q: want all or nothing", s)
	}
	return c
}

// bestIn reports whether failover case fc runs the best-configured
// baseline too.
func (c benchConfig) bestIn(fc failoverCase) bool { return c.bestAll || fc.background == c.entries }

// estimate is the expected duration of BenchmarkStacks for c, from the
// lab runs it makes: a failover or rejoin lab takes about 10 s plus 10 s
// per 100k entries, a replication round (its two labs) about 22 s, a
// lag lab alone 10 s (2 vCPUs, measured on the runs of 2026-11-24).
func (c benchConfig) estimate() time.Duration {
	lab := func(entries int) time.Duration { return 10*time.Second + time.Duration(entries)*10*time.Second/100_000 }
	var d time.Duration
	for _, fc := range failoverCases(c) {
		d += time.Duration(2*c.runs) * lab(fc.background)
		if c.bestIn(fc) {
			d += time.Duration(c.bestRuns) * lab(fc.background)
		}
	}
	d += time.Duration(2*c.runs+c.bestRuns) * lab(c.entries)                               // rejoin
	d += time.Duration(2*c.runs)*22*time.Second + time.Duration(c.bestRuns)*10*time.Second // replication, lag
	return d
}

// BenchmarkStacks is `make bench`: ctha against keepalived 2.2.7 +
// conntrackd 1.4.7 on the same lab, in the same run, alternating stacks
// (spec/bench.md). Sub-benchmarks: failover (200 live flows, the master
// crashes at a fixed phase after an advert), rejoin (the rebooted primary
// comes back while the other is master) and replication (new flows to
// the peer, commit, CPU, bytes, RSS, sync lag). Each figure is printed as
// it comes, then each case's medians, ranges and ratios.
//
// With CTHA_BENCH_OUT=DIR it writes the results as JSON in DIR
// (results-DATE.json and latest.json); with CTHA_BENCH_DOCS=DIR also
// DIR/benchmarks.md and DIR/bench-gap.png; with CTHA_BENCH_README=FILE
// (and CTHA_BENCH_OUT) the headline table of FILE, naming the results
// file.
func BenchmarkStacks(b *testing.B) {
	lab.RequireNetns(b)
	lab.RequireCommands(b, "keepalived", "conntrackd", "tcpdump")
	cfg := benchConfigFromEnv(b)
	run := bench.NewRun("BenchmarkStacks", cfg.runs, cfg.quick)
	run.Settings = benchSettings(cfg)
	run.Notes = benchNotes(cfg)
	b.Logf("machine: %+v", run.Machine)
	b.Logf("versions: %+v", run.Versions)
	b.Logf("estimated duration of failover, rejoin and replication: %v (%d rounds, best-configured baseline %d round(s) in %s)",
		cfg.estimate().Round(time.Minute), cfg.runs, cfg.bestRuns, map[bool]string{true: "every failover case", false: "the cases with the full entries"}[cfg.bestAll])

	b.Run("failover", func(b *testing.B) { benchFailover(b, run, cfg) })
	b.Run("rejoin", func(b *testing.B) { benchRejoin(b, run, cfg) })
	b.Run("replication", func(b *testing.B) { benchReplication(b, run, cfg) })
	b.Run("short adverts", func(b *testing.B) { benchShortAdverts(b, run, cfg) })

	run.Finish()
	b.Logf("finished in %v; load average at the end %s", run.Finished.Sub(run.Started).Round(time.Second), run.Machine.LoadEnd)
	var resultsPath string
	if dir := os.Getenv("CTHA_BENCH_OUT"); dir != "" {
		path, err := run.WriteJSON(dir)
		if err != nil {
			b.Fatal(err)
		}
		resultsPath = path
		b.Logf("results: %s", path)
	}
	if readme := os.Getenv("CTHA_BENCH_README"); readme != "" && resultsPath != "" {
		rel, err := filepath.Rel(filepath.Dir(readme), resultsPath)
		if err != nil {
			b.Fatal(err)
		}
		if err := run.WriteReadme(readme, rel); err != nil {
			b.Fatal(err)
		}
		b.Logf("headline: %s", readme)
	}
	if dir := os.Getenv("CTHA_BENCH_DOCS"); dir != "" {
		if err := run.WriteDocs(dir, nil); err != nil {
			b.Fatal(err)
		}
		b.Logf("docs: %s", filepath.Join(dir, "benchmarks.md"))
	}
}

func benchSettings(cfg benchConfig) []string {
	k := strconv.Itoa(cfg.entries/1000) + "k"
	return []string{
		"stacks: see the Stacks section; each table has a column per stack it ran and the ratio of ctha's median over each baseline's",
		"ctha: examples/fw1.hcl and fw2.hcl as shipped (VRRPv3 instances lan/wan, vrid 51/52, priorities 150/100, sync group fw with conntrack = true, reliable sync over the sync link, cache direct), advert_interval changed for the 0.3 s case",
		"baseline (documented): keepalived 2.2.7 with the same two VRRPv3 instances, priorities and advert interval in a vrrp_sync_group whose notify_master/backup/fault run conntrackd's primary-backup.sh steps (master: conntrackd -c; -f; -R; -B; backup: -n; -t; fault: -t); conntrackd 1.4.7 FTFW over UDP on the sync link, external cache (its default), TCP and UDP, own addresses and VIPs ignored",
		"direct and best: conntrackd as the baseline but DisableExternalCache On (the peer's states go straight into the kernel table, as ctha's cache direct), notify steps without those that act on an external cache (master: -f; -R; -B; backup: -n; no -c, a no-op without an external cache, and no -t, which would flush the backup's kernel table, there the replica, PurgeTimeout later); best adds conntrackd Scheduler { Type FIFO; Priority " + strconv.Itoa(ctdPriority) + " } (without a Scheduler block conntrackd 1.4.7 already runs SCHED_RR 99) and keepalived vrrp_rt_priority " + strconv.Itoa(rtPriority) + " and vrrp_no_swap",
		"failover: fw1 master, fw2 backup holding every state (checked before the kill: its external cache, or its kernel table for conntrackd without one); fw1's daemons are killed with SIGKILL and its LAN and WAN links set down; figures read " + afterKill.String() + " after the kill",
		"background entries: ESTABLISHED IPv4 TCP entries created in the master's kernel table through ctnetlink, replicated like the live flows",
		"rejoin: fw2 master alone with the flows and " + k + " entries, fw1 (priority 150) starts with its kernel table flushed and preempts when its stack lets it (ctha waits for its bulk copy; keepalived on its timer); figures read " + afterKill.String() + " after fw1's VIPs appear",
		"replication: the replication daemons alone (no VRRP), " + k + " ESTABLISHED TCP flows created in fw1's kernel in batches of 512; the peer holds them in its external cache (ctha cache external, conntrackd's default); CPU from /proc/PID/stat (utime+stime) over the phase plus 1 s; bytes are tx_bytes of both ends of the sync link; commit is `ctha sync commit` / `conntrackd -c` until fw2's nf_conntrack_count shows them; RSS growth is VmRSS after minus before, divided by the entries",
		"sync lag: direct mode on every stack (ctha cache direct, conntrackd DisableExternalCache On: the direct and best stacks), flows created in fw1 in batches of 100 at the target rate, timed from the start of their batch's write to their NEW event in fw2's kernel; the same phase gives direct mode's CPU per flow and RSS growth per entry (measured as for replication, over the phase plus 1 s)",
	}
}

func benchNotes(cfg benchConfig) []string {
	notes := []string{
		"cut for time: the 10k-entry failover case runs at phase 0.75 s only; the 0.3 s advert case runs with 0 entries at phase 0.05 s only; the rejoin case runs only with " + strconv.Itoa(cfg.entries/1000) + "k entries",
		"cut for time: the best-configured baseline (best) runs " + strconv.Itoa(cfg.bestRuns) + " round(s) per case (issue 14 allows one), in " +
			map[bool]string{true: "every failover case", false: "the failover cases with " + strconv.Itoa(cfg.entries/1000) + "k entries (CTHA_BENCH_BEST=all for all)"}[cfg.bestAll] +
			", the rejoin case and the sync lag; its ranges are single figures",
		"the machine has 2 vCPUs shared with other engineers' lab tests: figures move 20-30 % between runs; compare stacks within this run only (the load averages above say how busy it was)",
	}
	if cfg.quick {
		notes = append(notes, "QUICK grid (CTHA_BENCH_QUICK=1): fewer entries and rounds, for development only")
	}
	return notes
}
