package integration

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/integration/bench"
	"github.com/ctha/ctha/integration/lab"
)

// haNode is one firewall of a stack under benchmark: a ctha daemon, or
// keepalived with conntrackd and primary-backup.sh's notify steps.
type haNode struct {
	stack string // one of bench.Stacks' IDs
	role  string
	ctha  *node
	ctd   *lab.Conntrackd
	ka    *lab.Proc
	dir   string // the baseline's notify markers
	lab   *lab.Lab
}

// haOpts set up a failover pair.
type haOpts struct {
	advert time.Duration
}

// rtPriority is the realtime priority of the stacks that run one:
// ctha-rt's timing thread, the best-configured baseline's keepalived
// (vrrp_rt_priority) and conntrackd (Scheduler FIFO).
const rtPriority = 50

// notifyScript runs the steps of conntrackd's primary-backup.sh (Debian's
// /usr/share/doc/conntrackd/examples/sync/primary-backup.sh) against the
// daemon's own config, then records when it finished.
const notifyScript = `#!/bin/sh
C="conntrackd -C %s"
case "$1" in
primary)
	$C -c; $C -f; $C -R; $C -B ;;
backup)
	$C -n; $C -t ;;
fault)
	$C -t ;;
esac
date +%%s.%%N > %s/"$1".done
`

// notifyScriptDirect is primary-backup.sh for conntrackd with
// DisableExternalCache On, where the peer's states go straight into the
// kernel table. It leaves out the steps that act on an external cache:
// -c (commit; conntrackd 1.4.7 accepts it and does nothing) and -t, which
// schedules a flush of the kernel table PurgeTimeout later unless a
// commit cancels it: without an external cache that table holds the
// replicated states, so the flush would delete them on a backup. What
// remains: the new master flushes its caches, resyncs its internal cache
// with the kernel (which now owns the peer's states) and sends a bulk
// update; a new backup asks the master for a resync.
const notifyScriptDirect = `#!/bin/sh
C="conntrackd -C %s"
case "$1" in
primary)
	$C -f; $C -R; $C -B ;;
backup)
	$C -n ;;
esac
date +%%s.%%N > %s/"$1".done
`

// isCtha reports whether stack runs ctha rather than keepalived and
// conntrackd.
func isCtha(stack string) bool { return stack == bench.Ctha || stack == bench.CthaRT }

// baselineSetup is how a keepalived + conntrackd stack configures its
// daemons.
type baselineSetup struct {
	ctd    lab.ConntrackdConfig
	script string // notify script template: conntrackd's config, marker dir
	rtPrio int    // keepalived vrrp_rt_priority, 0 for none
	noSwap bool   // keepalived vrrp_no_swap
}

// baselineOf returns the setup of a baseline stack: bench.Baseline as
// documented (external cache, primary-backup.sh), bench.Direct with
// DisableExternalCache On, bench.Best as Direct plus conntrackd's
// Scheduler FIFO and keepalived's vrrp_rt_priority and vrrp_no_swap.
func baselineOf(tb testing.TB, stack string) baselineSetup {
	switch stack {
	case bench.Baseline:
		return baselineSetup{script: notifyScript}
	case bench.Direct:
		return baselineSetup{ctd: lab.ConntrackdConfig{DisableExternalCache: true}, script: notifyScriptDirect}
	case bench.Best:
		return baselineSetup{ctd: lab.ConntrackdConfig{DisableExternalCache: true, SchedulerFIFO: rtPriority},
			script: notifyScriptDirect, rtPrio: rtPriority, noSwap: true}
	}
	tb.Fatalf("stack %q is not a keepalived + conntrackd stack", stack)
	return baselineSetup{}
}

// cthaConfig is examples/ROLE.hcl with the advert interval set and, for
// bench.CthaRT, the timing thread at realtime priority.
func cthaConfig(tb testing.TB, stack, role string, advert time.Duration) string {
	tb.Helper()
	conf := exampleConfig(tb, role+".hcl")
	if !strings.Contains(conf, `advert_interval = "1s"`) {
		tb.Fatalf("examples/%s.hcl: no advert_interval = \"1s\" to replace", role)
	}
	conf = strings.ReplaceAll(conf, `advert_interval = "1s"`, fmt.Sprintf("advert_interval = %q", advert.String()))
	if stack == bench.CthaRT {
		conf = fmt.Sprintf("realtime_priority = %d\n", rtPriority) + conf
	}
	return conf
}

