package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/integration/flowgen"
	"github.com/ctha/ctha/integration/lab"
)

// SNAT to a shared address in multiprimary (README "Multiprimary
// (active-active)", "SNAT to a shared address"): both nodes translate
// their clients' traffic to one address on the WAN side, each to its own
// port range, in its nft rule and in ctha's snat_port_range. Upstream, the
// server routes what it sends to the shared address by destination port:
// each range to the WAN VIP of the group whose master translates to it,
// so a flow's replies come back through the node that forwards it. The
// shared address is configured on no firewall: ctha would take flows to
// one of its own addresses for the node's own traffic, and the server
// never has to ARP for it.

// mpShared is the address both nodes translate to.
var mpShared = netip.MustParseAddr("10.10.2.50")

// mpPortRange is an inclusive range of ports.
type mpPortRange struct{ lo, hi uint16 }

func (p mpPortRange) String() string { return fmt.Sprintf("%d-%d", p.lo, p.hi) }

func (p mpPortRange) contains(port uint16) bool { return p.lo <= port && port <= p.hi }

// mpSNATRanges are the nodes' SNAT port ranges, each in its nft rule and
// in its ctha configuration; mpSNATGateway is the WAN VIP of the group
// each node masters, by which the server sends back to its range.
var (
	mpSNATRanges  = map[string]mpPortRange{lab.RoleFW1: {20000, 29999}, lab.RoleFW2: {30000, 39999}}
	mpSNATGateway = map[string]netip.Addr{lab.RoleFW1: lab.WANVIP.Addr(), lab.RoleFW2: lab.WANVIPB.Addr()}
)

// mpNATSetup is one lab's NAT: each node's snat_port_range and the ports
// its nft rule translates to, and the server's routes to the shared
// address by destination port.
type mpNATSetup struct {
	ranges map[string]string // role -> snat_port_range
	to     map[string]string // role -> nft snat ports ("20000-29999", "40000")
	routes []mpSharedRoute
}

// mpSharedRoute sends the server's packets to the shared address with a
// destination port in ports via gw.
type mpSharedRoute struct {
	ports string
	gw    netip.Addr
}

// mpSNATRuleset is a firewall's SNAT rule, in a table of its own beside
// the lab's inet fw: the LAN's traffic leaving by the WAN is translated
// to the shared address, ports ports.
func mpSNATRuleset(ports string) string {
	return fmt.Sprintf(`table ip mpnat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" ip saddr 10.10.1.0/24 meta l4proto { tcp, udp } snat to %s:%s
	}
}
`, mpShared, ports)
}

// mpSNATConfig is mpConfig with role's snat_port_range.
func mpSNATConfig(t *testing.T, role, ports string) string {
	t.Helper()
	c := mpConfig(role)
	const topology = `topology = "multiprimary"`
	if !strings.Contains(c, topology) {
		t.Fatalf("mpConfig(%s) has no %s:\n%s", role, topology, c)
	}
	return strings.Replace(c, topology, fmt.Sprintf("%s\n  snat_port_range = %q", topology, ports), 1)
}

// newMPNATRig is newMPRig with NAT: the firewalls' SNAT rules and the
// server's routes to the shared address go in before the nodes start.
func newMPNATRig(t *testing.T, s mpNATSetup) *failRig {
	t.Helper()
	r := newRigLabWith(t, "direct", lab.Options{NoIPv6: true, SplitVIPs: true})
	srv := lab.RoleServer
	for i, rt := range s.routes {
		table, pref := fmt.Sprint(101+i), fmt.Sprint(100+i)
		r.l.MustExec(t, srv, "ip", "route", "add", mpShared.String()+"/32", "via", rt.gw.String(), "dev", "eth0", "table", table)
		r.l.MustExec(t, srv, "ip", "rule", "add", "pref", pref, "to", mpShared.String(), "ipproto", "tcp", "dport", rt.ports, "lookup", table)
	}
	for _, role := range []string{lab.RoleFW1, lab.RoleFW2} {
		if err := r.l.Nft(role, mpSNATRuleset(s.to[role])); err != nil {
			t.Fatal(err)
		}
		r.conf[role] = mpSNATConfig(t, role, s.ranges[role])
		r.start(role)
	}
	waitMPReady(t, r, []string{lab.RoleFW1, lab.RoleFW2}, mpGroups)
	return r
}

// mpNAT is what a node says about SNAT in `ctha status --json` and
// `ctha stats --json`.
type mpNAT struct {
	ownRange, peerRange string
	overlap             bool
	conflicts           uint64
	outOfRange          uint64
	overlaps            uint64
	writeFailures       uint64
	raw                 string // both documents, compact, for messages
}

