package addr_test

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/addr"
	nslab "github.com/ctha/ctha/integration/lab"
	"github.com/vishvananda/netns"
)

// lab is two network namespaces joined by a veth pair:
//
//	A: lan 10.10.1.2/24 fd00:10:1::2/64  <->  B: eth0 10.10.1.100/24 fd00:10:1::100/64
//
// The Manager under test runs in A; B plays a client on the LAN.
type lab struct {
	A, B   string
	lanMAC net.HardwareAddr // A's lan
}

// requireNetns skips the test when it cannot create network namespaces,
// or fails it when CTHA_REQUIRE_NETNS=1.
func requireNetns(t testing.TB, reason string) {
	t.Helper()
	t.Fatalf("network namespaces unavailable: %s", reason)
}

// newLab builds the lab under fresh unique names and removes it when the
// test ends, pass or fail.
func newLab(t testing.TB) *lab {
	t.Helper()
	nslab.RequireNetns(t) // skips, or fails with CTHA_REQUIRE_NETNS=1
	if os.Geteuid() != 0 {
		requireNetns(t, "not root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		requireNetns(t, "no ip command")
	}
	suffix := make([]byte, 4)
	rand.Read(suffix)
	l := &lab{A: "ctaddr" + hex.EncodeToString(suffix) + "a", B: "ctaddr" + hex.EncodeToString(suffix) + "b"}
	for _, ns := range []string{l.A, l.B} {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			requireNetns(t, "ip netns add: "+strings.TrimSpace(string(out)))
		}
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		})
	}
	ip(t, "-n", l.A, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", l.B)
	ip(t, "-n", l.A, "addr", "add", "10.10.1.2/24", "dev", "lan")
	ip(t, "-n", l.A, "addr", "add", "fd00:10:1::2/64", "dev", "lan", "nodad")
	ip(t, "-n", l.B, "addr", "add", "10.10.1.100/24", "dev", "eth0")
	ip(t, "-n", l.B, "addr", "add", "fd00:10:1::100/64", "dev", "eth0", "nodad")
	for _, ns := range []string{l.A, l.B} {
		ip(t, "-n", ns, "link", "set", "lo", "up")
	}
	ip(t, "-n", l.A, "link", "set", "lan", "up")
	ip(t, "-n", l.B, "link", "set", "eth0", "up")
	// IPv6 comes up on a veth only once the kernel's link watcher has seen
	// the carrier (up to a second later); until then B drops multicast
	// (Ip6InNoRoutes). A link-local address on both ends shows it is done.
	l.waitLinkLocal(t, l.A, "lan")
	l.waitLinkLocal(t, l.B, "eth0")
	// The default, made explicit: GARP must work without arp_accept.
	run(t, "ip", "netns", "exec", l.B, "sysctl", "-qw", "net.ipv4.conf.eth0.arp_accept=0")

	var links []struct {
		Address string `json:"address"`
	}
	ipJSON(t, &links, "-n", l.A, "link", "show", "lan")
	mac, err := net.ParseMAC(links[0].Address)
	if err != nil {
		t.Fatalf("MAC of lan: %v", err)
	}
	l.lanMAC = mac
	return l
}

// waitLinkLocal waits up to 3s for dev in ns to have an IPv6 link-local
// address (tentative or not).
func (l *lab) waitLinkLocal(t testing.TB, ns, dev string) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); ; {
		if strings.Contains(ip(t, "-n", ns, "-6", "addr", "show", "dev", dev, "scope", "link"), "fe80::") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s in %s has no IPv6 link-local address after 3s", dev, ns)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ip runs the ip command and fails the test on error.
func ip(t testing.TB, args ...string) string {
	t.Helper()
	return run(t, "ip", args...)
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ipJSON runs ip -j and decodes its output into v.
func ipJSON(t testing.TB, v any, args ...string) {
	t.Helper()
	out := ip(t, append([]string{"-j"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("ip -j %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// inNS runs f on an OS thread switched to namespace ns. The thread is never
// unlocked, so the runtime discards it when f is done: no other goroutine
// ever runs in ns by accident.
func inNS(t testing.TB, ns string, f func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromName(ns)
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		f()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatalf("enter namespace %s: %v", ns, err)
	}
}

// newManager runs addr.New in namespace A; every socket and handle the
// Manager opens stays bound to A whichever goroutine uses it later. The
// Manager is closed when the test ends.
func (l *lab) newManager(t testing.TB, c addr.Config) *addr.Manager {
	t.Helper()
	var (
		m   *addr.Manager
		err error
	)
	inNS(t, l.A, func() { m, err = addr.New(c, nil) })
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

// ipAddr is an address as `ip -j addr` shows it.
type ipAddr struct {
	Local     string `json:"local"`
	Prefixlen int    `json:"prefixlen"`
	Tentative bool   `json:"tentative"`
	NoDAD     bool   `json:"nodad"`
}

// addrsOf lists the addresses of dev in ns, keyed "addr/len".
func addrsOf(t testing.TB, ns, dev string) map[string]ipAddr {
	t.Helper()
	var links []struct {
		AddrInfo []ipAddr `json:"addr_info"`
	}
	ipJSON(t, &links, "-n", ns, "addr", "show", "dev", dev)
	got := map[string]ipAddr{}
	for _, l := range links {
		for _, a := range l.AddrInfo {
			got[a.Local+"/"+strconv.Itoa(a.Prefixlen)] = a
		}
	}
	return got
}

// neighMAC returns the MAC of B's neighbour entry for vip ("" if none).
func (l *lab) neighMAC(t testing.TB, vip string) string {
	t.Helper()
	var entries []struct {
		LLAddr string `json:"lladdr"`
	}
	ipJSON(t, &entries, "-n", l.B, "neigh", "show", vip, "dev", "eth0")
	if len(entries) == 0 {
		return ""
	}
	return entries[0].LLAddr
}

// waitNeigh polls B's neighbour entry for vip until it has mac, for up to 1s.
func (l *lab) waitNeigh(t testing.TB, vip string, mac net.HardwareAddr) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		got := l.neighMAC(t, vip)
		if got == mac.String() {
			return
		}
		if time.Now().After(deadline) {
			t.Logf("B's neighbours:\n%s", ip(t, "-n", l.B, "-s", "neigh", "show"))
			t.Fatalf("B's neighbour entry for %s has %q after 1s, want %s", vip, got, mac)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
