package integration

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/integration/bench"
	"github.com/ctha/ctha/integration/lab"
)

// startSync starts stack's replication daemon alone (no VRRP) in role:
// ctha with conntrack_sync only, or conntrackd (FTFW over UDP, with the
// stack's scheduling); direct means the peer's states go into the kernel
// as they arrive (ctha cache "direct", conntrackd DisableExternalCache),
// else they wait in the external cache for a commit.
func startSync(b *testing.B, l *lab.Lab, stack, role string, direct bool) *haNode {
	n := &haNode{stack: stack, role: role, lab: l}
	if !isCtha(stack) {
		c := baselineOf(b, stack).ctd
		c.DisableExternalCache = direct
		n.ctd = l.StartConntrackd(b, role, c)
		return n
	}
	cache := map[bool]string{true: "direct", false: "external"}[direct]
	local, peer := lab.FW1Sync.Addr().String(), lab.FW2Sync.Addr().String()
	if role == lab.RoleFW2 {
		local, peer = peer, local
	}
	n.ctha = startNode(b, l, role, syncOnlyConfig(role, local, peer, cache, filepath.Join(b.TempDir(), "state")))
	return n
}

func (n *haNode) pid() int {
	if n.ctha != nil {
		return n.ctha.proc.Pid()
	}
	return n.ctd.Pid()
}

// waitSyncUp waits until both nodes hear each other (ctha: peer up and
// bulk copy complete; conntrackd has no such state), then a second for
// their startup work to end.
func waitSyncUp(b *testing.B, nodes ...*haNode) {
	for _, n := range nodes {
		if n.ctha == nil {
			time.Sleep(time.Second)
			return
		}
		err := lab.WaitFor(15*time.Second, 50*time.Millisecond, func() (bool, error) {
			s, err := syncStatus(n.ctha)
			return err == nil && s.PeerUp && s.BulkComplete, err
		})
		if err != nil {
			b.Fatalf("%s: sync peer not up: %v", n.role, err)
		}
	}
	// The same second for ctha: its first dump of the kernel table starts
	// when the peer's copy is complete, and holds its loop while it runs.
	time.Sleep(time.Second)
}

// replRound is what one replication round gave.
type replRound struct {
	insert, toPeer          time.Duration
	cpuSender, cpuReceiver  time.Duration
	bytes                   int64 // both directions of the sync link
	commit                  time.Duration
	rssSender, rssReceiver  float64 // bytes per cached entry
	lagP50, lagP99, lagMax  time.Duration
	lagRate                 float64 // new flows/s achieved
	lagMissing, lagInserted int
	// Direct mode, over the lag phase plus 1 s: CPU and RSS growth
	// (bytes per entry) of both ends.
	lagCPUSender, lagCPUReceiver time.Duration
	lagRSSSender, lagRSSReceiver float64
}

// runReplication: n new ESTABLISHED flows created in fw1's kernel reach
// fw2's external cache; then fw2 commits them. CPU, sync link bytes and
// RSS are measured over the first phase.
func runReplication(b *testing.B, stack string, n int) replRound {
	l := lab.New(b, lab.Options{NoIPv6: true})
	defer l.Close()
	fw1 := startSync(b, l, stack, lab.RoleFW1, false)
	fw2 := startSync(b, l, stack, lab.RoleFW2, false)
	waitSyncUp(b, fw1, fw2)
	c1 := benchCT(b, l.NS(lab.RoleFW1))
	flows := estFlows(20, n)

	var r replRound
	rss1, rss2 := procRSS(b, fw1.pid()), procRSS(b, fw2.pid())
	cpu1, cpu2 := procCPU(b, fw1.pid()), procCPU(b, fw2.pid())
	tx1, tx2 := syncBytes(b, l, lab.RoleFW1, "tx_bytes"), syncBytes(b, l, lab.RoleFW2, "tx_bytes")
	start := time.Now()
	benchWrite(b, c1, kernel.Create, flows)
	r.insert = time.Since(start)
	fw2.waitCache(b, true, n, 120*time.Second)
	r.toPeer = time.Since(start)
	time.Sleep(time.Second) // acknowledgements, the sender's last work
	r.cpuSender, r.cpuReceiver = procCPU(b, fw1.pid())-cpu1, procCPU(b, fw2.pid())-cpu2
	r.bytes = syncBytes(b, l, lab.RoleFW1, "tx_bytes") - tx1 + syncBytes(b, l, lab.RoleFW2, "tx_bytes") - tx2
	r.rssSender = float64(procRSS(b, fw1.pid())-rss1) / float64(n)
	r.rssReceiver = float64(procRSS(b, fw2.pid())-rss2) / float64(n)

	before := ctCount(b, l, lab.RoleFW2)
	start = time.Now()
	var out string
	var err error
	if isCtha(stack) {
		out, err = fw2.ctha.ctl("sync", "commit")
	} else {
		out, err = fw2.ctd.Ctl("-c")
	}
	if err != nil {
		b.Fatalf("%s commit: %v\n%s", stack, err, out)
	}
	if err := lab.WaitFor(60*time.Second, 5*time.Millisecond, func() (bool, error) {
		return ctCount(b, l, lab.RoleFW2) >= before+n, nil
	}); err != nil {
		b.Fatalf("%s commit: fw2's table has %d entries, want %d: %v", stack, ctCount(b, l, lab.RoleFW2), before+n, err)
	}
	r.commit = time.Since(start)
	return r
}

