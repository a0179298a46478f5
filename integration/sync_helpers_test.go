package integration

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/ctha/ctha/ctsync"
	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/integration/lab"
	"github.com/ctha/ctha/internal/control"
)

// syncOnlyConfig is a node that runs conntrack sync alone (no VRRP), as
// under another HA manager, over the lab's sync link.
func syncOnlyConfig(node, local, peer, cache, stateDir string) string {
	return fmt.Sprintf(`node_name = %q
state_dir = %q
log {
  level = "debug"
}
conntrack_sync {
  cache = %q
  link "sync0" {
    interface = "sync"
    local     = %q
    peer      = %q
  }
  auth_key_file = "sync.key"
}
`, node, stateDir, cache, local, peer)
}

// syncPair is two sync-only nodes on the lab's sync link, with the
// test's own ctnetlink connections into both firewalls' tables.
type syncPair struct {
	t        *testing.T
	lab      *lab.Lab
	fw1, fw2 *node
	cfg1     string
	cfg2     string
	c1, c2   *kernel.Conn // the test's connections in fw1 and fw2
}

// newSyncPair builds a lab and starts ctha with only conntrack_sync in
// fw1 and fw2 (cache1, cache2: "direct" or "external"); it returns once
// each sees the other up. setup, if not nil, runs on the lab first (e.g.
// to load loss rules).
func newSyncPair(t *testing.T, cache1, cache2 string, setup func(*lab.Lab)) *syncPair {
	t.Helper()
	l := lab.New(t, lab.Options{})
	if setup != nil {
		setup(l)
	}
	p := &syncPair{t: t, lab: l}
	p.cfg1 = syncOnlyConfig("fw1", lab.FW1Sync.Addr().String(), lab.FW2Sync.Addr().String(), cache1, filepath.Join(t.TempDir(), "state"))
	p.cfg2 = syncOnlyConfig("fw2", lab.FW2Sync.Addr().String(), lab.FW1Sync.Addr().String(), cache2, filepath.Join(t.TempDir(), "state"))
	p.fw1 = startNode(t, l, lab.RoleFW1, p.cfg1)
	p.fw2 = startNode(t, l, lab.RoleFW2, p.cfg2)
	p.waitPeers()
	p.c1 = dialCT(t, l.NS(lab.RoleFW1))
	p.c2 = dialCT(t, l.NS(lab.RoleFW2))
	return p
}

// waitPeers waits until both nodes see each other up and hold a complete
// copy of the other's table.
func (p *syncPair) waitPeers() {
	p.t.Helper()
	for _, n := range []*node{p.fw1, p.fw2} {
		err := lab.WaitFor(15*time.Second, 50*time.Millisecond, func() (bool, error) {
			s, err := syncStatus(n)
			if err != nil {
				return false, err
			}
			return s.PeerUp && s.BulkComplete, fmt.Errorf("peer_up %v, bulk_complete %v", s.PeerUp, s.BulkComplete)
		})
		if err != nil {
			p.t.Fatalf("%s: peer not up: %v", n.role, err)
		}
	}
}

// restartFW2 starts fw2's ctha again with its configuration and state
// directory (its epoch goes on from the saved one).
func (p *syncPair) restartFW2() {
	p.t.Helper()
	p.fw2 = startNode(p.t, p.lab, lab.RoleFW2, p.cfg2)
}

// inNS runs fn on an OS thread switched into the namespace ns; sockets
// opened there stay in it. The thread is switched back and only unlocked
// once it is verifiably back in its own namespace. It must not exit
// locked: the lab starts daemons with Pdeathsig, which follows the thread
// that forked them. If the way back fails, the goroutine parks for good on
// its locked thread.
func inNS(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread() // not switched yet
			errc <- fmt.Errorf("own namespace: %w", err)
			return
		}
		defer orig.Close()
		h, err := netns.GetFromName(ns)
		if err != nil {
			runtime.UnlockOSThread() // not switched yet
			errc <- fmt.Errorf("namespace %s: %w", ns, err)
			return
		}
		defer h.Close()
		var ferr error
		if ferr = netns.Set(h); ferr == nil {
			ferr = fn()
		} else {
			ferr = fmt.Errorf("enter namespace %s: %w", ns, ferr)
		}
		if err := netns.Set(orig); err == nil {
			if cur, err := netns.Get(); err == nil {
				back := cur.Equal(orig)
				cur.Close()
				if back {
					runtime.UnlockOSThread()
					errc <- ferr
					return
				}
			}
		}
		errc <- errors.Join(ferr, fmt.Errorf("could not leave namespace %s", ns))
		select {} // park the thread for good
	}()
	select {
	case err := <-errc:
		return err
	case <-time.After(10 * time.Second):
		return fmt.Errorf("namespace %s: no answer within 10s", ns)
	}
}

