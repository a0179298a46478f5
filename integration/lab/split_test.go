package lab_test

import (
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/ctha/ctha/integration/lab"
)

// TestLabSplitVIPs: with Options.SplitVIPs, and LANVIP and WANVIP on fw1,
// LANVIPB and WANVIPB on fw2, a TCP flow to ServerAddr crosses fw1 only
// and one to ServerAddrB fw2 only, both ways: the strict ruleset passes
// them (an asymmetric path would drop the server's answer as invalid), and
// each flow has a conntrack entry on its own firewall alone.
func TestLabSplitVIPs(t *testing.T) {
	lab.RequireNetns(t)
	lab.RequireCommands(t, "conntrack")
	l := lab.New(t, lab.Options{NoIPv6: true, SplitVIPs: true})
	vips := []struct {
		role, iface string
		vip         netip.Prefix
	}{
		{lab.RoleFW1, "lan", lab.LANVIP}, {lab.RoleFW1, "wan", lab.WANVIP},
		{lab.RoleFW2, "lan", lab.LANVIPB}, {lab.RoleFW2, "wan", lab.WANVIPB},
	}
	for _, v := range vips {
		l.MustExec(t, v.role, "ip", "addr", "add", v.vip.String(), "dev", v.iface)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	paths := []struct {
		server      netip.Prefix
		via, bypass string
	}{
		{lab.ServerAddr, lab.RoleFW1, lab.RoleFW2},
		{lab.ServerAddrB, lab.RoleFW2, lab.RoleFW1},
	}
	for _, p := range paths {
		t.Run(p.server.Addr().String(), func(t *testing.T) {
			dst := netip.AddrPortFrom(p.server.Addr(), 5001).String()
			srv := l.Start(t, lab.RoleServer, "listener", self, helperArg, "listen", dst)
			waitLog(t, srv, "listening")
			cl := l.Start(t, lab.RoleClient, "dialer", self, helperArg, "dial", dst)
			waitLog(t, cl, "echo 1 ok")
			if n := tcpEntries(t, l, p.via, p.server.Addr()); n != 1 {
				t.Errorf("%s holds %d entries of the flow to %s, want 1", p.via, n, dst)
			}
			if n := tcpEntries(t, l, p.bypass, p.server.Addr()); n != 0 {
				t.Errorf("%s holds %d entries of the flow to %s, want none: the flow crossed it", p.bypass, n, dst)
			}
		})
	}
	for _, fw := range []string{lab.RoleFW1, lab.RoleFW2} {
		if n, err := l.InvalidDrops(fw); err != nil || n != 0 {
			t.Errorf("InvalidDrops(%s) = %d, %v; want 0, nil", fw, n, err)
		}
	}
}

// entriesShown is conntrack's summary line on stderr.
var entriesShown = regexp.MustCompile(`(\d+) flow entries have been shown`)

// tcpEntries counts role's conntrack entries of TCP flows to dst port 5001.
func tcpEntries(t *testing.T, l *lab.Lab, role string, dst netip.Addr) int {
	t.Helper()
	out := l.MustExec(t, role, "conntrack", "-L", "-p", "tcp", "--dport", "5001", "-d", dst.String())
	m := entriesShown.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("conntrack -L in %s: no summary line in:\n%s", role, out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}
