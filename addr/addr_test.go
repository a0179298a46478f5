package addr_test

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/addr"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	vip4 = netip.MustParsePrefix("10.10.1.1/24")
	vip6 = netip.MustParsePrefix("fd00:10:1::1/64")
)

func TestVirtualMAC(t *testing.T) {
	tests := []struct {
		name string
		vrid uint8
		ipv6 bool
		want string
	}{
		{"ipv4", 51, false, "00:00:5e:00:01:33"},
		{"ipv6", 51, true, "00:00:5e:00:02:33"},
		{"ipv4 vrid 1", 1, false, "00:00:5e:00:01:01"},
		{"ipv6 vrid 255", 255, true, "00:00:5e:00:02:ff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := addr.VirtualMAC(tt.vrid, tt.ipv6).String(); got != tt.want {
				t.Errorf("VirtualMAC(%d, %v) = %s, want %s", tt.vrid, tt.ipv6, got, tt.want)
			}
		})
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	valid := addr.Config{Interface: "lan", VRID: 51, VIPs: []netip.Prefix{vip4}, GARP: addr.GARP{Repeat: 1}}
	tests := []struct {
		name   string
		modify func(*addr.Config)
	}{
		{"no interface", func(c *addr.Config) { c.Interface = "" }},
		{"vrid 0", func(c *addr.Config) { c.VRID = 0 }},
		{"mixed families", func(c *addr.Config) { c.VIPs = []netip.Prefix{vip4, vip6} }},
		{"duplicate", func(c *addr.Config) { c.VIPs = []netip.Prefix{vip4, netip.MustParsePrefix("10.10.1.1/32")} }},
		{"invalid prefix", func(c *addr.Config) { c.VIPs = []netip.Prefix{{}} }},
		{"4in6", func(c *addr.Config) { c.VIPs = []netip.Prefix{netip.MustParsePrefix("::ffff:10.10.1.1/128")} }},
		{"multicast", func(c *addr.Config) { c.VIPs = []netip.Prefix{netip.MustParsePrefix("224.0.0.18/32")} }},
		{"repeat 0", func(c *addr.Config) { c.GARP.Repeat = 0 }},
		{"negative interval", func(c *addr.Config) { c.GARP.Interval = -time.Second }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			tt.modify(&c)
			m, err := addr.New(c, nil)
			if !errors.Is(err, addr.ErrInvalidConfig) {
				if m != nil {
					m.Close()
				}
				t.Fatalf("New = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestUpDown(t *testing.T) {
	tests := []struct {
		name string
		vip  netip.Prefix
	}{
		{"ipv4", vip4},
		{"ipv6", vip6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLab(t)
			m := l.newManager(t, addr.Config{
				Interface: "lan", VRID: 51, VIPs: []netip.Prefix{tt.vip},
				GARP: addr.GARP{Repeat: 1},
			})
			assertPresent(t, m, nil)

			for i := range 2 { // Up twice is fine
				start := time.Now()
				first, err := m.Up()
				if err != nil {
					t.Fatalf("Up #%d: %v", i+1, err)
				}
				t.Logf("Up #%d -> first announcement written: %v", i+1, first.Sub(start))
				a, ok := addrsOf(t, l.A, "lan")[tt.vip.String()]
				if !ok {
					t.Fatalf("after Up #%d, %s not on lan", i+1, tt.vip)
				}
				if a.Tentative {
					t.Errorf("after Up #%d, %s is tentative (DAD not skipped)", i+1, tt.vip)
				}
				assertPresent(t, m, []netip.Prefix{tt.vip})
			}
			if err := m.Announce(); err != nil {
				t.Errorf("Announce while up: %v", err)
			}

			for i := range 2 { // Down twice is fine
				if err := m.Down(); err != nil {
					t.Fatalf("Down #%d: %v", i+1, err)
				}
				if _, ok := addrsOf(t, l.A, "lan")[tt.vip.String()]; ok {
					t.Fatalf("after Down #%d, %s still on lan", i+1, tt.vip)
				}
				assertPresent(t, m, nil)
			}
			if err := m.Announce(); !errors.Is(err, addr.ErrNotUp) {
				t.Errorf("Announce while down = %v, want ErrNotUp", err)
			}
			own := map[bool]string{false: "10.10.1.2/24", true: "fd00:10:1::2/64"}[tt.vip.Addr().Is6()]
			if _, ok := addrsOf(t, l.A, "lan")[own]; !ok {
				t.Errorf("the interface's own %s is gone", own)
			}
			if s := m.Stats(); s.AddErrors != 0 || s.RemoveErrors != 0 || s.SendErrors != 0 {
				t.Errorf("Stats = %+v, want no errors", s)
			}

			if err := m.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if _, err := m.Up(); !errors.Is(err, addr.ErrClosed) {
				t.Errorf("Up after Close = %v, want ErrClosed", err)
			}
		})
	}
}

func assertPresent(t *testing.T, m *addr.Manager, want []netip.Prefix) {
	t.Helper()
	got, err := m.Present()
	if err != nil {
		t.Fatalf("Present: %v", err)
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("Present (-want +got):\n%s", diff)
	}
}

// TestUpAfterLinkFlap: a packet socket keeps ENETDOWN pending after its
// link went down; the first announcement after the link is back must still
// go out.
func TestUpAfterLinkFlap(t *testing.T) {
	l := newLab(t)
	m := l.newManager(t, addr.Config{
		Interface: "lan", VRID: 51, VIPs: []netip.Prefix{vip4},
		GARP: addr.GARP{Repeat: 1},
	})
	ip(t, "-n", l.A, "link", "set", "lan", "down")
	ip(t, "-n", l.A, "link", "set", "lan", "up")
	l.waitLinkLocal(t, l.A, "lan")
	ip(t, "-n", l.B, "neigh", "replace", "10.10.1.1", "lladdr", "02:00:00:00:00:99", "dev", "eth0", "nud", "stale")
	if _, err := m.Up(); err != nil {
		t.Fatalf("Up after a link flap: %v", err)
	}
	l.waitNeigh(t, "10.10.1.1", l.lanMAC)
	if s := m.Stats(); s.SendErrors != 0 || s.Announcements != 2 {
		t.Errorf("Stats = %+v, want 2 announcements, no errors", s)
	}
}

// TestAnnouncementUpdatesPeer: B has a wrong MAC for the VIP; after Up in
// A it has A's MAC, through gratuitous ARP (with arp_accept=0) or NA.
func TestAnnouncementUpdatesPeer(t *testing.T) {
	tests := []struct {
		name string
		vip  netip.Prefix
	}{
		{"garp", vip4},
		{"na", vip6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLab(t)
			vip := tt.vip.Addr().String()
			ip(t, "-n", l.B, "neigh", "replace", vip, "lladdr", "02:00:00:00:00:99", "dev", "eth0", "nud", "stale")
			m := l.newManager(t, addr.Config{
				Interface: "lan", VRID: 51, VIPs: []netip.Prefix{tt.vip},
				GARP: addr.GARP{Repeat: 1},
			})
			if _, err := m.Up(); err != nil {
				t.Fatalf("Up: %v", err)
			}
			l.waitNeigh(t, vip, l.lanMAC)
			if err := m.Down(); err != nil {
				t.Fatalf("Down: %v", err)
			}
		})
	}
}

func TestRemoveStale(t *testing.T) {
	l := newLab(t)
	ip(t, "-n", l.A, "addr", "add", "10.10.1.1/24", "dev", "lan")
	ip(t, "-n", l.A, "addr", "add", "10.10.1.5/32", "dev", "lan")
	ip(t, "-n", l.A, "addr", "add", "fd00:10:1::1/64", "dev", "lan", "nodad")
	vips := []netip.Prefix{
		vip4,
		netip.MustParsePrefix("10.10.1.5/24"), // on lan as /32: removed all the same
		netip.MustParsePrefix("10.10.1.9/24"), // absent
		vip6,
	}
	var (
		removed []netip.Prefix
		err     error
	)
	inNS(t, l.A, func() { removed, err = addr.RemoveStale("lan", vips) })
	if err != nil {
		t.Fatalf("RemoveStale: %v", err)
	}
	want := []netip.Prefix{vip4, netip.MustParsePrefix("10.10.1.5/32"), vip6}
	less := func(a, b netip.Prefix) bool { return a.Addr().Less(b.Addr()) }
	if diff := cmp.Diff(want, removed, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }), cmpopts.SortSlices(less)); diff != "" {
		t.Errorf("removed (-want +got):\n%s", diff)
	}
	have := addrsOf(t, l.A, "lan")
	for _, gone := range []string{"10.10.1.1/24", "10.10.1.5/32", "fd00:10:1::1/64"} {
		if _, ok := have[gone]; ok {
			t.Errorf("%s still on lan", gone)
		}
	}
	for _, kept := range []string{"10.10.1.2/24", "fd00:10:1::2/64"} {
		if _, ok := have[kept]; !ok {
			t.Errorf("the interface's own %s was removed", kept)
		}
	}

	inNS(t, l.A, func() { _, err = addr.RemoveStale("nosuchif", vips) })
	if err == nil {
		t.Errorf("RemoveStale on a missing interface succeeded")
	}
}

