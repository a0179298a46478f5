package integration

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/lab"
)

// soakSample is one measurement of the pair.
type soakSample struct {
	at         time.Duration // since the churn began
	rss        [2]int        // KiB (VmRSS) of fw1's and fw2's daemon
	floor      [2]int        // their least RSS since the sample before (watchRSS)
	threads    [2]int        // their OS threads
	goroutines [2]int        // their goroutines (-1: no trace read yet)
	table      [2]int        // nf_conntrack_count of fw1 and fw2
	internal   int           // fw1's own cache entries
	external   int           // fw2's cache of fw1's entries
	state      [2]string     // the sync group's state in fw1 and fw2
	created    int64         // churn creates so far
}

// soakProbe takes the samples.
type soakProbe struct {
	t     *testing.T
	nodes [2]*node
	sched [2]*schedTrace
	floor [2]int // least RSS read since the last sample; -1: none
}

func newSoakProbe(t *testing.T, r *failRig) *soakProbe {
	p := &soakProbe{t: t, nodes: [2]*node{r.nodes[lab.RoleFW1], r.nodes[lab.RoleFW2]}, floor: [2]int{-1, -1}}
	for i, n := range p.nodes {
		p.sched[i] = &schedTrace{path: n.proc.LogPath, last: -1}
	}
	return p
}

// watchRSS reads both daemons' RSS for its floor between samples.
func (p *soakProbe) watchRSS() {
	for i, n := range p.nodes {
		if rss, _, err := procStatus(n.proc.Pid()); err == nil && (p.floor[i] < 0 || rss < p.floor[i]) {
			p.floor[i] = rss
		}
	}
}

// sample measures the pair. It reads /proc and the daemons' sockets
// directly, starting no process, and notes what it cannot read as -1
// (or "?") rather than stopping the soak; only a daemon gone is fatal.
func (p *soakProbe) sample(at time.Duration, c *churn) soakSample {
	t := p.t
	t.Helper()
	s := soakSample{at: at, created: c.created.Load(), internal: -1, external: -1}
	for i, n := range p.nodes {
		if n.proc.Exited() {
			t.Fatalf("%s's ctha exited: %v\n%s", n.role, n.proc.Wait(), withoutTraces(n.proc.Log(), 30))
		}
		s.rss[i], s.threads[i], s.goroutines[i], s.table[i], s.state[i] = -1, -1, -1, -1, "?"
		var err error
		if s.rss[i], s.threads[i], err = procStatus(n.proc.Pid()); err != nil {
			t.Logf("%s: %v", n.role, err)
		}
		s.floor[i] = p.floor[i]
		if s.rss[i] >= 0 && (s.floor[i] < 0 || s.rss[i] < s.floor[i]) {
			s.floor[i] = s.rss[i]
		}
		p.floor[i] = -1
		if err := p.sched[i].read(); err != nil {
			t.Logf("%s: %v", n.role, err)
		}
		s.goroutines[i] = p.sched[i].last
		if s.table[i], err = conntrackCount(n.proc.Pid()); err != nil {
			t.Logf("%s: %v", n.role, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := callStatus(ctx, n.socket)
		cancel()
		if err != nil || len(st.Groups) != 1 || st.Sync == nil {
			t.Logf("%s: status %+v: %v", n.role, st, err)
			continue
		}
		s.state[i] = st.Groups[0].State
		if st.Groups[0].Demoted != "" {
			s.state[i] += "(demoted)"
		}
		if i == 0 {
			s.internal = st.Sync.InternalEntries
		} else {
			s.external = st.Sync.ExternalEntries
		}
	}
	return s
}

// conntrackCount reads the number of conntrack entries in the network
// namespace of process pid: the first field (hex) of
// /proc/PID/net/stat/nf_conntrack, the same on every CPU's line.
func conntrackCount(pid int) (int, error) {
	path := fmt.Sprintf("/proc/%d/net/stat/nf_conntrack", pid)
	b, err := os.ReadFile(path)
	if err != nil {
		return -1, err
	}
	lines := strings.SplitN(string(b), "\n", 3)
	if len(lines) < 2 || len(strings.Fields(lines[1])) == 0 {
		return -1, fmt.Errorf("%s: no entries", path)
	}
	n, err := strconv.ParseInt(strings.Fields(lines[1])[0], 16, 64)
	if err != nil {
		return -1, fmt.Errorf("%s: %w", path, err)
	}
	return int(n), nil
}

// procStatus reads a process's resident memory (VmRSS, KiB) and thread
// count from /proc/PID/status.
func procStatus(pid int) (rss, threads int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1, -1, err
	}
	var found int
	for line := range strings.Lines(string(b)) {
		name, value, _ := strings.Cut(line, ":")
		var dst *int
		switch name {
		case "VmRSS":
			dst = &rss
		case "Threads":
			dst = &threads
		default:
			continue
		}
		if *dst, err = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(value), " kB")); err != nil {
			return -1, -1, fmt.Errorf("/proc/%d/status: %s: %w", pid, name, err)
		}
		found++
	}
	if found != 2 {
		return -1, -1, fmt.Errorf("/proc/%d/status: no VmRSS or Threads", pid)
	}
	return rss, threads, nil
}