// mpNATOf reads role's SNAT fields; a field missing from either document
// fails the test.
func (r *failRig) mpNATOf(role string) mpNAT {
	r.t.Helper()
	n := r.nodes[role]
	var st struct {
		Sync *struct {
			SNATPortRange *string `json:"snat_port_range"`
			SNATOverlap   *bool   `json:"snat_overlap"`
			Peers         []struct {
				SNATPortRange *string `json:"snat_port_range"`
			} `json:"peers"`
		} `json:"sync"`
	}
	var stats struct {
		Sync *struct {
			NATConflicts   *uint64 `json:"nat_conflicts"`
			SNATOutOfRange *uint64 `json:"snat_out_of_range"`
			SNATOverlaps   *uint64 `json:"snat_overlaps"`
			KernelFailures *uint64 `json:"kernel_write_failures"`
		} `json:"sync"`
	}
	var raw []string
	for _, q := range []struct {
		cmd string
		v   any
	}{{"status", &st}, {"stats", &stats}} {
		out, err := n.ctl(q.cmd, "--json")
		if err != nil {
			r.t.Fatalf("%s: ctha %s: %v\n%s", role, q.cmd, err, out)
		}
		if err := json.Unmarshal([]byte(out), q.v); err != nil {
			r.t.Fatalf("%s: ctha %s --json: %v\n%s", role, q.cmd, err, out)
		}
		var c bytes.Buffer
		if json.Compact(&c, []byte(out)) != nil {
			c.WriteString(out)
		}
		raw = append(raw, c.String())
	}
	m := mpNAT{raw: strings.Join(raw, "\n")}
	s, c := st.Sync, stats.Sync
	switch {
	case s == nil || s.SNATPortRange == nil || s.SNATOverlap == nil || len(s.Peers) != 1 || s.Peers[0].SNATPortRange == nil:
		r.t.Fatalf("%s: status without sync.snat_port_range, sync.snat_overlap or one peer's snat_port_range:\n%s", role, m.raw)
	case c == nil || c.NATConflicts == nil || c.SNATOutOfRange == nil || c.SNATOverlaps == nil || c.KernelFailures == nil:
		r.t.Fatalf("%s: stats without sync.nat_conflicts, snat_out_of_range, snat_overlaps or kernel_write_failures:\n%s", role, m.raw)
	}
	m.ownRange, m.peerRange, m.overlap = *s.SNATPortRange, *s.Peers[0].SNATPortRange, *s.SNATOverlap
	m.conflicts, m.outOfRange, m.overlaps, m.writeFailures = *c.NATConflicts, *c.SNATOutOfRange, *c.SNATOverlaps, *c.KernelFailures
	return m
}

// mpCheckNATHeld checks the NAT of each group's live flows: on its master
// translated to the shared address within the master's range, and
// mirrored on the other node with the same reply tuple.
func mpCheckNATHeld(r *failRig) {
	r.t.Helper()
	tables := map[string]map[ct.Key]ct.Flow{}
	for _, role := range []string{lab.RoleFW1, lab.RoleFW2} {
		tables[role] = dumpTable(r.t, dialCT(r.t, r.l.NS(role)))
	}
	for _, g := range mpGroups {
		own := mpLiveFlows(tables[g.master], g.server)
		copies := mpLiveFlows(tables[mpPeer[g.master]], g.server)
		var bad []string
		for k, f := range own {
			if !f.SrcNAT() || f.Reply.DstAddr() != mpShared || !mpSNATRanges[g.master].contains(f.Reply.DstPort) {
				bad = append(bad, fmt.Sprintf("on %s: %s, reply %s: not translated to %s:%s", g.master, f.Orig, f.Reply, mpShared, mpSNATRanges[g.master]))
				continue
			}
			c, ok := copies[k]
			if !ok || c.Reply != f.Reply {
				bad = append(bad, fmt.Sprintf("on %s: copy of %s with reply %s, want %s (held %v)", mpPeer[g.master], f.Orig, c.Reply, f.Reply, ok))
			}
		}
		if len(own) == 0 {
			bad = append(bad, fmt.Sprintf("no live flow of group %s on %s", g.name, g.master))
		}
		if len(bad) > 0 {
			r.t.Errorf("group %s (via %s): %d of %d flows without their NAT:\n%s", g.name, g.master, len(bad), len(own), strings.Join(bad[:min(len(bad), 5)], "\n"))
		}
	}
}