// TestVirtualMACAnnouncement: the VIPs go on a macvlan with the RFC 5798
// MAC, and the announcements carry that MAC.
func TestVirtualMACAnnouncement(t *testing.T) {
	tests := []struct {
		name, link, kind string
		vip              netip.Prefix
	}{
		{"ipv4", "vrrp.51", "arp-request", vip4},
		{"ipv6", "vrrp6.51", "na", vip6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLab(t)
			vmac := addr.VirtualMAC(51, tt.vip.Addr().Is6())
			vip := tt.vip.Addr().String()
			ip(t, "-n", l.B, "neigh", "replace", vip, "lladdr", "02:00:00:00:00:99", "dev", "eth0", "nud", "stale")
			capt := l.capture(t)
			m := l.newManager(t, addr.Config{
				Interface: "lan", VRID: 51, VIPs: []netip.Prefix{tt.vip}, VirtualMAC: true,
				GARP: addr.GARP{Repeat: 1},
			})
			assertMacvlan(t, l, tt.link, vmac, false)
			// IPv4: the parent must not answer ARP for the VIP, nor send
			// ARP with the VIP as sender, while the virtual MAC exists.
			wantARP := map[bool]string{true: "1 1 2", false: "0 0 0"}[!tt.vip.Addr().Is6()]
			if got := parentARP(t, l.A); got != wantARP {
				t.Errorf("lan arp_ignore/arp_filter/arp_announce = %s with the virtual MAC, want %s", got, wantARP)
			}

			if _, err := m.Up(); err != nil {
				t.Fatalf("Up: %v", err)
			}
			assertMacvlan(t, l, tt.link, vmac, true)
			if _, ok := addrsOf(t, l.A, tt.link)[tt.vip.String()]; !ok {
				t.Errorf("%s not on %s", tt.vip, tt.link)
			}
			if _, ok := addrsOf(t, l.A, "lan")[tt.vip.String()]; ok {
				t.Errorf("%s on lan, want it on %s only", tt.vip, tt.link)
			}
			for _, a := range addrsOf(t, l.A, tt.link) {
				if a.Local != vip {
					t.Errorf("%s has %s/%d, want only the VIP (addr_gen_mode none)", tt.link, a.Local, a.Prefixlen)
				}
			}
			assertPresent(t, m, []netip.Prefix{tt.vip})
			l.waitNeigh(t, vip, vmac)
			if len(capt.of(tt.kind)) == 0 {
				t.Errorf("no %s captured", tt.kind)
			}
			for _, a := range capt.of(tt.kind) {
				if a.ethSrc.String() != vmac.String() || a.sender.String() != vmac.String() {
					t.Errorf("%s from %s with sender MAC %s, want %s", a.kind, a.ethSrc, a.sender, vmac)
				}
			}

			if err := m.Down(); err != nil {
				t.Fatalf("Down: %v", err)
			}
			assertMacvlan(t, l, tt.link, vmac, false)
			if _, ok := addrsOf(t, l.A, tt.link)[tt.vip.String()]; ok {
				t.Errorf("after Down, %s still on %s", tt.vip, tt.link)
			}
			if err := m.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			var links []struct{}
			ipJSON(t, &links, "-n", l.A, "link", "show", "type", "macvlan")
			if len(links) != 0 {
				t.Errorf("after Close, %d macvlan links left in A", len(links))
			}
			if got := parentARP(t, l.A); got != "0 0 0" {
				t.Errorf("after Close lan arp_ignore/arp_filter/arp_announce = %s, want the defaults 0 0 0 back", got)
			}
		})
	}
}