// lagBatch flows are written together, one batch every lagBatch/rate.
const lagBatch = 100

// runLag creates n new flows in fw1 at rate per second (direct mode on
// both stacks) and times each one's arrival in fw2's kernel table (its
// NEW event there) from the start of its batch's write.
func runLag(b *testing.B, stack string, n, rate int, r *replRound) {
	l := lab.New(b, lab.Options{NoIPv6: true})
	defer l.Close()
	fw1 := startSync(b, l, stack, lab.RoleFW1, true)
	fw2 := startSync(b, l, stack, lab.RoleFW2, true)
	waitSyncUp(b, fw1, fw2)
	c1 := benchCT(b, l.NS(lab.RoleFW1))

	var ln *kernel.Listener
	if err := inNS(l.NS(lab.RoleFW2), func() (err error) { ln, err = kernel.Listen(kernel.ListenOptions{}); return err }); err != nil {
		b.Fatalf("listen in fw2: %v", err)
	}
	var mu sync.Mutex // guards seen, count, lerr
	seen := make([]time.Time, n)
	count := 0
	var lerr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		var buf []kernel.Event
		for {
			var err error
			buf, err = ln.Receive(buf[:0])
			now := time.Now()
			mu.Lock()
			for _, e := range buf {
				if i := estIndex(40, e.Flow.Orig); e.Type == kernel.EventNew && i >= 0 && i < n && seen[i].IsZero() {
					seen[i] = now
					count++
				}
			}
			if err != nil && !errors.Is(err, net.ErrClosed) {
				lerr = err
			}
			mu.Unlock()
			if errors.Is(err, net.ErrClosed) {
				return
			}
		}
	}()
	defer func() { ln.Close(); <-done }()

	flows := estFlows(40, n)
	rss1, rss2 := procRSS(b, fw1.pid()), procRSS(b, fw2.pid())
	cpu1, cpu2 := procCPU(b, fw1.pid()), procCPU(b, fw2.pid())
	interval := time.Duration(float64(time.Second) * lagBatch / float64(rate))
	written := make([]time.Time, 0, n/lagBatch+1)
	start := time.Now()
	for k := 0; k*lagBatch < n; k++ {
		time.Sleep(time.Until(start.Add(time.Duration(k) * interval)))
		written = append(written, time.Now())
		benchWrite(b, c1, kernel.Create, flows[k*lagBatch:min(n, (k+1)*lagBatch)])
	}
	r.lagRate = float64(n) / time.Since(start).Seconds()
	lab.WaitFor(15*time.Second, 50*time.Millisecond, func() (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return count == n, nil
	})
	time.Sleep(time.Second) // acknowledgements, the sender's last work
	r.lagCPUSender, r.lagCPUReceiver = procCPU(b, fw1.pid())-cpu1, procCPU(b, fw2.pid())-cpu2
	r.lagRSSSender = float64(procRSS(b, fw1.pid())-rss1) / float64(n)
	r.lagRSSReceiver = float64(procRSS(b, fw2.pid())-rss2) / float64(n)
	b.Logf("%s lag phase: CPU sender %.2f s, receiver %.2f s; RSS growth %.0f / %.0f B/entry", stack,
		r.lagCPUSender.Seconds(), r.lagCPUReceiver.Seconds(), r.lagRSSSender, r.lagRSSReceiver)
	mu.Lock()
	defer mu.Unlock()
	if lerr != nil {
		b.Logf("%s: events in fw2: %v (lag figures may miss flows)", stack, lerr)
	}
	var lags []time.Duration
	for i, t := range seen {
		if !t.IsZero() {
			lags = append(lags, t.Sub(written[i/lagBatch]))
		}
	}
	slices.Sort(lags)
	r.lagInserted, r.lagMissing = n, n-len(lags)
	if len(lags) == 0 {
		b.Fatalf("%s: none of %d flows reached fw2's kernel", stack, n)
	}
	pct := func(p float64) time.Duration { return lags[min(len(lags)-1, int(p*float64(len(lags))))] }
	r.lagP50, r.lagP99, r.lagMax = pct(0.50), pct(0.99), lags[len(lags)-1]
}