// dialCT opens a ctnetlink connection in the namespace ns, closed when
// the test ends. Its writes cause events that the node's ctha sees.
func dialCT(t *testing.T, ns string) *kernel.Conn {
	t.Helper()
	var c *kernel.Conn
	if err := inNS(ns, func() (err error) { c, err = kernel.Dial(); return err }); err != nil {
		t.Fatalf("ctnetlink in %s: %v", ns, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// writeFlows applies op to flows and fails the test on any failure.
func writeFlows(t *testing.T, c *kernel.Conn, op kernel.Op, flows []ct.Flow) {
	t.Helper()
	res, err := c.Write(context.Background(), op, flows, kernel.WriteOptions{BatchSize: 512})
	if err != nil {
		t.Fatalf("%v %d flows: %v", op, len(flows), err)
	}
	if len(res.Failed) > 0 || res.OK != len(flows) {
		t.Fatalf("%v %d flows: %d OK, %d failed, the first: %v", op, len(flows), res.OK, len(res.Failed), res.Failed[0])
	}
}

// mixedFlow returns flow i of test set set (0..9): 60% IPv4 TCP (some in
// CLOSE_WAIT), 10% IPv6 TCP, 15% UDP (one third IPv6), 5% ICMP and ICMPv6
// echo, 5% SNAT to the WAN VIP (reply to 10.10.2.1 on another port), 5%
// DNAT of the WAN VIP to a LAN server; one in 7 has a mark, one in 11 is
// in zone 7. Addresses are clients' and servers', never a firewall's: a
// node does not replicate flows of its own addresses. Every flow of every
// set has its own original and reply tuples (i < 125000).
func mixedFlow(set, i int) ct.Flow {
	j := i % 62500
	hi := uint16(i / 62500)
	v4 := func(net int) netip.Addr {
		return netip.AddrFrom4([4]byte{10, byte(net + set), byte(j / 250), byte(j%250 + 1)})
	}
	v6 := func(net int) netip.Addr {
		var b [16]byte
		b[0], b[1], b[3], b[5], b[7] = 0xfd, 0x00, 0x20, byte(set), byte(net)
		b[12], b[13], b[14], b[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)+1
		return netip.AddrFrom16(b)
	}
	const (
		est    = ct.StatusConfirmed | ct.StatusSeenReply | ct.StatusAssured
		natBit = ct.StatusSrcNATDone | ct.StatusDstNATDone
		tcpWS  = ct.TCPFlagWindowScale | ct.TCPFlagSACKPerm
	)
	tcp := func(o ct.Tuple) ct.Flow {
		f := ct.Flow{Orig: o, Reply: o.Reverse(), Status: est, Timeout: 3600 + uint32(i%3)*1800,
			TCP: ct.TCPInfo{State: ct.TCPEstablished, WScaleOrig: 7, WScaleRepl: 8, FlagsOrig: tcpWS, FlagsRepl: tcpWS}}
		if i%100 == 7 {
			f.TCP.State = ct.TCPCloseWait
		}
		return f
	}
	udp := func(o ct.Tuple) ct.Flow {
		return ct.Flow{Orig: o, Reply: o.Reverse(), Status: est, Timeout: 600}
	}
	var f ct.Flow
	switch k := i % 20; {
	case k < 12:
		f = tcp(ct.NewTuple(ct.ProtoTCP, v4(20), v4(30), 10000+hi, []uint16{443, 80, 22}[i%3]))
	case k < 14:
		f = udp(ct.NewTuple(ct.ProtoUDP, v4(20), v4(30), 10000+hi, []uint16{53, 123, 4500}[i%3]))
	case k == 14:
		f = udp(ct.NewTuple(ct.ProtoUDP, v6(20), v6(30), 10000+hi, 53))
	case k == 15:
		src, dst, req, rep := v4(20), v4(30), uint8(8), uint8(0)
		if i/20%2 == 1 {
			src, dst, req, rep = v6(20), v6(30), 128, 129
		}
		f = ct.Flow{Orig: ct.NewICMPTuple(src, dst, req, 0, uint16(i)), Reply: ct.NewICMPTuple(dst, src, rep, 0, uint16(i)),
			Status: ct.StatusConfirmed | ct.StatusSeenReply, Timeout: 300}
	case k < 18:
		f = tcp(ct.NewTuple(ct.ProtoTCP, v6(20), v6(30), 10000+hi, 443))
	case k == 18: // SNAT: a LAN client to an Internet server, masqueraded
		f = tcp(ct.NewTuple(ct.ProtoTCP, v4(20), v4(40), 10000+hi, 443))
		f.Reply.Dst = lab.WANVIP.Addr().As16()
		f.Reply.DstPort = 20000 + hi
		f.Status |= ct.StatusSrcNAT | natBit
	default: // DNAT: an Internet client to the WAN VIP, forwarded to a LAN server
		f = tcp(ct.NewTuple(ct.ProtoTCP, v4(60), lab.WANVIP.Addr(), 30000+hi, 8080))
		f.Reply.Src = netip.AddrFrom4([4]byte{10, 10, 1, byte(100 + i%50)}).As16()
		f.Reply.SrcPort = 80
		f.Status |= ct.StatusDstNAT | natBit
	}
	if i%7 == 3 {
		f.Mark = 0x10000 | uint32(i%4096) + 1
	}
	if i%11 == 5 {
		f.Zone = 7
	}
	return f
}

// mixedFlows returns flows from..to-1 of set.
func mixedFlows(set, from, to int) []ct.Flow {
	out := make([]ct.Flow, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, mixedFlow(set, i))
	}
	return out
}

// labSync are the sync links' prefixes: their own flows are not test flows.
var labSync = []netip.Prefix{netip.MustParsePrefix("10.10.3.0/24"), netip.MustParsePrefix("fd00:10:3::/64"),
	lab.FW1Sync2.Masked(), lab.FW1Sync26.Masked()}

// dumpTable dumps a table's flows, leaving out those of the sync link.
func dumpTable(t *testing.T, c *kernel.Conn) map[ct.Key]ct.Flow {
	t.Helper()
	m := map[ct.Key]ct.Flow{}
	err := c.Dump(context.Background(), func(f ct.Flow) bool {
		for _, p := range labSync {
			if p.Contains(f.Orig.SrcAddr()) || p.Contains(f.Orig.DstAddr()) {
				return true
			}
		}
		m[f.Key()] = f
		return true
	})
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	return m
}

// statusMask are the status bits a copy must have as the original has
// them: the kernel manages the others (CONFIRMED, DYING, ...) itself.
const statusMask = ct.StatusSeenReply | ct.StatusAssured | ct.StatusSrcNAT | ct.StatusDstNAT |
	ct.StatusSrcNATDone | ct.StatusDstNATDone | ct.StatusSeqAdjust | ct.StatusHelper

// timeoutTolerance is how far a copy's timeout may be from the
// original's: replicated timeouts are stale by nature.
const timeoutTolerance = 60

// flowDiff says how a peer's copy differs from the original in what must
// be replicated: both tuples (NAT), zone, mark, status bits, TCP state and
// window scales, and TCP flags (the copy may add BE_LIBERAL); the timeout
// within timeoutTolerance. "" if they match.
func flowDiff(want, got *ct.Flow, liberal bool) string {
	var d []string
	if want.Orig != got.Orig || want.Reply != got.Reply {
		d = append(d, fmt.Sprintf("tuples %v / %v, want %v / %v", got.Orig, got.Reply, want.Orig, want.Reply))
	}
	if want.Zone != got.Zone {
		d = append(d, fmt.Sprintf("zone %d, want %d", got.Zone, want.Zone))
	}
	if want.Mark != got.Mark {
		d = append(d, fmt.Sprintf("mark %#x, want %#x", got.Mark, want.Mark))
	}
	if want.Status&statusMask != got.Status&statusMask {
		d = append(d, fmt.Sprintf("status %#x, want %#x (mask %#x)", got.Status, want.Status, statusMask))
	}
	if want.Orig.Proto == ct.ProtoTCP {
		w, g := want.TCP, got.TCP
		if w.State != g.State || w.WScaleOrig != g.WScaleOrig || w.WScaleRepl != g.WScaleRepl {
			d = append(d, fmt.Sprintf("tcp %+v, want %+v", g, w))
		}
		if liberal && (g.FlagsOrig&ct.TCPFlagBeLiberal == 0 || g.FlagsRepl&ct.TCPFlagBeLiberal == 0) {
			d = append(d, fmt.Sprintf("tcp flags %#x/%#x without BE_LIBERAL", g.FlagsOrig, g.FlagsRepl))
		}
		// BE_LIBERAL is ours to set; MAXACK_SET is never written (the
		// td_maxack it vouches for cannot be).
		const aside = ct.TCPFlagBeLiberal | ct.TCPFlagMaxackSet
		if w.FlagsOrig&^aside != g.FlagsOrig&^aside || w.FlagsRepl&^aside != g.FlagsRepl&^aside {
			d = append(d, fmt.Sprintf("tcp flags %#x/%#x, want %#x/%#x (BE_LIBERAL and MAXACK_SET aside)", g.FlagsOrig, g.FlagsRepl, w.FlagsOrig, w.FlagsRepl))
		}
	}
	if diff := int64(want.Timeout) - int64(got.Timeout); diff > timeoutTolerance || diff < -timeoutTolerance {
		d = append(d, fmt.Sprintf("timeout %d, want %d ± %d", got.Timeout, want.Timeout, timeoutTolerance))
	}
	return strings.Join(d, "; ")
}

// tableDiff compares a peer's table with the original's: every flow of
// want must be in got, equal by flowDiff, and got must have no other. It
// returns the differences (at most max described).
func tableDiff(want, got map[ct.Key]ct.Flow, liberal bool, max int) []string {
	var d []string
	missing, extra, differ := 0, 0, 0
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			missing++
			if len(d) < max {
				d = append(d, fmt.Sprintf("missing: %v", &w))
			}
			continue
		}
		if s := flowDiff(&w, &g, liberal); s != "" {
			differ++
			if len(d) < max {
				d = append(d, fmt.Sprintf("differs: %v: %s", &w, s))
			}
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			extra++
			if len(d) < max {
				d = append(d, fmt.Sprintf("extra: %v", &g))
			}
		}
	}
	if missing+extra+differ > 0 {
		d = append([]string{fmt.Sprintf("%d missing, %d extra, %d differ (of %d)", missing, extra, differ, len(want))}, d...)
	}
	return d
}