// parentARP reads lan's ARP sysctls in namespace ns.
func parentARP(t *testing.T, ns string) string {
	t.Helper()
	out := run(t, "ip", "netns", "exec", ns, "sh", "-c",
		"cat /proc/sys/net/ipv4/conf/lan/arp_ignore /proc/sys/net/ipv4/conf/lan/arp_filter /proc/sys/net/ipv4/conf/lan/arp_announce")
	return strings.Join(strings.Fields(out), " ")
}

// assertMacvlan checks the virtual MAC link in A.
func assertMacvlan(t *testing.T, l *lab, name string, mac net.HardwareAddr, up bool) {
	t.Helper()
	var links []struct {
		Address  string   `json:"address"`
		Flags    []string `json:"flags"`
		LinkInfo struct {
			Kind string `json:"info_kind"`
			Data struct {
				Mode string `json:"mode"`
			} `json:"info_data"`
		} `json:"linkinfo"`
		AddrGenMode string `json:"inet6_addr_gen_mode"`
	}
	ipJSON(t, &links, "-d", "-n", l.A, "link", "show", name)
	if len(links) != 1 {
		t.Fatalf("link %s: %d links", name, len(links))
	}
	k := links[0]
	if k.Address != mac.String() || k.LinkInfo.Kind != "macvlan" || k.LinkInfo.Data.Mode != "private" {
		t.Errorf("link %s: %s %s mode %s, want macvlan %s mode private", name, k.LinkInfo.Kind, k.Address, k.LinkInfo.Data.Mode, mac)
	}
	if k.AddrGenMode != "none" {
		t.Errorf("link %s addr_gen_mode %q, want none", name, k.AddrGenMode)
	}
	isUp := false
	for _, f := range k.Flags {
		isUp = isUp || f == "UP"
	}
	if isUp != up {
		t.Errorf("link %s up = %v, want %v (flags %v)", name, isUp, up, k.Flags)
	}
}
