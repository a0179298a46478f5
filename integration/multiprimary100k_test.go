package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync"
	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/integration/lab"
	"github.com/ctha/ctha/internal/control"
)

// TestMultiprimary100k: three multiprimary nodes (mp3's groups, no live
// traffic); 100k mixed flows are created through ctnetlink, a third in
// each node's kernel (disjoint keys), all at once. Every kernel then
// holds all 100k, equal field by field; each node counts its own third
// as internal entries, the two others as external, and each peer's
// entries as that peer's third; a reconciling dump of the full table
// runs on every node (it refreshes the short-lived mirrors and adopts
// none) while a status polled every 200 ms never shows a peer down.
// Deleting each third in its own kernel empties all three kernels. It
// logs the times from the first create and from the first delete.
func TestMultiprimary100k(t *testing.T) {
	lab.RequireNetns(t)
	const n = 100_000
	c := mp3
	r := newMPCluster(t, c, lab.Options{NoIPv6: true, SplitVIPs: true, ThirdFirewall: true})
	k := mpDial(r, c)

	// Each node's third of the flows, disjoint key sets of one test set.
	own := map[string][]ct.Flow{}
	var all []ct.Flow
	for i, role := range c.nodes {
		own[role] = mixedFlows(0, i*n/len(c.nodes), (i+1)*n/len(c.nodes))
		all = append(all, own[role]...)
	}
	want := make(map[ct.Key]ct.Flow, len(all))
	for _, f := range all {
		want[f.Key()] = f
	}
	if len(want) != n {
		t.Fatalf("the test's flows have %d distinct keys, want %d", len(want), n)
	}
	base := map[string]int{}
	for _, role := range c.nodes {
		if left := mp100kTestFlows(dumpTable(t, k[role])); len(left) > 0 {
			t.Fatalf("%s's kernel holds %d flows of the test's address ranges before it began", role, len(left))
		}
		base[role] = tableCount(t, r.l, role)
	}
	before := map[string]ctsync.Stats{}
	for _, role := range c.nodes {
		before[role] = syncStats(t, r.nodes[role])
	}

	poll := r.mp100kPollPeers(c, 200*time.Millisecond)

	// Create: the three thirds at once, each in its node's kernel.
	start := time.Now()
	took := mp100kWrite(t, k, kernel.Create, own)
	err := lab.WaitFor(60*time.Second, 20*time.Millisecond, func() (bool, error) {
		for _, role := range c.nodes {
			if tableCount(t, r.l, role)-base[role] < n {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("the kernels do not all hold the %d flows after 60 s: %s", n, r.mp100kCounts(c, base))
	}
	counted := time.Since(start)
	equal := r.mp100kWaitEqual(c, k, want, 15*time.Second)
	t.Logf("figure: multiprimary 100k across 3 nodes: tables equal after %.2f s (every kernel counts 100k after %.2f s; creating the thirds took %s)",
		equal.Sub(start).Seconds(), counted.Seconds(), took)

	// The status of every node: its own third internal, the peers'
	// thirds external and per peer.
	for _, role := range c.nodes {
		r.mp100kCheckEntries(c, role, own, 10*time.Second)
	}

	// A mirror check (every 10 s; or a reconciling dump, every minute)
	// on every node, begun after the tables were equal and applied: it
	// refreshes the mirrors whose timeouts are under an hour (those of the
	// peers' UDP and ICMP flows) and adopts none, while the peers stay up.
	atEqual := map[string]ctsync.Stats{}
	for _, role := range c.nodes {
		atEqual[role] = syncStats(t, r.nodes[role])
	}
	var dumps []string
	for _, role := range c.nodes {
		short := 0
		for _, p := range c.peers(role) {
			for _, f := range own[p] {
				if f.Timeout < 3600 {
					short++
				}
			}
		}
		var last ctsync.Stats
		err := lab.WaitFor(25*time.Second, 100*time.Millisecond, func() (bool, error) {
			last = syncStats(t, r.nodes[role])
			return last.Refreshed-atEqual[role].Refreshed >= uint64(short), nil
		})
		if err != nil {
			t.Errorf("%s: no mirror check applied within 25 s of the tables being equal: "+
				"refreshed %d mirrors since, want at least %d; resyncs %d -> %d\n%s",
				role, last.Refreshed-atEqual[role].Refreshed, short, atEqual[role].Resyncs, last.Resyncs, r.nodes[role].proc.Tail(20))
			continue
		}
		dumps = append(dumps, fmt.Sprintf("%s +%.1f s (%d mirrors refreshed, %d dumps)", role,
			time.Since(equal).Seconds(), last.Refreshed-atEqual[role].Refreshed, last.Resyncs-atEqual[role].Resyncs))
	}
	t.Logf("mirror checks at 100k applied after the tables were equal: %s", strings.Join(dumps, ", "))

	// Delete: each third in its own kernel.
	delStart := time.Now()
	took = mp100kWrite(t, k, kernel.Delete, own)
	err = lab.WaitFor(60*time.Second, 20*time.Millisecond, func() (bool, error) {
		for _, role := range c.nodes {
			if tableCount(t, r.l, role) > base[role] {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("the kernels keep flows deleted in their node's kernel after 60 s: %s", r.mp100kCounts(c, base))
	}
	gone := time.Since(delStart)
	for _, role := range c.nodes {
		if left := mp100kTestFlows(dumpTable(t, k[role])); len(left) > 0 {
			t.Errorf("%s's kernel still holds %d of the test's flows", role, len(left))
		}
	}
	t.Logf("figure: multiprimary 100k across 3 nodes: every kernel empty of them %.2f s after the first delete (deleting the thirds took %s)",
		gone.Seconds(), took)
	for _, role := range c.nodes {
		waitEntries(t, r.nodes[role], 10*time.Second, "no internal or external entries", func(s control.SyncStatus) bool {
			return s.InternalEntries == 0 && s.ExternalEntries == 0
		})
	}

	res := poll.stop()
	t.Logf("figure: multiprimary 100k across 3 nodes: %s", res.summary())
	if len(res.problems) > 0 {
		t.Errorf("a status polled every 200 ms during the run showed a peer down or failed:\n%s", strings.Join(res.problems, "\n"))
	}
	for _, role := range c.nodes {
		s := syncStats(t, r.nodes[role])
		b := before[role]
		t.Logf("%s: stats kernel_writes %d, refreshed %d, adopted %d, stale_updates %d, resyncs %d, resent %d",
			role, s.KernelWrites-b.KernelWrites, s.Refreshed-b.Refreshed, s.Adopted-b.Adopted,
			s.StaleUpdates-b.StaleUpdates, s.Resyncs-b.Resyncs, s.Protocol.Resent-b.Protocol.Resent)
		if s.KernelFailures != 0 || s.Overruns != 0 || s.NATConflicts != 0 || s.Adopted != 0 {
			t.Errorf("%s: kernel_write_failures %d, netlink_overruns %d, nat_conflicts %d, adopted %d; want none",
				role, s.KernelFailures, s.Overruns, s.NATConflicts, s.Adopted)
		}
	}
}

// mp100kPrefixes are the address ranges of mixedFlows' set 0: a flow
// with an address in them is one of the test's.
var mp100kPrefixes = []netip.Prefix{
	netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("10.30.0.0/16"),
	netip.MustParsePrefix("10.40.0.0/16"), netip.MustParsePrefix("10.60.0.0/16"),
	netip.MustParsePrefix("fd00:20::/32"),
}

// mp100kTestFlows keeps the flows of table that are the test's (the
// kernels also track the nodes' adverts).
func mp100kTestFlows(table map[ct.Key]ct.Flow) map[ct.Key]ct.Flow {
	out := make(map[ct.Key]ct.Flow, len(table))
	for k, f := range table {
		for _, p := range mp100kPrefixes {
			if p.Contains(f.Orig.SrcAddr()) || p.Contains(f.Orig.DstAddr()) {
				out[k] = f
				break
			}
		}
	}
	return out
}

// mp100kWrite applies op to each node's flows in its kernel, the nodes
// at once, and fails the test on any failure. It returns how long each
// node's write took.
func mp100kWrite(t *testing.T, k mpKernels, op kernel.Op, flows map[string][]ct.Flow) string {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs, took []string
	for role, fs := range flows {
		wg.Go(func() {
			start := time.Now()
			res, err := k[role].Write(context.Background(), op, fs, kernel.WriteOptions{BatchSize: 512})
			d := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			took = append(took, fmt.Sprintf("%s %.2f s", role, d.Seconds()))
			switch {
			case err != nil:
				errs = append(errs, fmt.Sprintf("%s: %v %d flows: %v", role, op, len(fs), err))
			case len(res.Failed) > 0 || res.OK != len(fs):
				errs = append(errs, fmt.Sprintf("%s: %v %d flows: %d OK, %d failed, the first: %v", role, op, len(fs), res.OK, len(res.Failed), res.Failed[0]))
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(strings.Join(errs, "\n"))
	}
	return strings.Join(took, ", ")
}

// mp100kCounts says how many entries each node's kernel holds beyond
// base.
func (r *failRig) mp100kCounts(c mpCluster, base map[string]int) string {
	var s []string
	for _, role := range c.nodes {
		s = append(s, fmt.Sprintf("%s %d", role, tableCount(r.t, r.l, role)-base[role]))
	}
	return strings.Join(s, ", ")
}

// mp100kWaitEqual waits until the first node's kernel holds exactly the
// test's flows (want) and every other node's kernel the same, field by
// field (flowDiff, without BE_LIBERAL: each kernel holds its own flows as
// written). It returns when the dumps that showed it began.
func (r *failRig) mp100kWaitEqual(c mpCluster, k mpKernels, want map[ct.Key]ct.Flow, timeout time.Duration) time.Time {
	t := r.t
	t.Helper()
	var d []string
	var at time.Time
	err := lab.WaitFor(timeout, 200*time.Millisecond, func() (bool, error) {
		at = time.Now()
		first := mp100kTestFlows(dumpTable(t, k[c.nodes[0]]))
		d = tableDiff(want, first, false, 10)
		if len(d) > 0 {
			d[0] = fmt.Sprintf("%s's kernel vs the flows written: %s", c.nodes[0], d[0])
			return false, nil
		}
		for _, role := range c.nodes[1:] {
			d = tableDiff(first, mp100kTestFlows(dumpTable(t, k[role])), false, 10)
			if len(d) > 0 {
				d[0] = fmt.Sprintf("%s's kernel vs %s's: %s", role, c.nodes[0], d[0])
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("the kernels are not equal after %v:\n%s", timeout, strings.Join(d, "\n"))
	}
	return at
}

// mp100kCheckEntries waits until role's status counts its own flows as
// internal entries, its peers' as external, and each peer's as that
// peer's entries, with every peer up; it fails the test otherwise.
func (r *failRig) mp100kCheckEntries(c mpCluster, role string, own map[string][]ct.Flow, timeout time.Duration) {
	r.t.Helper()
	var problems []string
	var raw string
	err := lab.WaitFor(timeout, 200*time.Millisecond, func() (bool, error) {
		var st mpStatus
		st, raw = r.mpStatusOf(role)
		problems = problems[:0]
		if st.Sync == nil {
			problems = append(problems, "no sync status")
			return false, nil
		}
		s := st.Sync
		external := 0
		peers := c.peers(role)
		for _, p := range peers {
			external += len(own[p])
		}
		if s.InternalEntries != len(own[role]) || s.ExternalEntries != external {
			problems = append(problems, fmt.Sprintf("internal_entries %d, external_entries %d; want %d, %d",
				s.InternalEntries, s.ExternalEntries, len(own[role]), external))
		}
		if !s.PeerUp {
			problems = append(problems, "peer_up false")
		}
		if len(s.Peers) != len(peers) {
			problems = append(problems, fmt.Sprintf("%d peers, want %d", len(s.Peers), len(peers)))
			return false, nil
		}
		for i, p := range peers {
			got := s.Peers[i]
			if got.Node != p || !got.Up || got.Entries != len(own[p]) {
				problems = append(problems, fmt.Sprintf("peer %d: node %q up %v entries %d; want %s up with %d",
					i, got.Node, got.Up, got.Entries, p, len(own[p])))
			}
		}
		return len(problems) == 0, nil
	})
	if err != nil {
		r.t.Errorf("%s status after %v: %s\n%s", role, timeout, strings.Join(problems, "; "), raw)
	}
}

// mp100kPoll polls every node's status until stopped, recording each
// time a peer is not up (or the status cannot be read).
type mp100kPoll struct {
	cancel context.CancelFunc
	done   chan struct{}
	nodes  []string
	peers  map[string]int // how many peers each node lists

	// Written by the polling goroutine until done is closed.
	polls    map[string]int
	slowest  map[string]time.Duration
	problems []string
}

// mp100kPollPeers starts polling the status of c's nodes every interval.
func (r *failRig) mp100kPollPeers(c mpCluster, interval time.Duration) *mp100kPoll {
	ctx, cancel := context.WithCancel(context.Background())
	p := &mp100kPoll{cancel: cancel, done: make(chan struct{}), nodes: c.nodes,
		peers: map[string]int{}, polls: map[string]int{}, slowest: map[string]time.Duration{}}
	start := time.Now()
	sockets := map[string]string{}
	for _, role := range c.nodes {
		sockets[role] = r.nodes[role].socket
		p.peers[role] = len(c.peers(role))
	}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			for _, role := range c.nodes {
				p.pollOne(ctx, role, sockets[role], start)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	r.t.Cleanup(func() { p.stop() })
	return p
}

// pollOne reads role's status once.
func (p *mp100kPoll) pollOne(ctx context.Context, role, socket string, start time.Time) {
	at := time.Now()
	var st mpStatus
	err := control.Call(ctx, socket, "status", nil, &st)
	took := time.Since(at)
	if ctx.Err() != nil {
		return // stopped meanwhile
	}
	p.polls[role]++
	p.slowest[role] = max(p.slowest[role], took)
	when := fmt.Sprintf("+%.1f s %s", at.Sub(start).Seconds(), role)
	switch {
	case err != nil:
		p.problems = append(p.problems, fmt.Sprintf("%s: status: %v", when, err))
	case st.Sync == nil:
		p.problems = append(p.problems, when+": status has no sync")
	case len(st.Sync.Peers) != p.peers[role]:
		p.problems = append(p.problems, fmt.Sprintf("%s: %d peers listed, want %d", when, len(st.Sync.Peers), p.peers[role]))
	default:
		var down []string
		for _, peer := range st.Sync.Peers {
			if !peer.Up {
				b, _ := json.Marshal(peer)
				down = append(down, string(b))
			}
		}
		if !st.Sync.PeerUp || len(down) > 0 {
			p.problems = append(p.problems, fmt.Sprintf("%s: peer_up %v, peers down: %s", when, st.Sync.PeerUp, strings.Join(down, " ")))
		}
	}
}

// stop ends the polling and returns the poll; it may be called again.
func (p *mp100kPoll) stop() *mp100kPoll {
	p.cancel()
	<-p.done
	return p
}

// summary gives the polls and the slowest answer per node.
func (p *mp100kPoll) summary() string {
	var s []string
	for _, role := range p.nodes {
		s = append(s, fmt.Sprintf("%s %d polls, slowest %v", role, p.polls[role], p.slowest[role].Round(time.Millisecond)))
	}
	return "status during the run: " + strings.Join(s, "; ") + fmt.Sprintf("; %d showed a peer down or failed", len(p.problems))
}
