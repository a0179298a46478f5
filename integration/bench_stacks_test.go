package integration

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/bench"
	"github.com/ctha/ctha/integration/lab"
)

// benchConfig is the grid of BenchmarkStacks, from the environment:
// CTHA_BENCH_RUNS (rounds per stack and case, default 3) and
// CTHA_BENCH_QUICK=1 (10k entries instead of 100k, 1 round by default).
type benchConfig struct {
	runs     int
	entries  int // background entries and replicated flows
	lagFlows int
	lagRate  int // new flows per second
	quick    bool
}

func benchConfigFromEnv(b *testing.B) benchConfig {
	c := benchConfig{runs: 3, entries: 100_000, lagFlows: 60_000, lagRate: 20_000}
	if os.Getenv("CTHA_BENCH_QUICK") == "1" {
		c = benchConfig{runs: 1, entries: 10_000, lagFlows: 20_000, lagRate: 20_000, quick: true}
	}
	if s := os.Getenv("CTHA_BENCH_RUNS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("CTHA_BENCH_RUNS=%q: want a positive number", s)
		}
		c.runs = n
	}
	return c
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
// DIR/benchmarks.md and DIR/bench-gap.png.
func BenchmarkStacks(b *testing.B) {
	lab.RequireNetns(b)
	lab.RequireCommands(b, "keepalived", "conntrackd", "tcpdump")
	cfg := benchConfigFromEnv(b)
	run := &bench.Run{Started: time.Now(), Runs: cfg.runs, Quick: cfg.quick, Machine: machine(), Versions: versions()}
	run.Settings = benchSettings(cfg)
	run.Notes = benchNotes(cfg)
	b.Logf("machine: %+v", run.Machine)
	b.Logf("versions: %+v", run.Versions)

	b.Run("failover", func(b *testing.B) { benchFailover(b, run, cfg) })
	b.Run("rejoin", func(b *testing.B) { benchRejoin(b, run, cfg) })
	b.Run("replication", func(b *testing.B) { benchReplication(b, run, cfg) })

	run.Finished = time.Now()
	run.Machine.LoadEnd = loadavg()
	b.Logf("finished in %v; load average at the end %s", run.Finished.Sub(run.Started).Round(time.Second), run.Machine.LoadEnd)
	if dir := os.Getenv("CTHA_BENCH_OUT"); dir != "" {
		path, err := run.WriteJSON(dir)
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("results: %s", path)
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
		"ctha: examples/fw1.hcl and fw2.hcl as shipped (VRRPv3 instances lan/wan, vrid 51/52, priorities 150/100, sync group fw with conntrack = true, reliable sync over the sync link, cache direct), advert_interval changed for the 0.3 s case",
		"baseline: keepalived 2.2.7 with the same two VRRPv3 instances, priorities and advert interval in a vrrp_sync_group whose notify_master/backup/fault run conntrackd's primary-backup.sh steps (master: conntrackd -c; -f; -R; -B; backup: -n; -t; fault: -t); conntrackd 1.4.7 FTFW over UDP on the sync link, external cache (its default), TCP and UDP, own addresses and VIPs ignored",
		"failover: fw1 master, fw2 backup holding every state (checked before the kill); fw1's daemons are killed with SIGKILL and its LAN and WAN links set down; figures read " + afterKill.String() + " after the kill",
		"background entries: ESTABLISHED IPv4 TCP entries created in the master's kernel table through ctnetlink, replicated like the live flows",
		"rejoin: fw2 master alone with the flows and " + k + " entries, fw1 (priority 150) starts with its kernel table flushed and preempts when its stack lets it (ctha waits for its bulk copy; keepalived on its timer); figures read " + afterKill.String() + " after fw1's VIPs appear",
		"replication: the replication daemons alone (no VRRP), " + k + " ESTABLISHED TCP flows created in fw1's kernel in batches of 512; the peer holds them in its external cache (ctha cache external, conntrackd's default); CPU from /proc/PID/stat over the phase plus 1 s; bytes are tx_bytes of both ends of the sync link; commit is `ctha sync commit` / `conntrackd -c` until fw2's nf_conntrack_count shows them; RSS growth is VmRSS after minus before, divided by the entries",
		"sync lag: both stacks in direct mode (ctha cache direct, conntrackd DisableExternalCache on), flows created in fw1 in batches of 100 at the target rate, timed from the start of their batch's write to their NEW event in fw2's kernel",
	}
}

func benchNotes(cfg benchConfig) []string {
	notes := []string{
		"cut for time: the 10k-entry failover case runs at phase 0.75 s only; the 0.3 s advert case runs with 0 entries at phase 0.05 s only; the rejoin case runs only with " + strconv.Itoa(cfg.entries/1000) + "k entries",
		"the machine has 2 vCPUs shared with other engineers' lab tests: figures move 20-30 % between runs; compare stacks within this run only (the load averages above say how busy it was)",
	}
	if cfg.quick {
		notes = append(notes, "QUICK grid (CTHA_BENCH_QUICK=1): fewer entries and rounds, for development only")
	}
	return notes
}

func machine() bench.Machine {
	m := bench.Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), LoadStart: loadavg()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	return m
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func versions() bench.Versions {
	first := func(name string, args ...string) string {
		out, _ := exec.Command(name, args...).CombinedOutput()
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return line
	}
	return bench.Versions{
		Ctha:       first("git", "describe", "--always", "--dirty", "--exclude", "*"),
		Keepalived: first("keepalived", "--version"),
		Conntrackd: first("conntrackd", "-v"),
	}
}
