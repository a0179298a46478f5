package integration

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync"
	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/integration/flowgen"
	"github.com/ctha/ctha/integration/lab"
)

// The soak's load (issue 13): a standing table of soakStanding entries in
// fw1, soakPerTick of them replaced every soakTick (5k creates and 5k
// deletes per second), besides the rig's 200 live flows.
const (
	soakStanding = 100_000
	soakPerTick  = 500
	soakTick     = 100 * time.Millisecond

	soakSampleEvery = 10 * time.Second
	// soakRSSEvery: RSS is also read this often, for its floor between
	// two samples (soakProbe.watchRSS).
	soakRSSEvery = time.Second
	// soakDefault and soakWarmup are the soak's length and warm-up unless
	// the environment says otherwise (soakSettingsFromEnv).
	soakDefault = 30 * time.Minute
	soakWarmup  = 5 * time.Minute

	// What "flat" means after the warm-up: RSS grows less than
	// soakRSSLimit KiB per 10 minutes (least-squares slope), the number
	// of goroutines varies by at most soakGoroutineSpread.
	soakRSSLimit        = 1024
	soakGoroutineSpread = 5
	// soakRSSWindow: RSS is judged only over at least this long after the
	// warm-up. Its floor wanders by a MiB or so from one sample to the
	// next, which a shorter window cannot tell from 1 MiB per 10 minutes.
	soakRSSWindow = 10 * time.Minute
)

// soakGODEBUG makes the Go runtime of each daemon print its scheduler
// state every 5 s to its log, every goroutine listed (schedTrace): a
// count that does not depend on the daemon's own metrics
// (go_goroutines, which the chaos run reads).
const soakGODEBUG = "GODEBUG=schedtrace=5000,scheddetail=1"

