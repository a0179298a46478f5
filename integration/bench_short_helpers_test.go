package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/flowgen"
	"github.com/ctha/ctha/integration/lab"
)

// notable returns the last 40 lines of a node's logs that say something
// about its state: ctha's warnings, errors and transitions; keepalived's
// state changes; conntrackd's warnings and errors.
func notable(n *haNode) string {
	var logs []string
	if n.ctha != nil {
		logs = append(logs, n.ctha.proc.Log())
	} else {
		logs = append(logs, n.ka.Log(), n.ctd.Log())
	}
	var lines []string
	for _, log := range logs {
		for _, line := range strings.Split(log, "\n") {
			if containsAny(line, "level=WARN", "level=ERROR", "transition", "taking over", "takeover",
				"Entering", "STATE", "ERROR", "WARNING", "overrun", "resync") {
				lines = append(lines, line)
			}
		}
	}
	if len(lines) > 40 {
		lines = append([]string{fmt.Sprintf("(%d lines before)", len(lines)-40)}, lines[len(lines)-40:]...)
	}
	return strings.Join(lines, "\n")
}

// realtimeElsewhere summarises the machine's realtime threads outside
// the cell's daemons: others' tests on a shared machine.
func realtimeElsewhere(nodes ...*haNode) string {
	ts, err := lab.RealtimeThreads()
	if err != nil {
		return err.Error()
	}
	own := map[int]bool{}
	for _, n := range nodes {
		if n.ctha != nil {
			own[n.ctha.proc.Pid()] = true
		} else {
			own[n.ka.Pid()], own[n.ctd.Pid()] = true, true
		}
	}
	var other []lab.ThreadSched
	for _, t := range ts {
		if !own[t.PGID] {
			other = append(other, t)
		}
	}
	if len(other) == 0 {
		return "none"
	}
	return lab.SchedSummary(other)
}

// haSched summarises the scheduling of every thread of a node's daemons.
func haSched(n *haNode) string {
	var procs []*lab.Proc
	if n.ctha != nil {
		procs = append(procs, n.ctha.proc)
	} else {
		procs = append(procs, n.ka, n.ctd.Proc)
	}
	var parts []string
	for _, p := range procs {
		ts, err := lab.GroupSched(p.Pid())
		if err != nil {
			parts = append(parts, fmt.Sprintf("%s: %v", p.Name, err))
			continue
		}
		parts = append(parts, lab.SchedSummary(ts))
	}
	return strings.Join(parts, "; ")
}

// gapAcross returns the longest gap of any flow that ended after t and
// began before t+1s (a gap the kill at t caused or lengthened; later ones
// are the machine's), when it began relative to t, and how many flows
// listed too many gaps for it to be sure. Gaps are those flowgen lists
// (over its -gap-threshold); none: 0.
func gapAcross(r flowgen.Report, t time.Time) (longest, began time.Duration, dropped int) {
	for _, f := range r.PerFlow {
		if f.GapsDropped > 0 {
			dropped++
		}
		for _, g := range f.Gaps {
			d := time.Duration(g.Ms * float64(time.Millisecond))
			if g.End.After(t) && g.Start.Before(t.Add(time.Second)) && d > longest {
				longest, began = d, g.Start.Sub(t)
			}
		}
	}
	return longest, began, dropped
}

// startFlowServer starts the flowgen server on the lab's server: one for
// every set of live flows of a cell.
func startFlowServer(tb testing.TB, l *lab.Lab) {
	tb.Helper()
	listening := filepath.Join(tb.TempDir(), "listening")
	srv := l.Start(tb, lab.RoleServer, "flowgen-server", flowgenBin, "server", "-listen", lab.ServerAddr.Addr().String()+":5001", "-ready", listening)
	if err := lab.WaitFor(5*time.Second, 10*time.Millisecond, func() (bool, error) {
		_, err := os.Stat(listening)
		return err == nil, nil
	}); err != nil {
		tb.Fatalf("flowgen server: %v\n%s", err, srv.Log())
	}
}

// startFlowsFor starts 200 live flows (as startFlows does) to the server
// of startFlowServer, for at most d, with more flowgen client flags.
func startFlowsFor(tb testing.TB, l *lab.Lab, d time.Duration, flags ...string) *liveFlows {
	tb.Helper()
	f, err := tryFlows(tb, l, d, flags...)
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// tryFlows is startFlowsFor that returns an error if the flows do not
// come up (within 15 s).
func tryFlows(tb testing.TB, l *lab.Lab, d time.Duration, flags ...string) (*liveFlows, error) {
	tb.Helper()
	dir := tb.TempDir()
	f := &liveFlows{stop: filepath.Join(dir, "stop"), report: filepath.Join(dir, "report.json")}
	ready := filepath.Join(dir, "ready")
	f.client = l.Start(tb, lab.RoleClient, "flowgen-client", append([]string{flowgenBin, "client",
		"-connect", lab.ServerAddr.Addr().String() + ":5001", "-flows", "200", "-interval", "50ms",
		"-duration", d.String(), "-ready", ready, "-stop-file", f.stop, "-json", f.report}, flags...)...)
	if err := lab.WaitFor(15*time.Second, 20*time.Millisecond, func() (bool, error) {
		_, err := os.Stat(ready)
		return err == nil, nil
	}); err != nil {
		return nil, fmt.Errorf("flows not up: %w\n%s", err, f.client.Tail(5))
	}
	return f, nil
}

// waitBackupHolds waits until fw2's kernel table holds as many entries
// as fw1's (both stacks write the peer's states into it): the fresh flows
// and the background entries replicated, the churn's deletions too. If
// it does not within timeout the crash goes on and the log says so.
func waitBackupHolds(tb testing.TB, l *lab.Lab, stack string, timeout time.Duration) bool {
	tb.Helper()
	var n1, n2 int
	err := lab.WaitFor(timeout, 100*time.Millisecond, func() (bool, error) {
		n1, n2 = ctCount(tb, l, lab.RoleFW1), ctCount(tb, l, lab.RoleFW2)
		return n2 >= n1-5 && n2 <= n1+5, nil
	})
	if err != nil {
		tb.Logf("%s: WARNING: fw2's table holds %d entries, fw1's %d", stack, n2, n1)
	}
	return err == nil
}

// waitPeerCache is haNode.waitCache (the peer's entries) that logs
// instead of failing: a baseline that does not replicate everything
// before the load still gets measured, with a warning.
func waitPeerCache(tb testing.TB, n *haNode, want int, timeout time.Duration) bool {
	tb.Helper()
	var in, ex int
	err := lab.WaitFor(timeout, 50*time.Millisecond, func() (bool, error) {
		var err error
		in, ex, err = n.entries()
		return err == nil && ex >= want, err
	})
	if err != nil {
		tb.Logf("%s %s: WARNING: the peer's entries not at %d: internal %d, external %d: %v", n.stack, n.role, want, in, ex, err)
	}
	return err == nil
}