// startHA starts one node of stack in role: ctha with the example
// configuration (direct cache; bench.CthaRT with its timing thread
// realtime), or conntrackd (FTFW over UDP on the sync link, configured
// by baselineOf) and keepalived with a vrrp_sync_group whose notify
// scripts run primary-backup.sh's steps. Priorities: fw1 150, fw2 100.
func startHA(tb testing.TB, l *lab.Lab, stack, role string, o haOpts) *haNode {
	tb.Helper()
	n := &haNode{stack: stack, role: role, dir: tb.TempDir(), lab: l}
	prio := map[string]int{lab.RoleFW1: 150, lab.RoleFW2: 100}[role]
	if isCtha(stack) {
		n.ctha = startNode(tb, l, role, cthaConfig(tb, stack, role, o.advert))
		return n
	}
	setup := baselineOf(tb, stack)
	n.ctd = l.StartConntrackd(tb, role, setup.ctd)
	script := filepath.Join(n.dir, "primary-backup.sh")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(setup.script, n.ctd.ConfigPath, n.dir)), 0o755); err != nil {
		tb.Fatal(err)
	}
	var ins []lab.KeepalivedInstance
	for i, in := range []struct {
		name string
		vip  netip.Prefix
	}{{"lan", lab.LANVIP}, {"wan", lab.WANVIP}} {
		ins = append(ins, lab.KeepalivedInstance{Name: in.name, Interface: in.name, VRID: 51 + i, Priority: prio,
			Version: 3, AdvertInterval: o.advert, VIPs: []netip.Prefix{in.vip}})
	}
	n.ka = l.StartKeepalived(tb, role, lab.KeepalivedConfig{Instances: ins, SyncGroup: "fw",
		NotifyMaster: script + " primary", NotifyBackup: script + " backup", NotifyFault: script + " fault",
		RealtimePriority: setup.rtPrio, NoSwap: setup.noSwap})
	return n
}

// kill crashes the node's daemons (SIGKILL to their process groups).
func (n *haNode) kill() {
	if n.ctha != nil {
		n.ctha.proc.Kill()
		return
	}
	n.ka.Kill()
	n.ctd.Kill()
}

// done returns when the baseline's notify script for state ("primary",
// "backup") last finished, zero if it has not.
func (n *haNode) done(state string) time.Time {
	b, err := os.ReadFile(filepath.Join(n.dir, state+".done"))
	if err != nil {
		return time.Time{}
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	if err != nil {
		return time.Time{}
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9))
}

// waitSettled waits until the node is master (VIPs present and, for the
// baseline, its primary script done) or backup (group BACKUP, or the
// backup script done).
func (n *haNode) waitSettled(tb testing.TB, l *lab.Lab, master bool, timeout time.Duration) {
	tb.Helper()
	if master {
		if _, err := waitVIPs(l, n.role, time.Now(), timeout); err != nil {
			tb.Fatalf("%s %s: %v\n%s", n.stack, n.role, err, n.tail())
		}
	}
	state := map[bool]string{true: "primary", false: "backup"}[master]
	err := lab.WaitFor(timeout, 20*time.Millisecond, func() (bool, error) {
		if n.ctha != nil {
			return n.ctha.states()["group:fw"] == map[bool]string{true: "MASTER", false: "BACKUP"}[master], nil
		}
		return !n.done(state).IsZero(), nil
	})
	if err != nil {
		tb.Fatalf("%s %s not %s: %v\n%s", n.stack, n.role, state, err, n.tail())
	}
}

func (n *haNode) tail() string {
	if n.ctha != nil {
		return n.ctha.proc.Tail(30)
	}
	return n.ka.Tail(30) + "\n" + n.ctd.Tail(10)
}

// entries returns the node's internal (its own) and external (the
// peer's) cache sizes. conntrackd with DisableExternalCache has no
// external cache and its inject counters miss the states it created
// through an update: external is then the size of the node's kernel
// table, which holds the peer's states (and any of its own).
func (n *haNode) entries() (internal, external int, err error) {
	if n.ctha != nil {
		s, err := syncStatus(n.ctha)
		return s.InternalEntries, s.ExternalEntries, err
	}
	out, err := n.ctd.Ctl("-s")
	if err != nil {
		return 0, 0, err
	}
	internal, external, err = conntrackdCacheSizes(out)
	if err != nil || !strings.Contains(out, "external inject:") {
		return internal, external, err
	}
	c, err := n.lab.Exec(n.role, "cat", "/proc/sys/net/netfilter/nf_conntrack_count")
	if err != nil {
		return 0, 0, err
	}
	external, err = strconv.Atoi(strings.TrimSpace(c))
	return internal, external, err
}