// TestSoak (make soak) runs a ctha pair (the example configuration,
// direct cache) under churn for 30 minutes: 100k entries standing in
// fw1's table, 5k of them created and 5k deleted per second through
// ctnetlink (real TCP at that rate would fill nf_conntrack_max with
// TIME_WAIT), and 200 live TCP flows through the VIPs. Every 10 s it
// samples both daemons' RSS, goroutines and threads and both tables'
// sizes. After a 5-minute warm-up the memory must be flat (RSS slope
// under 1 MiB per 10 minutes, judged over 10 minutes at least: see
// judgeSoak) and the goroutines constant (spread at most 5); at the end fw2's table must equal fw1's, every live flow must have
// survived and neither node may have changed state.
//
// It runs only when asked: CTHA_SOAK=1 (30 minutes) or
// CTHA_SOAK_DURATION=D; CTHA_SOAK_WARMUP=D shortens the warm-up (by
// default 5 minutes, at most a third of the soak).
func TestSoak(t *testing.T) {
	duration, warmup := soakSettingsFromEnv(t)
	lab.RequireNetns(t)
	if dl, ok := t.Deadline(); ok && time.Until(dl) < duration+10*time.Minute {
		t.Fatalf("a %v soak needs -timeout of at least %v (make soak SOAK_TIMEOUT=...)", duration, duration+10*time.Minute)
	}
	t.Logf("soak: %v, warm-up %v; %d entries standing in fw1, %d created and %d deleted per second, %d live flows",
		duration, warmup, soakStanding, soakPerTick*int(time.Second/soakTick), soakPerTick*int(time.Second/soakTick), rigFlows)

	r := newRigLab(t, "direct")
	r.env = []string{soakGODEBUG}
	r = newFailRigIn(t, r, true, 0)
	c1 := dialCT(t, r.l.NS(lab.RoleFW1))
	c2 := dialCT(t, r.l.NS(lab.RoleFW2))
	ch := &churn{c: c1}
	writeFlows(t, c1, kernel.Create, ch.fill(soakStanding))
	r.waitPeerHolds(lab.RoleFW2, soakStanding, 60*time.Second)
	r.background = soakStanding
	// The flows outlive the churn by a little: they end on their own
	// while the pair settles.
	r.startFlows(duration + 10*time.Second)

	p := newSoakProbe(t, r)
	before := [2]ctsync.Stats{syncStats(t, p.nodes[0]), syncStats(t, p.nodes[1])}
	transitions := r.transitions()
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range p.nodes {
				t.Logf("%s's log without the scheduler traces, the last %d lines:\n%s", n.role, soakLogLines, withoutTraces(n.proc.Log(), soakLogLines))
			}
		}
	})
	samples := []soakSample{p.sample(0, ch)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var churnErr error
	go func() {
		defer close(done)
		churnErr = ch.run(ctx)
	}()
	stopChurn := func() error {
		cancel()
		<-done
		return churnErr
	}
	t.Cleanup(func() { stopChurn() })
	start := time.Now()
	t.Log(soakHeader)
	t.Log(samples[0].row(nil))
	tick := time.NewTicker(soakRSSEvery)
	defer tick.Stop()
	for next := start.Add(soakSampleEvery); time.Since(start) < duration; {
		select {
		case <-tick.C:
		case <-done:
			t.Fatalf("churn stopped after %v: %v", time.Since(start).Round(time.Second), churnErr)
		}
		p.watchRSS()
		if time.Now().Before(next) {
			continue
		}
		next = next.Add(soakSampleEvery)
		s := p.sample(time.Since(start), ch)
		t.Log(s.row(&samples[len(samples)-1]))
		samples = append(samples, s)
	}
	if err := stopChurn(); err != nil {
		t.Fatalf("churn: %v", err)
	}
	elapsed := time.Since(start)
	rate := float64(ch.created.Load()-soakStanding) / elapsed.Seconds()
	t.Logf("churn stopped after %v: %d created, %d deleted (%.0f creates/s, target %d); %d ticks late",
		elapsed.Round(time.Second), ch.created.Load()-soakStanding, ch.deleted.Load(), rate,
		soakPerTick*int(time.Second/soakTick), ch.late.Load())

	o := r.finish(lab.RoleFW1, time.Time{}) // no failover: nothing to wait for
	settled := time.Now()
	if err := soakTablesEqual(t, c1, c2, ch.window(), 90*time.Second); err != nil {
		t.Error(err)
	} else {
		t.Logf("fw2's kernel equal to fw1's %.1f s after the flows ended", time.Since(settled).Seconds())
	}
	samples = append(samples, p.sample(time.Since(start), ch))

	t.Logf("soak samples (RSS in KiB, read at the sample and its floor: the least of the readings every %v since the sample before; goroutines, the runtime's own included, from its schedtrace; OS threads; "+
		"conntrack entries; fw1's own and fw2's peer cache entries; churn creates/s); warm-up %v, last row after the end:\n%s",
		soakRSSEvery, warmup, soakTableText(samples, warmup))
	for i, n := range p.nodes {
		s, b := syncStats(t, n), before[i]
		t.Logf("%s sync counters over the soak: events %d, records applied %d, kernel writes %d (%d failed), "+
			"netlink overruns %d, resyncs %d, messages resent %d, NACK rounds sent %d; drops %v",
			n.role, s.Events-b.Events, s.Records-b.Records, s.KernelWrites-b.KernelWrites, s.KernelFailures-b.KernelFailures,
			s.Overruns-b.Overruns, s.Resyncs-b.Resyncs, s.Protocol.Resent-b.Protocol.Resent, s.Protocol.NacksSent-b.Protocol.NacksSent, s.Drops)
	}
	t.Logf("live flows: %d/%d survived, %d errored, longest gap %.0f ms; fw1 dropped %d packets as INVALID",
		o.Survived, o.Flows, o.Errored, o.LongestGapMs, o.invalid)
	t.Logf("live flows' longest gaps: p50 %.0f ms, max %.0f ms, from %v after the churn began",
		o.GapsMs.P50, o.GapsMs.Max, soakLongestGapStart(o.PerFlow).Sub(start).Round(time.Millisecond))
	if i := slices.IndexFunc(o.PerFlow, func(f flowgen.FlowReport) bool { return !f.Survived }); i >= 0 {
		f := o.PerFlow[i]
		why := "went silent"
		if f.Error != "" {
			why = fmt.Sprintf("%q %v after the churn began", f.Error, f.ErrorAt.Sub(start).Round(time.Millisecond))
		}
		t.Logf("the first live flow lost: %d (%s): %s; its longest gap %.0f ms from %v after the churn began",
			f.ID, f.Local, why, f.LongestGapMs, f.LongestGapStart.Sub(start).Round(time.Millisecond))
	}
	for _, n := range p.nodes {
		if w := warnings(n.proc.Log()); w != "" {
			t.Logf("%s logged (warnings and errors, the number of times):\n%s", n.role, w)
		}
	}
	r.expectTransitions(transitions, "the soak")
	judgeSoak(t, duration, warmup, samples[:len(samples)-1])
	if o.Flows != rigFlows || o.Survived != o.Flows {
		t.Errorf("%d of %d live flows survived, want all %d", o.Survived, o.Flows, rigFlows)
	}
}

// soakLongestGapStart is when the longest gap of any flow began.
func soakLongestGapStart(flows []flowgen.FlowReport) time.Time {
	var longest flowgen.FlowReport
	for _, f := range flows {
		if f.LongestGapMs > longest.LongestGapMs {
			longest = f
		}
	}
	return longest.LongestGapStart
}

