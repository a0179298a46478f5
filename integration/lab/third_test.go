package lab_test

import (
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/ctha/ctha/integration/lab"
)

// TestLabThirdFirewall: Options.ThirdFirewall adds fw3 on the LAN and WAN
// and puts the three sync interfaces on one segment, where every node
// reaches both others (IPv4 and IPv6), and SetLink on fw3's sync cuts fw3
// alone. The default lab keeps its direct sync cable and has no fw3.
func TestLabThirdFirewall(t *testing.T) {
	lab.RequireNetns(t)
	lab.RequireCommands(t, "ping")
	l := lab.New(t, lab.Options{ThirdFirewall: true, NoRuleset: true})
	if got, want := l.Firewalls(), []string{lab.RoleFW1, lab.RoleFW2, lab.RoleFW3}; !slices.Equal(got, want) {
		t.Errorf("Firewalls() = %v, want %v", got, want)
	}
	sync4 := map[string]netip.Addr{lab.RoleFW1: lab.FW1Sync.Addr(), lab.RoleFW2: lab.FW2Sync.Addr(), lab.RoleFW3: lab.FW3Sync.Addr()}
	sync6 := map[string]netip.Addr{lab.RoleFW1: lab.FW1Sync6.Addr(), lab.RoleFW2: lab.FW2Sync6.Addr(), lab.RoleFW3: lab.FW3Sync6.Addr()}
	for _, from := range l.Firewalls() {
		for _, to := range l.Firewalls() {
			if from != to {
				ping(t, l, from, sync4[to])
				ping(t, l, from, sync6[to])
			}
		}
	}
	ping(t, l, lab.RoleFW3, lab.ClientAddr.Addr())
	ping(t, l, lab.RoleFW3, lab.ServerAddr6.Addr())
	if err := l.SetLink(lab.RoleFW3, "sync", false); err != nil {
		t.Fatal(err)
	}
	if out, err := l.Exec(lab.RoleFW1, "ping", "-c", "1", "-W", "1", lab.FW3Sync.Addr().String()); err == nil {
		t.Errorf("ping fw3's sync address after its link went down succeeded:\n%s", out)
	}
	ping(t, l, lab.RoleFW1, lab.FW2Sync.Addr()) // fw1 and fw2 still meet

	def := lab.New(t, lab.Options{NoIPv6: true, NoRuleset: true})
	if got, want := def.Firewalls(), []string{lab.RoleFW1, lab.RoleFW2}; !slices.Equal(got, want) {
		t.Errorf("default lab: Firewalls() = %v, want %v", got, want)
	}
	if _, err := def.Exec(lab.RoleFW3, "true"); err == nil {
		t.Errorf("default lab: a namespace for fw3 exists")
	}
	// The sync cable is still a direct veth: its peer is fw2's "sync".
	if out := def.MustExec(t, lab.RoleFW1, "ip", "-d", "link", "show", "sync"); !strings.Contains(out, "veth") {
		t.Errorf("default lab: fw1's sync is not a veth:\n%s", out)
	}
	ping(t, def, lab.RoleFW1, lab.FW2Sync.Addr())
}

// TestLabSplitVIPsThree: with Options.SplitVIPs and ThirdFirewall, and
// the VIP pairs on fw1 (LANVIP, WANVIP), fw2 (LANVIPB, WANVIPB) and fw3
// (LANVIPC, WANVIPC), a TCP flow to ServerAddr, ServerAddrB and
// ServerAddrC crosses its own firewall only, both ways, with no INVALID
// drop anywhere.
func TestLabSplitVIPsThree(t *testing.T) {
	lab.RequireNetns(t)
	lab.RequireCommands(t, "conntrack")
	l := lab.New(t, lab.Options{NoIPv6: true, SplitVIPs: true, ThirdFirewall: true})
	vips := []struct {
		role, iface string
		vip         netip.Prefix
	}{
		{lab.RoleFW1, "lan", lab.LANVIP}, {lab.RoleFW1, "wan", lab.WANVIP},
		{lab.RoleFW2, "lan", lab.LANVIPB}, {lab.RoleFW2, "wan", lab.WANVIPB},
		{lab.RoleFW3, "lan", lab.LANVIPC}, {lab.RoleFW3, "wan", lab.WANVIPC},
	}
	for _, v := range vips {
		l.MustExec(t, v.role, "ip", "addr", "add", v.vip.String(), "dev", v.iface)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	paths := []struct {
		server netip.Prefix
		via    string
	}{
		{lab.ServerAddr, lab.RoleFW1},
		{lab.ServerAddrB, lab.RoleFW2},
		{lab.ServerAddrC, lab.RoleFW3},
	}
	for _, p := range paths {
		t.Run(p.server.Addr().String(), func(t *testing.T) {
			dst := netip.AddrPortFrom(p.server.Addr(), 5001).String()
			srv := l.Start(t, lab.RoleServer, "listener", self, helperArg, "listen", dst)
			waitLog(t, srv, "listening")
			cl := l.Start(t, lab.RoleClient, "dialer", self, helperArg, "dial", dst)
			waitLog(t, cl, "echo 1 ok")
			for _, fw := range l.Firewalls() {
				want := 0
				if fw == p.via {
					want = 1
				}
				if n := tcpEntries(t, l, fw, p.server.Addr()); n != want {
					t.Errorf("%s holds %d entries of the flow to %s, want %d (the flow goes through %s only)", fw, n, dst, want, p.via)
				}
			}
		})
	}
	for _, fw := range l.Firewalls() {
		if n, err := l.InvalidDrops(fw); err != nil || n != 0 {
			t.Errorf("InvalidDrops(%s) = %d, %v; want 0, nil", fw, n, err)
		}
	}
}