var (
	ctdCache  = regexp.MustCompile(`(?s)cache (internal|external):\s*current active connections:\s*(\d+)`)
	ctdInject = regexp.MustCompile(`(?s)external inject:\s*connections created:\s*(\d+).*?connections destroyed:\s*(\d+)`)
)

// conntrackdCacheSizes parses `conntrackd -s`. With DisableExternalCache
// there is no external cache: external is then the states injected into
// the kernel table (created minus destroyed).
func conntrackdCacheSizes(out string) (internal, external int, err error) {
	found := 0
	for _, m := range ctdCache.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.Atoi(m[2])
		found++
		if m[1] == "internal" {
			internal = v
		} else {
			external = v
		}
	}
	if m := ctdInject.FindStringSubmatch(out); m != nil && found == 1 {
		created, _ := strconv.Atoi(m[1])
		destroyed, _ := strconv.Atoi(m[2])
		external = created - destroyed
		found++
	}
	if found < 2 {
		return 0, 0, fmt.Errorf("conntrackd -s: no cache sizes in %q", out)
	}
	return internal, external, nil
}

// waitCache waits until the node's internal or external cache holds at
// least want entries.
func (n *haNode) waitCache(tb testing.TB, external bool, want int, timeout time.Duration) {
	tb.Helper()
	var in, ex int
	err := lab.WaitFor(timeout, 50*time.Millisecond, func() (bool, error) {
		var err error
		in, ex, err = n.entries()
		if external {
			return err == nil && ex >= want, err
		}
		return err == nil && in >= want, err
	})
	if err != nil {
		tb.Fatalf("%s %s: cache (external %v) not at %d: internal %d, external %d: %v\n%s\n%s", n.stack, n.role, external, want, in, ex, err, n.stats(), n.tail())
	}
}

// waitVIPs polls until both VIPs are on role's interfaces and returns how
// long that took from start.
func waitVIPs(l *lab.Lab, role string, start time.Time, timeout time.Duration) (time.Duration, error) {
	for _, v := range []struct {
		iface string
		vip   netip.Addr
	}{{"lan", lab.LANVIP.Addr()}, {"wan", lab.WANVIP.Addr()}} {
		if _, err := waitVIP(l, role, v.iface, v.vip, true, start, timeout); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// benchCT opens a ctnetlink connection in namespace ns, closed with tb.
func benchCT(tb testing.TB, ns string) *kernel.Conn {
	tb.Helper()
	var c *kernel.Conn
	if err := inNS(ns, func() (err error) { c, err = kernel.Dial(); return err }); err != nil {
		tb.Fatalf("ctnetlink in %s: %v", ns, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// benchWrite creates (or deletes) flows and fails on any failure.
func benchWrite(tb testing.TB, c *kernel.Conn, op kernel.Op, flows []ct.Flow) {
	tb.Helper()
	res, err := c.Write(context.Background(), op, flows, kernel.WriteOptions{BatchSize: 512})
	if err != nil {
		tb.Fatalf("%v %d flows: %v", op, len(flows), err)
	}
	if len(res.Failed) > 0 || res.OK != len(flows) {
		tb.Fatalf("%v %d flows: %d OK, %d failed, the first: %v", op, len(flows), res.OK, len(res.Failed), res.Failed[0])
	}
}

// estFlows returns n ESTABLISHED IPv4 TCP flows from 10.net.0.0/16 to
// 10.(net+1).0.0/16 (n <= 250000); flow i can be found back with
// estIndex.
func estFlows(net byte, n int) []ct.Flow {
	const (
		est   = ct.StatusConfirmed | ct.StatusSeenReply | ct.StatusAssured
		tcpWS = ct.TCPFlagWindowScale | ct.TCPFlagSACKPerm
	)
	out := make([]ct.Flow, 0, n)
	for i := range n {
		j, hi := i%62500, uint16(i/62500)
		a := byte(j / 250)
		b := byte(j%250 + 1)
		o := ct.NewTuple(ct.ProtoTCP, netip.AddrFrom4([4]byte{10, net, a, b}), netip.AddrFrom4([4]byte{10, net + 1, a, b}), 10000+hi, 443)
		out = append(out, ct.Flow{Orig: o, Reply: o.Reverse(), Status: est, Timeout: 3600,
			TCP: ct.TCPInfo{State: ct.TCPEstablished, WScaleOrig: 7, WScaleRepl: 8, FlagsOrig: tcpWS, FlagsRepl: tcpWS}})
	}
	return out
}

// estIndex returns i of estFlows(net, ...) for an original tuple, or -1.
func estIndex(net byte, o ct.Tuple) int {
	src := o.SrcAddr()
	if !src.Is4() || o.Proto != ct.ProtoTCP || o.DstPort != 443 {
		return -1
	}
	b := src.As4()
	if b[0] != 10 || b[1] != net || b[3] == 0 {
		return -1
	}
	return int(o.SrcPort-10000)*62500 + int(b[2])*250 + int(b[3]) - 1
}

// flushTable deletes every flow of ns's conntrack table (a lab
// firewall's), as a reboot does.
func flushTable(tb testing.TB, c *kernel.Conn) {
	tb.Helper()
	var flows []ct.Flow
	if err := c.Dump(context.Background(), func(f ct.Flow) bool { flows = append(flows, f); return true }); err != nil {
		tb.Fatalf("dump: %v", err)
	}
	if len(flows) > 0 {
		// A flow may end meanwhile: failures do not matter here.
		c.Write(context.Background(), kernel.Delete, flows, kernel.WriteOptions{BatchSize: 512})
	}
}

// procRSS is the resident set of a process in bytes (VmRSS).
func procRSS(tb testing.TB, pid int) int64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				tb.Fatalf("VmRSS of %d: %v", pid, err)
			}
			return kb * 1024
		}
	}
	tb.Fatalf("/proc/%d/status has no VmRSS", pid)
	return 0
}

// procCPU is the user+system CPU time of a process, from /proc/PID/stat.
func procCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		tb.Fatalf("/proc/%d/stat: %v %v", pid, err1, err2)
	}
	return time.Duration(u+st) * 10 * time.Millisecond // USER_HZ = 100
}