// judgeSoak fails the test unless both daemons' RSS and goroutines were
// flat in the samples after the warm-up, and logs the figures. The RSS
// judged is the floor between samples: each reconciling dump of the
// table (every minute on the master, after every large write on the
// backup) lifts RSS by 10 MiB or more for a few seconds, and whether a
// 10-s reading falls on one is chance, which can make or break the
// slope of the readings on a short soak; memory kept raises the floor as
// well. The slope of the readings is logged beside it.
func judgeSoak(t *testing.T, duration, warmup time.Duration, samples []soakSample) {
	t.Helper()
	after := slices.DeleteFunc(slices.Clone(samples), func(s soakSample) bool { return s.at < warmup })
	if len(after) < 6 {
		t.Fatalf("%d samples after the warm-up: too few to judge (a longer soak or a shorter CTHA_SOAK_WARMUP)", len(after))
	}
	for i, role := range []string{lab.RoleFW1, lab.RoleFW2} {
		var xs, ys, xr, yr []float64
		lo, hi, counted := math.MaxInt, math.MinInt, 0
		for _, s := range after {
			if s.floor[i] >= 0 { // -1: not read
				xs, ys = append(xs, s.at.Seconds()), append(ys, float64(s.floor[i]))
			}
			if s.rss[i] >= 0 {
				xr, yr = append(xr, s.at.Seconds()), append(yr, float64(s.rss[i]))
			}
			if g := s.goroutines[i]; g >= 0 { // -1: the daemon's first trace was not complete yet
				lo, hi, counted = min(lo, g), max(hi, g), counted+1
			}
		}
		if len(xs) < len(after)/2 || len(xr) < 2 {
			t.Errorf("%s: RSS read in %d of %d samples after the warm-up", role, len(xs), len(after))
			continue
		}
		perTen := slope(xs, ys) * 600
		t.Logf("figure: soak %v, %s: RSS floor slope %+.0f KiB per 10 min after the warm-up (%d samples, %.0f -> %.0f KiB; "+
			"slope of the 10-s readings %+.0f KiB per 10 min); goroutines %d..%d (spread %d, %d samples)",
			duration, role, perTen, len(xs), ys[0], ys[len(ys)-1], slope(xr, yr)*600, lo, hi, hi-lo, counted)
		switch window := after[len(after)-1].at - after[0].at; {
		case window < soakRSSWindow:
			t.Logf("%s: RSS not judged: %v of samples after the warm-up, under the %v needed", role, window.Round(time.Second), soakRSSWindow)
		case perTen >= soakRSSLimit:
			t.Errorf("%s: RSS (floor) grows %.0f KiB per 10 minutes after the warm-up, want under %d", role, perTen, soakRSSLimit)
		}
		switch {
		case counted < len(after)/2:
			t.Errorf("%s: a goroutine count in %d of %d samples after the warm-up (GODEBUG schedtrace missing from its log?)", role, counted, len(after))
		case hi-lo > soakGoroutineSpread:
			t.Errorf("%s: goroutines vary from %d to %d after the warm-up, want a spread of at most %d", role, lo, hi, soakGoroutineSpread)
		}
	}
}

// soakSettingsFromEnv returns the soak's length and warm-up, and skips
// the test unless the environment asks for a soak.
func soakSettingsFromEnv(t *testing.T) (duration, warmup time.Duration) {
	t.Helper()
	duration = soakDefault
	d := os.Getenv("CTHA_SOAK_DURATION")
	switch {
	case d != "":
		var err error
		if duration, err = time.ParseDuration(d); err != nil || duration < time.Minute {
			t.Fatalf("CTHA_SOAK_DURATION=%q: want a duration of at least 1m", d)
		}
	case os.Getenv("CTHA_SOAK") != "1":
		t.Skip("the soak runs only when asked: make soak, CTHA_SOAK=1 or CTHA_SOAK_DURATION=30m")
	}
	warmup = min(soakWarmup, duration/3)
	if w := os.Getenv("CTHA_SOAK_WARMUP"); w != "" {
		var err error
		if warmup, err = time.ParseDuration(w); err != nil || warmup < 0 || warmup >= duration {
			t.Fatalf("CTHA_SOAK_WARMUP=%q: want a duration shorter than the soak (%v)", w, duration)
		}
	}
	return duration, warmup
}

// churn keeps a window of soak flows in a table: fill creates the first
// ones, run replaces the oldest by new ones at the soak's rate.
type churn struct {
	c          *kernel.Conn
	tail, head int // the window: flows tail..head-1 (soakFlow); run's own while it runs

	created, deleted atomic.Int64
	late             atomic.Int64 // ticks whose writes took longer than a tick
}