// schedTrace reads the goroutine count that a Go program run with
// GODEBUG=schedtrace=MS,scheddetail=1 prints to stderr: every MS a block
// that begins "SCHED Nms:" and lists every goroutine, one line each
// ("  G17: status=4(select) m=nil lockedm=nil"); status 6 (dead) is one
// kept for reuse, not running code. The runtime writes a block piece by
// piece, so only a block followed by the next one is counted; the first
// block ("SCHED 0ms") comes before main runs and is not.
type schedTrace struct {
	path string
	off  int64 // where the log's first block not yet known complete begins
	last int   // live goroutines in the last complete block; -1 before one
}

var (
	schedHeader = regexp.MustCompile(`(?m)^SCHED (\d+)ms:`)
	schedG      = regexp.MustCompile(`G\d+: status=(\d+)\(`)
)

// gScan is the runtime's flag on a goroutine's status while the garbage
// collector scans its stack; gDead a goroutine that has exited.
const gScan, gDead = 0x1000, 6

func (s *schedTrace) read() error {
	f, err := os.Open(s.path)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, s.off, math.MaxInt64-s.off))
	if err != nil {
		return fmt.Errorf("read %s: %w", s.path, err)
	}
	heads := schedHeader.FindAllSubmatchIndex(b, -1)
	if len(heads) < 2 {
		return nil
	}
	from, to := heads[len(heads)-2], heads[len(heads)-1][0]
	s.off += int64(to)
	if string(b[from[2]:from[3]]) == "0" {
		return nil
	}
	live := 0
	for _, m := range schedG.FindAllSubmatch(b[from[0]:to], -1) {
		if st, err := strconv.Atoi(string(m[1])); err == nil && st&^gScan != gDead {
			live++
		}
	}
	s.last = live
	return nil
}

const soakHeader = "   time  rss fw1  rss fw2  floor 1  floor 2  gor fw1  gor fw2  thr fw1  thr fw2  table fw1  table fw2  int fw1  ext fw2  churn/s  states"

// row formats a sample; prev, if not nil, is the one before, for the
// churn's rate.
func (s soakSample) row(prev *soakSample) string {
	rate := "-"
	if prev != nil && s.at > prev.at {
		rate = fmt.Sprintf("%.0f", float64(s.created-prev.created)/(s.at-prev.at).Seconds())
	}
	m := int(s.at / time.Minute)
	sec := int(s.at % time.Minute / time.Second)
	return fmt.Sprintf("%4d:%02d %8d %8d %8d %8d %8d %8d %8d %8d %10d %10d %8d %8d %8s  %s / %s",
		m, sec, s.rss[0], s.rss[1], s.floor[0], s.floor[1], s.goroutines[0], s.goroutines[1], s.threads[0], s.threads[1],
		s.table[0], s.table[1], s.internal, s.external, rate, s.state[0], s.state[1])
}

// soakTableText is every sample, a line marking the warm-up's end.
func soakTableText(samples []soakSample, warmup time.Duration) string {
	var b strings.Builder
	b.WriteString(soakHeader + "\n")
	marked := false
	for i, s := range samples {
		if !marked && s.at >= warmup {
			b.WriteString("   ---- warm-up over ----\n")
			marked = true
		}
		var prev *soakSample
		if i > 0 {
			prev = &samples[i-1]
		}
		b.WriteString(s.row(prev) + "\n")
	}
	return b.String()
}

var logWarning = regexp.MustCompile(`level=(WARN|ERROR) msg=("(?:[^"\\]|\\.)*"|\S+)`)