// checkWritten checks that a table holds exactly the flows written (with
// the timeouts they were given, less what elapsed): the test's own sanity
// check before comparing nodes.
func checkWritten(t *testing.T, what string, flows []ct.Flow, got map[ct.Key]ct.Flow) {
	t.Helper()
	want := make(map[ct.Key]ct.Flow, len(flows))
	for _, f := range flows {
		want[f.Key()] = f
	}
	if d := tableDiff(want, got, false, 10); len(d) > 0 {
		t.Fatalf("%s does not hold the flows written:\n%s", what, strings.Join(d, "\n"))
	}
}

// waitTablesEqual waits until the peer's table (c2) equals the original
// (c1), comparing dumps, and fails the test with the differences if it
// does not within timeout.
func waitTablesEqual(t *testing.T, what string, c1, c2 *kernel.Conn, liberal bool, timeout time.Duration) map[ct.Key]ct.Flow {
	t.Helper()
	var d []string
	var want map[ct.Key]ct.Flow
	err := lab.WaitFor(timeout, 500*time.Millisecond, func() (bool, error) {
		want = dumpTable(t, c1)
		d = tableDiff(want, dumpTable(t, c2), liberal, 10)
		return len(d) == 0, nil
	})
	if err != nil {
		t.Fatalf("%s: not equal after %v:\n%s", what, timeout, strings.Join(d, "\n"))
	}
	return want
}