// TestMultiprimarySNAT: both nodes translate their flows to one shared
// address, each to its own port range. The flows of both groups coexist,
// each node's mirrored in the other's kernel with its NAT binding, and
// survive the crash of fw1 through fw2; ranges that overlap are reported
// on both nodes; and a peer's flow that has the translated tuple of a live
// local flow is counted and never written over it.
func TestMultiprimarySNAT(t *testing.T) {
	lab.RequireNetns(t)
	t.Run("crash", testMPSNATCrash)
	t.Run("conflict", testMPSNATConflict)
}

// testMPSNATCrash: disjoint ranges; flows of both groups at once, then
// fw1 crashes.
func testMPSNATCrash(t *testing.T) {
	const victim, survivor = lab.RoleFW1, lab.RoleFW2
	s := mpNATSetup{ranges: map[string]string{}, to: map[string]string{}}
	for _, role := range []string{lab.RoleFW1, lab.RoleFW2} {
		s.ranges[role] = mpSNATRanges[role].String()
		s.to[role] = mpSNATRanges[role].String()
		s.routes = append(s.routes, mpSharedRoute{mpSNATRanges[role].String(), mpSNATGateway[role]})
	}
	r := newMPNATRig(t, s)
	fs := mpStartFlows(r, 15*time.Second)
	mpWaitCrossHeld(r, 10*time.Second)
	mpCheckNATHeld(r)
	for _, role := range []string{lab.RoleFW1, lab.RoleFW2} {
		r.mpCheckStatus(role, func(g mpGroup) string {
			if g.master == role {
				return "MASTER"
			}
			return "BACKUP"
		}, true)
		m := r.mpNATOf(role)
		var errs []string
		if m.ownRange != s.ranges[role] || m.peerRange != s.ranges[mpPeer[role]] {
			errs = append(errs, fmt.Sprintf("snat_port_range %q, the peer's %q; want %q, %q", m.ownRange, m.peerRange, s.ranges[role], s.ranges[mpPeer[role]]))
		}
		if m.overlap || m.overlaps != 0 {
			errs = append(errs, fmt.Sprintf("snat_overlap %v, snat_overlaps %d; want false, 0", m.overlap, m.overlaps))
		}
		if m.conflicts != 0 || m.outOfRange != 0 {
			errs = append(errs, fmt.Sprintf("nat_conflicts %d, snat_out_of_range %d; want 0, 0", m.conflicts, m.outOfRange))
		}
		if len(errs) > 0 {
			t.Errorf("%s: %s\n%s", role, strings.Join(errs, "; "), m.raw)
		}
	}

	r.afterAdvert(victim, 750*time.Millisecond)
	kill := r.crash(victim)
	for _, v := range mpGroups[0].vips {
		if _, err := waitVIP(r.l, survivor, v.iface, v.vip.Addr(), true, kill, 10*time.Second); err != nil {
			t.Fatalf("%s: %v\n%s", survivor, err, r.nodes[survivor].proc.Tail(30))
		}
	}
	o := mpFinish(r, fs, survivor, kill)
	r.mpCheckStatus(survivor, func(mpGroup) string { return "MASTER" }, false)
	m := r.mpNATOf(survivor)

	flows, survived := 0, 0
	var perGroup []string
	for _, g := range mpGroups {
		rep := o.reports[g.name]
		flows += rep.Flows
		survived += rep.Survived
		perGroup = append(perGroup, fmt.Sprintf("group %s (via %s, ports %s): %d/%d, longest gap %.1fs",
			g.name, g.master, mpSNATRanges[g.master], rep.Survived, rep.Flows, rep.LongestGapMs/1000))
		if rep.Flows != mpFlowsPerGroup || rep.Survived != rep.Flows {
			t.Errorf("group %s (forwarded by %s): %d of %d flows survived, want all %d:\n%s",
				g.name, g.master, rep.Survived, rep.Flows, mpFlowsPerGroup, mpDeadFlows(rep, 5))
		}
	}
	t.Logf("figure: multiprimary SNAT: %d/%d flows survived the crash of %s, %d INVALID, %d NAT conflicts (%s)",
		survived, flows, victim, o.invalid, m.conflicts, strings.Join(perGroup, "; "))
	if o.invalid != 0 {
		t.Errorf("the survivor %s dropped %d packets of live flows as INVALID, want none", survivor, o.invalid)
	}
	if m.conflicts != 0 || m.outOfRange != 0 {
		t.Errorf("%s after the crash: nat_conflicts %d, snat_out_of_range %d; want 0, 0\n%s", survivor, m.conflicts, m.outOfRange, m.raw)
	}
}