// warnings lists the distinct warnings and errors of a daemon's log
// (slog's text format) with how many times each came.
func warnings(log string) string {
	count := map[string]int{}
	var order []string
	for _, m := range logWarning.FindAllStringSubmatch(log, -1) {
		k := m[1] + " " + m[2]
		if count[k] == 0 {
			order = append(order, k)
		}
		count[k]++
	}
	var b strings.Builder
	for _, k := range order {
		fmt.Fprintf(&b, "  %5d  %s\n", count[k], k)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// soakLogLines is how much of a daemon's log a failed soak shows.
const soakLogLines = 60

// withoutTraces returns the last n lines of a daemon's log that are not
// the runtime's scheduler traces.
func withoutTraces(log string, n int) string {
	var keep []string
	for line := range strings.Lines(log) {
		l := strings.TrimLeft(line, " ")
		if strings.HasPrefix(l, "SCHED ") || len(l) > 1 && (l[0] == 'G' || l[0] == 'M' || l[0] == 'P') && l[1] >= '0' && l[1] <= '9' {
			continue
		}
		keep = append(keep, strings.TrimRight(line, "\n"))
	}
	return strings.Join(keep[max(0, len(keep)-n):], "\n")
}

// slope is the least-squares slope of ys over xs.
func slope(xs, ys []float64) float64 {
	var mx, my float64
	for i := range xs {
		mx += xs[i]
		my += ys[i]
	}
	mx /= float64(len(xs))
	my /= float64(len(ys))
	var sxy, sxx float64
	for i := range xs {
		sxy += (xs[i] - mx) * (ys[i] - my)
		sxx += (xs[i] - mx) * (xs[i] - mx)
	}
	return sxy / sxx
}

// TestSoakProbes checks the soak's readings on made-up input: they run
// nowhere else outside a soak.
func TestSoakProbes(t *testing.T) {
	t.Run("schedTrace", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "log")
		s := &schedTrace{path: path, last: -1}
		appendLog := func(text string) {
			t.Helper()
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteString(text); err != nil {
				t.Fatal(err)
			}
		}
		read := func(want int) {
			t.Helper()
			if err := s.read(); err != nil {
				t.Fatal(err)
			}
			if s.last != want {
				t.Errorf("goroutines %d, want %d", s.last, want)
			}
		}
		appendLog("SCHED 0ms: gomaxprocs=2 idleprocs=0 threads=5\n  P0: status=1\n  G1: status=2(chan receive) m=0 lockedm=0\n")
		read(-1)
		appendLog("time=2026-01-01T00:00:00Z level=INFO msg=\"ctha started\"\nSCHED 5003ms: gomaxprocs=2\n  M0: p=nil\n" +
			"  G1: status=4(IO wait) m=nil lockedm=nil\n  G2: status=4(force gc (idle)) m=nil lockedm=nil\n" +
			"  G7: status=6() m=nil lockedm=nil\n  G9: status=4100(select) m=nil lockedm=nil\n" +
			"time=2026-01-01T00:00:05Z level=INFO msg=transition\n  G12: status=4102() m=nil lockedm=nil\n  G13: status=3() m=2 lockedm=nil\n")
		read(-1) // the 0ms block does not count; the 5003ms one is not known complete
		appendLog("SCHED 10007ms: gomaxprocs=2\n  G1: status=4(IO wait) m=nil lockedm=nil\n")
		read(4)
		appendLog("  G2: status=4(force gc (idle)) m=nil lockedm=nil\nSCHED 15011ms: gomaxprocs=2\n")
		read(2)
		read(2)
	})
	t.Run("warnings", func(t *testing.T) {
		log := `time=1 level=WARN msg="sync peer unreachable: demoted, not FAULT" group=fw priority_adjust=-50
time=2 level=INFO msg="sync peer back: demotion lifted" group=fw
  G1: status=4(IO wait) m=nil lockedm=nil
time=3 level=WARN msg="sync peer unreachable: demoted, not FAULT" group=fw priority_adjust=-50
time=4 level=ERROR msg=failed err="x \"y\""
`
		want := "      2  WARN \"sync peer unreachable: demoted, not FAULT\"\n      1  ERROR failed"
		if got := warnings(log); got != want {
			t.Errorf("warnings:\n%s\nwant\n%s", got, want)
		}
		wantTail := "time=2 level=INFO msg=\"sync peer back: demotion lifted\" group=fw\n" +
			"time=3 level=WARN msg=\"sync peer unreachable: demoted, not FAULT\" group=fw priority_adjust=-50\n" +
			"time=4 level=ERROR msg=failed err=\"x \\\"y\\\"\""
		if got := withoutTraces(log, 3); got != wantTail {
			t.Errorf("withoutTraces:\n%s\nwant\n%s", got, wantTail)
		}
	})
	t.Run("slope", func(t *testing.T) {
		if got := slope([]float64{0, 10, 20, 30}, []float64{1, 21, 41, 61}); math.Abs(got-2) > 1e-9 {
			t.Errorf("slope %v, want 2", got)
		}
	})
	t.Run("procStatus", func(t *testing.T) {
		rss, threads, err := procStatus(os.Getpid())
		if err != nil || rss <= 0 || threads <= 0 {
			t.Errorf("procStatus of the test: RSS %d KiB, %d threads, %v", rss, threads, err)
		}
	})
}