// syncStatus returns the node's sync status (`ctha status --json`).
func syncStatus(n *node) (control.SyncStatus, error) {
	st, err := n.status()
	if err != nil {
		return control.SyncStatus{}, err
	}
	if st.Sync == nil {
		return control.SyncStatus{}, errors.New("status has no sync")
	}
	return *st.Sync, nil
}

func mustSyncStatus(t *testing.T, n *node) control.SyncStatus {
	t.Helper()
	s, err := syncStatus(n)
	if err != nil {
		t.Fatalf("%s: %v", n.role, err)
	}
	return s
}

// syncStats returns the node's sync counters (`ctha stats --json`).
func syncStats(t *testing.T, n *node) ctsync.Stats {
	t.Helper()
	var st control.Stats
	if err := n.ctlJSON(&st, "stats", "--json"); err != nil {
		t.Fatalf("%s: %v", n.role, err)
	}
	if st.Sync == nil {
		t.Fatalf("%s: stats have no sync", n.role)
	}
	return *st.Sync
}

// waitEntries waits until the node's status shows internal and external
// entries satisfying ok.
func waitEntries(t *testing.T, n *node, timeout time.Duration, what string, ok func(s control.SyncStatus) bool) {
	t.Helper()
	var last control.SyncStatus
	err := lab.WaitFor(timeout, 100*time.Millisecond, func() (bool, error) {
		s, err := syncStatus(n)
		last = s
		return err == nil && ok(s), err
	})
	if err != nil {
		t.Fatalf("%s: %s: %v (internal %d, external %d, peer_up %v, bulk_complete %v)",
			n.role, what, err, last.InternalEntries, last.ExternalEntries, last.PeerUp, last.BulkComplete)
	}
}