// benchReplication runs the replication cases. For development,
// CTHA_BENCH_REPL=lag (or commit) runs only that part and only ctha;
// lag-both (commit-both) runs that part for every stack.
//
// The replication case compares external caches (ctha and the documented
// baseline); the lag case direct modes: ctha against conntrackd with
// DisableExternalCache On, recorded as the direct stack (the documented
// baseline's round runs it), and the best-configured one.
func benchReplication(b *testing.B, run *bench.Run, cfg benchConfig) {
	name := fmt.Sprintf("%dk new flows", cfg.entries/1000)
	ok := b.Run("replication", func(b *testing.B) {
		c := run.Case("replication", name)
		c.Modes = "ctha cache external; baseline external cache"
		lc := run.Case("replication", fmt.Sprintf("%dk new flows at %dk/s, direct mode", cfg.lagFlows/1000, cfg.lagRate/1000))
		lc.Modes = "ctha cache direct; direct and best DisableExternalCache On"
		n := float64(cfg.entries)
		only, both := strings.CutSuffix(os.Getenv("CTHA_BENCH_REPL"), "-both")
		for round := range cfg.runs {
			for _, stack := range roundStacks(round, []string{bench.Best}, cfg.bestRuns) {
				if only != "" && !both && stack != bench.Ctha {
					continue
				}
				var r replRound
				if only != "lag" && stack != bench.Best {
					r = runReplication(b, stack, cfg.entries)
					c.Add("insert into fw1's kernel", "s", stack, r.insert.Seconds())
					c.Add("insert start -> all in the peer's cache", "s", stack, r.toPeer.Seconds())
					c.Add("CPU sender", "µs/flow", stack, float64(r.cpuSender.Microseconds())/n)
					c.Add("CPU receiver", "µs/flow", stack, float64(r.cpuReceiver.Microseconds())/n)
					c.Add("CPU sender, total", "s", stack, r.cpuSender.Seconds())
					c.Add("CPU receiver, total", "s", stack, r.cpuReceiver.Seconds())
					c.Add("sync link bytes, both ways", "B/flow", stack, float64(r.bytes)/n)
					c.Add("commit into the peer's kernel", "s", stack, r.commit.Seconds())
					c.Add("RSS growth sender (internal cache)", "B/entry", stack, r.rssSender)
					c.Add("RSS growth receiver (external cache)", "B/entry", stack, r.rssReceiver)
				}
				// The documented baseline has no direct mode: its round
				// runs conntrackd with DisableExternalCache On.
				lagStack := stack
				if stack == bench.Baseline {
					lagStack = bench.Direct
				}
				if only != "commit" {
					runLag(b, lagStack, cfg.lagFlows, cfg.lagRate, &r)
					ln := float64(cfg.lagFlows)
					lc.Add("rate achieved", "k/s", lagStack, r.lagRate/1000)
					lc.Add("sync lag p50", "ms", lagStack, float64(r.lagP50.Microseconds())/1000)
					lc.Add("sync lag p99", "ms", lagStack, float64(r.lagP99.Microseconds())/1000)
					lc.Add("sync lag max", "ms", lagStack, float64(r.lagMax.Microseconds())/1000)
					lc.Add("flows missing in the peer's kernel after 15 s", "flows", lagStack, float64(r.lagMissing))
					lc.Add("CPU sender", "µs/flow", lagStack, float64(r.lagCPUSender.Microseconds())/ln)
					lc.Add("CPU receiver", "µs/flow", lagStack, float64(r.lagCPUReceiver.Microseconds())/ln)
					lc.Add("RSS growth sender (internal cache)", "B/entry", lagStack, r.lagRSSSender)
					lc.Add("RSS growth receiver (no external cache)", "B/entry", lagStack, r.lagRSSReceiver)
				}
				b.Logf("round %d %-8s to peer %.2f s (insert %.2f s), CPU %.2f / %.2f s, %.1f B/flow, commit %.2f s, RSS %.0f / %.0f B/entry; lag (%s) p50 %.1f ms p99 %.1f ms max %.1f ms at %.1fk/s, %d missing",
					round, stack, r.toPeer.Seconds(), r.insert.Seconds(), r.cpuSender.Seconds(), r.cpuReceiver.Seconds(), float64(r.bytes)/n,
					r.commit.Seconds(), r.rssSender, r.rssReceiver, lagStack, float64(r.lagP50.Microseconds())/1000, float64(r.lagP99.Microseconds())/1000,
					float64(r.lagMax.Microseconds())/1000, r.lagRate/1000, r.lagMissing)
			}
		}
		logCase(b, c)
		logCase(b, lc)
	})
	if !ok {
		run.Notes = append(run.Notes, "replication: FAILED, its figures are incomplete (see the log)")
	}
}