// testMPSNATConflict: ranges that overlap, and both nft rules forced to
// one port. With the sync link cut, a client flow through fw1 (local, L)
// and a SYN from a second client address through fw2 (P) to the same
// server port get the same translated tuple; when the link heals each
// node is sent the other's, counts a NAT conflict, and keeps its own.
func testMPSNATConflict(t *testing.T) {
	const port = 40000
	ranges := map[string]string{lab.RoleFW1: "20000-34999", lab.RoleFW2: "30000-39999"}
	r := newMPNATRig(t, mpNATSetup{
		ranges: ranges,
		to:     map[string]string{lab.RoleFW1: fmt.Sprint(port), lab.RoleFW2: fmt.Sprint(port)},
		// The server answers the shared port through fw1, L's node.
		routes: []mpSharedRoute{{fmt.Sprint(port), lab.WANVIP.Addr()}},
	})

	// Overlap: announced, counted and shown on both nodes.
	var last map[string]mpNAT
	err := lab.WaitFor(10*time.Second, 100*time.Millisecond, func() (bool, error) {
		last = map[string]mpNAT{}
		ok := true
		for _, role := range []string{lab.RoleFW1, lab.RoleFW2} {
			m := r.mpNATOf(role)
			last[role] = m
			ok = ok && m.overlap && m.overlaps >= 1 && m.ownRange == ranges[role] && m.peerRange == ranges[mpPeer[role]]
		}
		return ok, nil
	})
	if err != nil {
		for role, m := range last {
			t.Errorf("%s: snat_port_range %q, the peer's %q, snat_overlap %v, snat_overlaps %d; want %q, %q, true, >= 1\n%s",
				role, m.ownRange, m.peerRange, m.overlap, m.overlaps, ranges[role], ranges[mpPeer[role]], m.raw)
		}
	}
	for _, role := range []string{lab.RoleFW1, lab.RoleFW2} {
		if !strings.Contains(r.nodes[role].proc.Log(), "a peer's SNAT port range overlaps this node's") {
			t.Errorf("%s: the overlap is not logged\n%s", role, r.nodes[role].proc.Tail(30))
		}
	}

	// P's path: a second client address routed through group b's VIP.
	clientB := netip.MustParsePrefix("10.10.1.101/24")
	cl := lab.RoleClient
	r.l.MustExec(t, cl, "ip", "addr", "add", clientB.String(), "dev", "eth0")
	r.l.MustExec(t, cl, "ip", "route", "add", "default", "via", lab.LANVIPB.Addr().String(), "table", "103")
	r.l.MustExec(t, cl, "ip", "rule", "add", "pref", "100", "from", clientB.Addr().String(), "lookup", "103")
	dir := t.TempDir()
	server := netip.AddrPortFrom(lab.ServerAddr.Addr(), 5001)
	r.l.Start(t, lab.RoleServer, "flowgen-server", flowgenBin, "server", "-listen", server.String(), "-ready", filepath.Join(dir, "listening"))
	waitFile(t, filepath.Join(dir, "listening"), 5*time.Second)

	if err := r.l.SetLink(lab.RoleFW1, "sync", false); err != nil {
		t.Fatal(err)
	}
	report, stop := filepath.Join(dir, "report.json"), filepath.Join(dir, "stop")
	client := r.l.Start(t, cl, "flowgen-client", flowgenBin, "client", "-connect", server.String(), "-flows", "1",
		"-interval", "50ms", "-duration", "0", "-stop-file", stop, "-ready", filepath.Join(dir, "ready"), "-json", report)
	if err := waitFileErr(filepath.Join(dir, "ready"), 10*time.Second); err != nil {
		t.Fatalf("flow L not up: %v\n%s", err, client.Log())
	}
	// P: one SYN, never answered (the server holds L under the same
	// tuple and answers L's path); closing the socket sends nothing.
	err = inNS(r.l.NS(cl), func() error {
		d := net.Dialer{Timeout: 300 * time.Millisecond, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(clientB.Addr(), 0))}
		c, err := d.Dial("tcp", server.String())
		if err == nil {
			c.Close()
			return errors.New("connected: the server accepted P, so P and L do not share a tuple")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("flow P: %v", err)
	}

	conns := map[string]*kernel.Conn{lab.RoleFW1: dialCT(t, r.l.NS(lab.RoleFW1)), lab.RoleFW2: dialCT(t, r.l.NS(lab.RoleFW2))}
	// find returns the flow from src to the server on role, if any.
	find := func(role string, src netip.Addr) (ct.Flow, bool) {
		for _, f := range dumpTable(t, conns[role]) {
			if f.Orig.Proto == ct.ProtoTCP && f.Orig.SrcAddr() == src && netip.AddrPortFrom(f.Orig.DstAddr(), f.Orig.DstPort) == server {
				return f, true
			}
		}
		return ct.Flow{}, false
	}
	l, okL := find(lab.RoleFW1, lab.ClientAddr.Addr())
	p, okP := find(lab.RoleFW2, clientB.Addr())
	switch {
	case !okL || !okP:
		t.Fatalf("the collision did not happen: L on fw1 %v (%s), P on fw2 %v (%s)", okL, l.String(), okP, p.String())
	case l.Reply != p.Reply || l.Reply.DstAddr() != mpShared || l.Reply.DstPort != port:
		t.Fatalf("L (fw1) and P (fw2) do not share the translated tuple %s:%d:\nL %s\nP %s", mpShared, port, l.String(), p.String())
	}
	if _, held := find(lab.RoleFW2, lab.ClientAddr.Addr()); held {
		t.Fatalf("fw2 holds L with the sync link cut")
	}

	healed := time.Now()
	if err := r.l.SetLink(lab.RoleFW1, "sync", true); err != nil {
		t.Fatal(err)
	}
	err = lab.WaitFor(15*time.Second, 100*time.Millisecond, func() (bool, error) {
		last = map[string]mpNAT{}
		for _, role := range []string{lab.RoleFW1, lab.RoleFW2} {
			last[role] = r.mpNATOf(role)
		}
		return last[lab.RoleFW1].conflicts >= 1 && last[lab.RoleFW2].conflicts >= 1, nil
	})
	if err != nil {
		for role, m := range last {
			t.Errorf("%s: nat_conflicts %d after the sync link healed, want >= 1\n%s\n%s", role, m.conflicts, m.raw, r.nodes[role].proc.Tail(30))
		}
	}
	seen := time.Now()
	for role, m := range last {
		if m.writeFailures < m.conflicts {
			t.Errorf("%s: kernel_write_failures %d < nat_conflicts %d: conflicts are write failures too", role, m.writeFailures, m.conflicts)
		}
		if m.outOfRange < 1 {
			t.Errorf("%s: snat_out_of_range %d, want >= 1 (its flow went to port %d, outside %s)", role, m.outOfRange, port, ranges[role])
		}
	}
	// Each node keeps its own flow, and never holds the other's.
	for _, c := range []struct {
		role      string
		own       ct.Flow
		other     netip.Addr
		otherName string
	}{{lab.RoleFW1, l, clientB.Addr(), "P"}, {lab.RoleFW2, p, lab.ClientAddr.Addr(), "L"}} {
		got, ok := find(c.role, c.own.Orig.SrcAddr())
		if !ok || got.Orig != c.own.Orig || got.Reply != c.own.Reply {
			t.Errorf("%s lost its own flow: had %s, now %s (held %v)", c.role, c.own.String(), got.String(), ok)
		}
		if f, held := find(c.role, c.other); held {
			t.Errorf("%s holds the peer's flow %s: %s", c.role, c.otherName, f.String())
		}
	}
	for _, role := range []string{lab.RoleFW1, lab.RoleFW2} {
		if line := mpLogLine(r.nodes[role].proc.Log(), "a peer's flow has the translated tuple of a local flow"); line == "" {
			t.Errorf("%s: the conflict is not logged\n%s", role, r.nodes[role].proc.Tail(30))
		} else {
			t.Logf("%s: %s", role, line)
		}
	}

	// L still passes traffic: echoes within the alive window (2 s)
	// before a stop that comes 2.5 s after the conflicts were counted.
	time.Sleep(time.Until(seen.Add(2500 * time.Millisecond)))
	if err := os.WriteFile(stop, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := client.Wait(); err != nil {
		t.Fatalf("flowgen client: %v\n%s", err, client.Log())
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep flowgen.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Flows != 1 || rep.Survived != 1 {
		t.Errorf("L did not survive the conflict: %d/%d\n%s", rep.Survived, rep.Flows, mpDeadFlows(rep, 1))
	}
	m1, m2 := last[lab.RoleFW1], last[lab.RoleFW2]
	t.Logf("figure: multiprimary SNAT conflict: L and P both at %s:%d; after the sync link healed (conflicts counted within %v) nat_conflicts fw1 %d, fw2 %d; L alive on fw1 (%d/%d, longest gap %.1fs); overlap %s vs %s reported on both",
		mpShared, port, seen.Sub(healed).Round(time.Millisecond), m1.conflicts, m2.conflicts, rep.Survived, rep.Flows, rep.LongestGapMs/1000, ranges[lab.RoleFW1], ranges[lab.RoleFW2])
}

// mpLogLine returns the first line of log that contains s, or "".
func mpLogLine(log, s string) string {
	for line := range strings.Lines(log) {
		if strings.Contains(line, s) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}
