package integration

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/lab"
	"github.com/ctha/ctha/internal/control"
	"github.com/ctha/ctha/vrrp/packet"
)

// TestVRRPVirtualMAC: with virtual_mac the client resolves the VIP to
// 00:00:5e:00:01:VRID, and still does after a failover: its neighbour
// entry never has to change.
func TestVRRPVirtualMAC(t *testing.T) {
	lab.RequireNetns(t)
	const advert = 100 * time.Millisecond
	l := lab.New(t, lab.Options{NoIPv6: true})
	conf := func(node string, prio int) string {
		c := pairOpts{node: node, priority: prio, advert: advert, lanOnly: true}.config()
		return strings.Replace(c, "  virtual_ips", "  virtual_mac = true\n  virtual_ips", 1)
	}
	fw1 := startNode(t, l, lab.RoleFW1, conf("fw1", 150))
	waitState(t, fw1, "lan", "MASTER", 3*time.Second)
	fw2 := startNode(t, l, lab.RoleFW2, conf("fw2", 100))
	waitState(t, fw2, "lan", "BACKUP", 3*time.Second)

	const vmac = "00:00:5e:00:01:33" // VRID 51
	vip := lab.LANVIP.Addr()
	l.MustExec(t, lab.RoleClient, "ping", "-c1", "-W1", vip.String())
	if got := neighMAC(l, lab.RoleClient, vip); got != vmac {
		t.Fatalf("client resolves %s to %q, want the virtual MAC %s", vip, got, vmac)
	}
	fw1.proc.Kill()
	l.SetLink(lab.RoleFW1, "lan", false)
	waitState(t, fw2, "lan", "MASTER", 3*time.Second)
	l.MustExec(t, lab.RoleClient, "ping", "-c1", "-W1", vip.String())
	if got := neighMAC(l, lab.RoleClient, vip); got != vmac {
		t.Errorf("after the failover the client resolves %s to %q, want still %s", vip, got, vmac)
	}
}

// TestVRRPTrackScript: a failing track script with weight 0 puts the
// instance in FAULT after fall failures, and it recovers after rise
// successes.
func TestVRRPTrackScript(t *testing.T) {
	lab.RequireNetns(t)
	const advert = 100 * time.Millisecond
	l := lab.New(t, lab.Options{NoIPv6: true})
	flag := filepath.Join(t.TempDir(), "healthy")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c := pairOpts{node: "fw1", priority: 150, advert: advert, lanOnly: true}.config()
	c = strings.Replace(c, "  virtual_ips", "  track_scripts = [\"healthy\"]\n  virtual_ips", 1)
	c += fmt.Sprintf("track_script \"healthy\" {\n  command = [\"/usr/bin/test\", \"-e\", %q]\n  interval = \"100ms\"\n  timeout = \"100ms\"\n  rise = 2\n  fall = 2\n}\n", flag)
	fw1 := startNode(t, l, lab.RoleFW1, c)
	waitState(t, fw1, "lan", "MASTER", 3*time.Second)
	fw2 := startNode(t, l, lab.RoleFW2, pairOpts{node: "fw2", priority: 100, advert: advert, lanOnly: true}.config())
	waitState(t, fw2, "lan", "BACKUP", 3*time.Second)

	os.Remove(flag)
	waitState(t, fw1, "lan", "FAULT", 2*time.Second)
	waitState(t, fw2, "lan", "MASTER", 2*time.Second)
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitState(t, fw1, "lan", "MASTER", 3*time.Second)
	waitState(t, fw2, "lan", "BACKUP", 2*time.Second)
}

