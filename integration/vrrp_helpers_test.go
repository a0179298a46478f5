package integration

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/lab"
)

// pairOpts describes one node of a VRRP-only pair in the lab: instances
// "lan" and "wan" (or "lan6"/"wan6") in sync group "fw".
type pairOpts struct {
	node         string
	priority     int
	advert       time.Duration
	version      int // 0: 3
	v6           bool
	noPreempt    bool
	preemptDelay time.Duration
	trackWAN     bool   // the lan instance tracks the wan link
	trackWeight  int    // with trackWAN: 0 = FAULT while down
	lanOnly      bool   // only the lan instance, outside any sync group
	unicastPeer  string // send adverts to this peer instead of multicast
	authType     string // "pass" or "ah": an authentication block with password
	password     string
}

func (o pairOpts) config() string {
	var b strings.Builder
	fmt.Fprintf(&b, "node_name = %q\nlog {\n  level = \"debug\"\n}\n", o.node)
	version := o.version
	if version == 0 {
		version = 3
	}
	lanVIP, wanVIP, suffix := lab.LANVIP, lab.WANVIP, ""
	if o.v6 {
		lanVIP, wanVIP, suffix = lab.LANVIP6, lab.WANVIP6, "6"
	}
	for i, in := range []struct {
		iface string
		vip   netip.Prefix
	}{{"lan", lanVIP}, {"wan", wanVIP}}[:2-btoi(o.lanOnly)] {
		fmt.Fprintf(&b, "vrrp_instance %q {\n  interface = %q\n  vrid = %d\n  priority = %d\n  version = %d\n  advert_interval = %q\n  virtual_ips = [%q]\n",
			in.iface+suffix, in.iface, 51+i, o.priority, version, o.advert.String(), in.vip.String())
		if o.unicastPeer != "" {
			fmt.Fprintf(&b, "  unicast_peers = [%q]\n", o.unicastPeer)
		}
		if o.noPreempt {
			b.WriteString("  preempt = false\n")
		}
		if o.preemptDelay > 0 {
			fmt.Fprintf(&b, "  preempt_delay = %q\n", o.preemptDelay.String())
		}
		if o.authType != "" {
			fmt.Fprintf(&b, "  authentication {\n    type = %q\n    password = %q\n  }\n", o.authType, o.password)
		}
		if o.trackWAN && in.iface == "lan" {
			fmt.Fprintf(&b, "  track_interface \"wan\" {\n    weight = %d\n  }\n", o.trackWeight)
		}
		b.WriteString("  garp {\n    repeat = 2\n    interval = \"10ms\"\n    delay = \"0s\"\n  }\n}\n")
	}
	if !o.lanOnly {
		fmt.Fprintf(&b, "sync_group \"fw\" {\n  instances = [\"lan%s\", \"wan%s\"]\n}\n", suffix, suffix)
	}
	return b.String()
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// states returns the node's instance states by name ("" on error).
func (n *node) states() map[string]string {
	st, err := n.status()
	if err != nil {
		return nil
	}
	out := map[string]string{}
	for _, in := range st.Instances {
		out[in.Name] = in.State
	}
	for _, g := range st.Groups {
		out["group:"+g.Name] = g.State
	}
	return out
}

// waitGroupState waits until the node's group "fw" is in state.
func waitGroupState(t testing.TB, n *node, state string, timeout time.Duration) {
	t.Helper()
	waitState(t, n, "group:fw", state, timeout)
}

// waitState waits until the node's instance (or "group:NAME") is in state.
func waitState(t testing.TB, n *node, name, state string, timeout time.Duration) {
	t.Helper()
	err := lab.WaitFor(timeout, 20*time.Millisecond, func() (bool, error) {
		return n.states()[name] == state, nil
	})
	if err != nil {
		t.Fatalf("%s: %s not %s within %v: states %v\n%s", n.role, name, state, timeout, n.states(), n.proc.Tail(30))
	}
}

// holdState checks that the node's name stays in state for d.
func holdState(t testing.TB, n *node, name, state string, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if got := n.states()[name]; got != state {
			t.Fatalf("%s: %s left %s (now %q) within %v\n%s", n.role, name, state, got, d, n.proc.Tail(30))
		}
	}
}

// waitVIP polls until vip is (or is not) on role's iface and returns how
// long that took from start.
func waitVIP(l *lab.Lab, role, iface string, vip netip.Addr, present bool, start time.Time, timeout time.Duration) (time.Duration, error) {
	for {
		has, err := l.HasAddr(role, iface, vip)
		if err == nil && has == present {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return time.Since(start), fmt.Errorf("%s on %s/%s: present=%v not reached within %v (last error %v)", vip, role, iface, present, timeout, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// macOf returns the MAC of role's interface.
func macOf(t testing.TB, l *lab.Lab, role, iface string) string {
	t.Helper()
	out := l.MustExec(t, role, "cat", "/sys/class/net/"+iface+"/address")
	return strings.TrimSpace(out)
}

// neighMAC returns the client's neighbour entry's MAC for addr ("" if none).
func neighMAC(l *lab.Lab, role string, addr netip.Addr) string {
	out, err := l.Exec(role, "ip", "neigh", "show", addr.String())
	if err != nil {
		return ""
	}
	f := strings.Fields(out)
	for i := range f {
		if f[i] == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

// masterDownInterval is RFC 5798's Master_Down_Interval for a backup of
// priority prio hearing adverts every interval.
func masterDownInterval(prio int, interval time.Duration) time.Duration {
	return 3*interval + time.Duration(256-prio)*interval/256
}

func skewTime(prio int, interval time.Duration) time.Duration {
	return time.Duration(256-prio) * interval / 256
}