// syncBytes is the tx_bytes or rx_bytes counter of role's sync link.
func syncBytes(tb testing.TB, l *lab.Lab, role, counter string) int64 {
	tb.Helper()
	out, err := l.Exec(role, "cat", "/sys/class/net/sync/statistics/"+counter)
	if err != nil {
		tb.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// ctCount is the number of entries in role's conntrack table.
func ctCount(tb testing.TB, l *lab.Lab, role string) int {
	tb.Helper()
	out, err := l.Exec(role, "cat", "/proc/sys/net/netfilter/nf_conntrack_count")
	if err != nil {
		tb.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func TestConntrackdCacheSizes(t *testing.T) {
	const stats = "cache internal:\ncurrent active connections:\t%d\nconnections created:\t\t0\tfailed:\t0\n\n"
	tests := []struct {
		name               string
		out                string
		internal, external int
		wantErr            bool
	}{
		{name: "external cache",
			out:      fmt.Sprintf(stats, 3) + "cache external:\ncurrent active connections:\t       120\nconnections created:\t\t0\tfailed:\t0\n",
			internal: 3, external: 120},
		{name: "DisableExternalCache",
			out: fmt.Sprintf(stats, 0) + "external inject:\nconnections created:\t\t        1000\tfailed:\t           0\n" +
				"connections updated:\t\t           5\tfailed:\t           0\nconnections destroyed:\t\t          10\tfailed:\t           0\n",
			internal: 0, external: 990},
		{name: "internal only", out: fmt.Sprintf(stats, 3), wantErr: true},
		{name: "garbage", out: "can't connect", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, ex, err := conntrackdCacheSizes(tt.out)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if in != tt.internal || ex != tt.external {
				t.Errorf("got internal %d, external %d; want %d, %d", in, ex, tt.internal, tt.external)
			}
		})
	}
}

// stats is conntrackd's `-s` or ctha's sync status, for messages.
func (n *haNode) stats() string {
	if n.ctha != nil {
		s, err := syncStatus(n.ctha)
		return fmt.Sprintf("%+v %v", s, err)
	}
	out, err := n.ctd.Ctl("-s")
	return fmt.Sprintf("%s %v", out, err)
}