// TestVRRPUnicast: with unicast_peers the pair elects and fails over
// without multicast, and the adverts go to the peer's address.
func TestVRRPUnicast(t *testing.T) {
	lab.RequireNetns(t)
	const advert = 100 * time.Millisecond
	l := lab.New(t, lab.Options{NoIPv6: true})
	fw1 := startNode(t, l, lab.RoleFW1, pairOpts{node: "fw1", priority: 150, advert: advert, lanOnly: true,
		unicastPeer: lab.FW2LAN.Addr().String()}.config())
	waitState(t, fw1, "lan", "MASTER", 3*time.Second)
	fw2 := startNode(t, l, lab.RoleFW2, pairOpts{node: "fw2", priority: 100, advert: advert, lanOnly: true,
		unicastPeer: lab.FW1LAN.Addr().String()}.config())
	waitState(t, fw2, "lan", "BACKUP", 3*time.Second)
	holdState(t, fw2, "lan", "BACKUP", 5*advert) // it hears fw1's unicast adverts

	// What a forged advert on the LAN can do (README, "VRRP on the LAN"):
	// with unicast_peers, one from any other source, however good its
	// priority, is dropped and counted, sent to fw2 or to the group.
	inj := malfOpenInjector(t, l.NS(lab.RoleClient), "eth0", lab.ClientAddr.Addr())
	before := malfMustStats(t, fw2)
	forged := func(dst netip.Addr) []byte {
		ad := packet.Advert{Version: 3, VRID: 51, Priority: 254, Interval: advert, Addrs: []netip.Addr{lab.LANVIP.Addr()}}
		b, err := ad.Append(nil, lab.ClientAddr.Addr(), dst)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	const copies = 20
	for range copies {
		if err := inj.sendTo(forged(lab.FW2LAN.Addr()), lab.FW2LAN.Addr()); err != nil {
			t.Fatal(err)
		}
		if err := inj.send(packet.TTL, forged(packet.Group4)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Millisecond)
	}
	var after control.VRRPStats
	if err := lab.WaitFor(3*time.Second, 50*time.Millisecond, func() (bool, error) {
		s, err := malfLANStats(fw2)
		after = s
		return err == nil && s.Drops["peer"]-before.Drops["peer"] >= copies, err
	}); err != nil {
		t.Errorf("fw2 counted %d forged adverts as not from its peer, want at least %d (drops %v)",
			after.Drops["peer"]-before.Drops["peer"], copies, malfDropDeltas(before, after))
	}
	holdState(t, fw2, "lan", "BACKUP", 5*advert)
	if after.Transitions != before.Transitions {
		t.Errorf("fw2 moved %d times on forged adverts", after.Transitions-before.Transitions)
	}

	out := l.MustExec(t, lab.RoleFW2, "timeout", "5", "tcpdump", "-i", "lan", "-n", "-c", "3", "ip proto 112")
	if !strings.Contains(out, lab.FW1LAN.Addr().String()+" > "+lab.FW2LAN.Addr().String()) || strings.Contains(out, "224.0.0.18") {
		t.Errorf("adverts are not unicast from fw1 to fw2:\n%s", out)
	}
	fw1.proc.Kill()
	waitState(t, fw2, "lan", "MASTER", 2*time.Second)
}

// TestVRRPStaleVIPs: a crashed master leaves its VIPs behind; when ctha
// starts again there, it removes them before the election.
func TestVRRPStaleVIPs(t *testing.T) {
	lab.RequireNetns(t)
	const advert = 100 * time.Millisecond
	l := lab.New(t, lab.Options{NoIPv6: true})
	vip := lab.LANVIP.Addr()
	fw1 := startNode(t, l, lab.RoleFW1, pairOpts{node: "fw1", priority: 150, advert: advert, lanOnly: true}.config())
	waitState(t, fw1, "lan", "MASTER", 3*time.Second)
	fw1.proc.Kill() // a crash: nothing removes the VIP
	if has, _ := l.HasAddr(lab.RoleFW1, "lan", vip); !has {
		t.Fatalf("setup: the killed node's VIP is gone; cannot test stale removal")
	}
	fw2 := startNode(t, l, lab.RoleFW2, pairOpts{node: "fw2", priority: 100, advert: advert, lanOnly: true}.config())
	waitState(t, fw2, "lan", "MASTER", 3*time.Second)

	// fw1 comes back without preemption: it must not keep the old VIP.
	fw1 = startNode(t, l, lab.RoleFW1, pairOpts{node: "fw1", priority: 150, advert: advert, lanOnly: true, noPreempt: true}.config())
	waitState(t, fw1, "lan", "BACKUP", 3*time.Second)
	if has, _ := l.HasAddr(lab.RoleFW1, "lan", vip); has {
		t.Errorf("the restarted backup still holds the VIP left by the crash")
	}
	if !strings.Contains(fw1.proc.Log(), "removed virtual IPs left by an earlier run") {
		t.Errorf("the removal was not logged:\n%s", fw1.proc.Tail(10))
	}
}

// TestVIPReconcile: a VIP removed under the master (`ip addr del`, what a
// networkd or ifupdown restart does) is put back within a second, logged
// and counted; a VIP of ours added on the backup is removed; neither
// moves the pair.
func TestVIPReconcile(t *testing.T) {
	lab.RequireNetns(t)
	const advert = 100 * time.Millisecond
	l, fw1, fw2 := startLANPair(t, advert)
	vip := lab.LANVIP
	before1, before2 := malfMustStats(t, fw1), malfMustStats(t, fw2)

	del := time.Now()
	l.MustExec(t, lab.RoleFW1, "ip", "addr", "del", vip.String(), "dev", "lan")
	took, err := waitVIP(l, lab.RoleFW1, "lan", vip.Addr(), true, del, time.Second)
	if err != nil {
		t.Fatalf("the master did not put back its VIP: %v\n%s", err, fw1.proc.Tail(10))
	}
	if !strings.Contains(fw1.proc.Log(), "removed under the master by someone else: restored") {
		t.Errorf("the restoration was not logged:\n%s", fw1.proc.Tail(10))
	}

	add := time.Now()
	l.MustExec(t, lab.RoleFW2, "ip", "addr", "add", vip.String(), "dev", "lan")
	tookOff, err := waitVIP(l, lab.RoleFW2, "lan", vip.Addr(), false, add, time.Second)
	if err != nil {
		t.Fatalf("the backup kept a VIP of ours: %v\n%s", err, fw2.proc.Tail(10))
	}

	after1, after2 := malfMustStats(t, fw1), malfMustStats(t, fw2)
	t.Logf("figure: VIP deleted on the master back after %v; added on the backup removed after %v", took.Round(time.Millisecond), tookOff.Round(time.Millisecond))
	if after1.VIPsRestored-before1.VIPsRestored != 1 || after2.VIPsRemoved-before2.VIPsRemoved != 1 {
		t.Errorf("vips_restored on fw1 +%d, vips_removed on fw2 +%d; want +1 each",
			after1.VIPsRestored-before1.VIPsRestored, after2.VIPsRemoved-before2.VIPsRemoved)
	}
	if after1.Transitions != before1.Transitions || after2.Transitions != before2.Transitions {
		t.Errorf("transitions: fw1 +%d, fw2 +%d; want none", after1.Transitions-before1.Transitions, after2.Transitions-before2.Transitions)
	}
	m := l.MustExec(t, lab.RoleFW1, "curl", "-sf", "http://127.0.0.1:9477/metrics")
	if !strings.Contains(m, `ctha_vrrp_vips_restored_total{instance="lan"} 1`) {
		t.Errorf("metrics lack ctha_vrrp_vips_restored_total 1 for lan")
	}
}

// TestInterfaceRecreated: the master's VRRP interface is deleted and
// created again a second later under the same name, with a new index and
// its addresses added back (as ifupdown or networkd rebuild a VLAN or a
// bond). While it is gone, the backup holds the VIP; then the master
// reopens its socket and addresses on the new interface and preempts.
// Never do both hold the VIP for longer than a preemption takes.
func TestInterfaceRecreated(t *testing.T) {
	lab.RequireNetns(t)
	const advert = 100 * time.Millisecond
	l, fw1, fw2 := startLANPair(t, advert)
	vip := lab.LANVIP.Addr()

	recreated := make(chan error, 1)
	go func() { recreated <- l.RecreateLink(lab.RoleFW1, "lan", time.Second) }()
	var both, longestBoth time.Duration
	fw2Alone := false
	last := time.Now()
	for end := time.Now().Add(8 * time.Second); time.Now().Before(end); {
		has1, err1 := l.HasAddr(lab.RoleFW1, "lan", vip)
		has2, err2 := l.HasAddr(lab.RoleFW2, "lan", vip)
		now := time.Now()
		if err2 != nil {
			t.Fatalf("fw2's addresses: %v", err2)
		}
		// While fw1's lan is gone, fw1 holds nothing (err1: no such
		// interface).
		has1 = has1 && err1 == nil
		if has1 && has2 {
			both += now.Sub(last)
			longestBoth = max(longestBoth, both)
		} else {
			both = 0
		}
		fw2Alone = fw2Alone || has2 && !has1
		last = now
		time.Sleep(10 * time.Millisecond)
	}
	if err := <-recreated; err != nil {
		t.Fatal(err)
	}
	t.Logf("figure: both nodes held the VIP for at most %v in a row", longestBoth.Round(time.Millisecond))
	if longestBoth > 3*advert {
		t.Errorf("both nodes held the VIP for %v in a row\nfw1:\n%s\nfw2:\n%s", longestBoth, fw1.proc.Tail(15), fw2.proc.Tail(10))
	}
	if !fw2Alone {
		t.Errorf("fw2 never held the VIP alone while fw1's lan was gone\n%s", fw2.proc.Tail(10))
	}
	waitState(t, fw1, "lan", "MASTER", 3*time.Second)
	waitState(t, fw2, "lan", "BACKUP", 3*time.Second)
	if has, err := l.HasAddr(lab.RoleFW1, "lan", vip); err != nil || !has {
		t.Errorf("fw1 master without the VIP on its new lan (%v)\n%s", err, fw1.proc.Tail(15))
	}
	if has, _ := l.HasAddr(lab.RoleFW2, "lan", vip); has {
		t.Errorf("fw2 still holds the VIP")
	}
	if !strings.Contains(fw1.proc.Log(), "instance reopened on its new interface") {
		t.Errorf("fw1 did not log the reopening:\n%s", fw1.proc.Tail(15))
	}
}

// startLANPair starts a pair of lan-only instances in a new IPv4 lab, fw1
// (priority 150) master and fw2 (100) backup.
func startLANPair(t *testing.T, advert time.Duration) (*lab.Lab, *node, *node) {
	t.Helper()
	l := lab.New(t, lab.Options{NoIPv6: true})
	fw1 := startNode(t, l, lab.RoleFW1, pairOpts{node: "fw1", priority: 150, advert: advert, lanOnly: true}.config())
	waitState(t, fw1, "lan", "MASTER", 3*time.Second)
	fw2 := startNode(t, l, lab.RoleFW2, pairOpts{node: "fw2", priority: 100, advert: advert, lanOnly: true}.config())
	waitState(t, fw2, "lan", "BACKUP", 3*time.Second)
	return l, fw1, fw2
}