// tableCount is the number of entries in role's conntrack table.
func tableCount(t *testing.T, l *lab.Lab, role string) int {
	t.Helper()
	out, err := l.Exec(role, "cat", "/proc/sys/net/netfilter/nf_conntrack_count")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("nf_conntrack_count of %s: %v", role, err)
	}
	return n
}

// cpuTicks is the user+system CPU time of a process in clock ticks
// (1/100 s).
func cpuTicks(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	// After the command: state is field 3, utime 14, stime 15.
	u, err1 := strconv.ParseInt(fields[11], 10, 64)
	st, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatalf("/proc/%d/stat: %v", pid, err)
	}
	return u + st
}

// linkBytes is the tx_bytes (or rx_bytes) counter of role's sync
// interface.
func linkBytes(t *testing.T, l *lab.Lab, role, counter string) int64 {
	t.Helper()
	out, err := l.Exec(role, "cat", "/sys/class/net/sync/statistics/"+counter)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// meter measures the CPU of both daemons and the bytes fw1 sends on the
// sync link over a phase.
type meter struct {
	p             *syncPair
	start         time.Time
	cpu1, cpu2    int64
	tx1, rx1, tx2 int64
}

func (p *syncPair) meter() *meter {
	return &meter{p: p, start: time.Now(),
		cpu1: cpuTicks(p.t, p.fw1.proc.Pid()), cpu2: cpuTicks(p.t, p.fw2.proc.Pid()),
		tx1: linkBytes(p.t, p.lab, lab.RoleFW1, "tx_bytes"), rx1: linkBytes(p.t, p.lab, lab.RoleFW1, "rx_bytes"),
		tx2: linkBytes(p.t, p.lab, lab.RoleFW2, "tx_bytes")}
}

// report logs the figures of the phase for n flows.
func (m *meter) report(what string, n int) {
	t := m.p.t
	el := time.Since(m.start)
	c1 := cpuTicks(t, m.p.fw1.proc.Pid()) - m.cpu1
	c2 := cpuTicks(t, m.p.fw2.proc.Pid()) - m.cpu2
	tx1 := linkBytes(t, m.p.lab, lab.RoleFW1, "tx_bytes") - m.tx1
	tx2 := linkBytes(t, m.p.lab, lab.RoleFW2, "tx_bytes") - m.tx2
	us := func(ticks int64) float64 { return float64(ticks) * 10000 / float64(n) }
	t.Logf("figure: %s: %d flows in %.2f s; CPU fw1 %.2f s (%.1f µs/flow), fw2 %.2f s (%.1f µs/flow); "+
		"sync link fw1 tx %d B (%.1f B/flow), fw2 tx %d B (%.1f B/flow)",
		what, n, el.Seconds(), float64(c1)/100, us(c1), float64(c2)/100, us(c2),
		tx1, float64(tx1)/float64(n), tx2, float64(tx2)/float64(n))
}