// soakFlow is flow k of the churn: the mixed flows of sets 0 to 9, in
// turn, 1.25M different ones before they come round again.
func soakFlow(k int) ct.Flow { return mixedFlow(k/125_000%10, k%125_000) }

func soakFlows(from, to int) []ct.Flow {
	out := make([]ct.Flow, 0, to-from)
	for k := from; k < to; k++ {
		out = append(out, soakFlow(k))
	}
	return out
}

// fill returns the first n flows, which the caller creates, and makes
// them the window.
func (c *churn) fill(n int) []ct.Flow {
	c.tail, c.head = 0, n
	c.created.Add(int64(n))
	return soakFlows(0, n)
}

// window returns the flows of the window.
func (c *churn) window() []ct.Flow { return soakFlows(c.tail, c.head) }

// run creates soakPerTick new flows and deletes the oldest soakPerTick
// every soakTick until ctx is done. It returns the first failure. A tick's
// writes are not interrupted, so that the window stays what the table
// holds.
func (c *churn) run(ctx context.Context) error {
	tick := time.NewTicker(soakTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		began := time.Now()
		if err := c.write(kernel.Create, &c.head, &c.created); err != nil {
			return err
		}
		if err := c.write(kernel.Delete, &c.tail, &c.deleted); err != nil {
			return err
		}
		if time.Since(began) > soakTick {
			c.late.Add(1)
		}
	}
}

// write applies op to the soakPerTick flows from *next on and moves
// *next past them.
func (c *churn) write(op kernel.Op, next *int, count *atomic.Int64) error {
	flows := soakFlows(*next, *next+soakPerTick)
	res, err := c.c.Write(context.Background(), op, flows, kernel.WriteOptions{BatchSize: soakPerTick})
	if err != nil || res.OK != len(flows) {
		first := any(nil)
		if len(res.Failed) > 0 {
			first = res.Failed[0]
		}
		return fmt.Errorf("%v flows %d..%d: %d OK, %d failed (the first: %v): %v",
			op, *next, *next+soakPerTick-1, res.OK, len(res.Failed), first, err)
	}
	*next += soakPerTick
	count.Add(soakPerTick)
	return nil
}

// firewallAddrs are the firewalls' own addresses: their flows (VRRP,
// IGMP, anything of their own) are not the pair's to replicate.
var firewallAddrs = append(lab.HostAddrs(lab.RoleFW1), lab.HostAddrs(lab.RoleFW2)...)

// soakTable is dumpTable without the firewalls' own flows.
func soakTable(t *testing.T, c *kernel.Conn) map[ct.Key]ct.Flow {
	t.Helper()
	m := dumpTable(t, c)
	for k, f := range m {
		for _, a := range []netip.Addr{f.Orig.SrcAddr(), f.Orig.DstAddr(), f.Reply.SrcAddr(), f.Reply.DstAddr()} {
			if slices.ContainsFunc(firewallAddrs, func(p netip.Prefix) bool { return p.Addr() == a }) {
				delete(m, k)
				break
			}
		}
	}
	return m
}

// isLiveFlow tells the rig's live flows (client to server, port 5001).
func isLiveFlow(f *ct.Flow) bool {
	return f.Orig.Proto == ct.ProtoTCP && f.Orig.SrcAddr() == lab.ClientAddr.Addr() &&
		f.Orig.DstAddr() == lab.ServerAddr.Addr() && f.Orig.DstPort == 5001
}

// soakTablesEqual checks that fw1's table holds the churn's window (and
// the live flows' entries) and waits until fw2's equals it; it returns
// the differences if it does not within timeout.
func soakTablesEqual(t *testing.T, c1, c2 *kernel.Conn, window []ct.Flow, timeout time.Duration) error {
	t.Helper()
	own := soakTable(t, c1)
	churned := filterFlows(own, func(f *ct.Flow) bool { return !isLiveFlow(f) })
	checkWritten(t, "fw1's kernel", window, churned)
	t.Logf("fw1's table: the %d churned entries, %d of the live flows", len(churned), len(own)-len(churned))
	var d []string
	err := lab.WaitFor(timeout, time.Second, func() (bool, error) {
		d = tableDiff(soakTable(t, c1), soakTable(t, c2), true, 10)
		return len(d) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("fw2's kernel vs fw1's after the soak: not equal after %v:\n%s", timeout, strings.Join(d, "\n"))
	}
	return nil
}

// filterFlows returns the flows of m that keep says.
func filterFlows(m map[ct.Key]ct.Flow, keep func(*ct.Flow) bool) map[ct.Key]ct.Flow {
	out := map[ct.Key]ct.Flow{}
	for k, f := range m {
		if keep(&f) {
			out[k] = f
		}
	}
	return out
}
