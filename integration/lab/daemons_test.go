package lab_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/lab"
)

func TestKeepalived(t *testing.T) {
	lab.RequireNetns(t)
	lab.RequireCommands(t, "keepalived")
	l := lab.New(t, lab.Options{})

	dir := t.TempDir()
	flag := filepath.Join(dir, "master")
	script := filepath.Join(dir, "notify.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$@\" >> "+flag+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// fw2 runs other options on the WAN side and the sync link at the same
	// time, so its config passes keepalived's config test too.
	p2 := l.StartKeepalived(t, lab.RoleFW2, lab.KeepalivedConfig{
		SyncGroup:    "fw",
		NotifyMaster: script + " group",
		Instances: []lab.KeepalivedInstance{{
			Name: "wan", Interface: "wan", VRID: 61, Priority: 100, Version: 2,
			VIPs:         []netip.Prefix{lab.WANVIP, lab.WANVIP6},
			NoPreempt:    true,
			UnicastSrc:   lab.FW2WAN.Addr(),
			UnicastPeers: []netip.Addr{lab.FW1WAN.Addr()},
		}, {
			Name: "sync", Interface: "sync", VRID: 62, Priority: 100,
			AdvertInterval: 300 * time.Millisecond,
			VIPs:           []netip.Prefix{netip.MustParsePrefix("fd00:10:3::fe/64")},
		}},
	})
	p := l.StartKeepalived(t, lab.RoleFW1, lab.KeepalivedConfig{
		Instances: []lab.KeepalivedInstance{{
			Name: "lan", Interface: "lan", VRID: 51, Priority: 150, Version: 3,
			AdvertInterval: time.Second,
			VIPs:           []netip.Prefix{lab.LANVIP},
			NotifyMaster:   script + " lan",
		}, {
			Name: "lan6", Interface: "lan", VRID: 52, Priority: 150, Version: 3,
			AdvertInterval: time.Second,
			VIPs:           []netip.Prefix{lab.LANVIP6},
		}},
	})

	vips := []netip.Prefix{lab.LANVIP, lab.LANVIP6}
	waitVIPs := []struct {
		p      *lab.Proc
		ifname string
		vips   []netip.Prefix
	}{
		{p, "lan", vips},
		{p2, "wan", []netip.Prefix{lab.WANVIP, lab.WANVIP6}},
		{p2, "sync", []netip.Prefix{netip.MustParsePrefix("fd00:10:3::fe/64")}},
	}
	for _, w := range waitVIPs {
		for _, vip := range w.vips {
			err := lab.WaitFor(10*time.Second, 100*time.Millisecond, func() (bool, error) {
				return l.HasAddr(w.p.Role, w.ifname, vip.Addr())
			})
			if err != nil {
				t.Fatalf("VIP %v never on %s %s: %v", vip, w.p.Role, w.ifname, err)
			}
		}
	}
	t.Logf("VIPs up after %v", time.Since(start))
	err := lab.WaitFor(5*time.Second, 100*time.Millisecond, func() (bool, error) {
		b, err := os.ReadFile(flag)
		return strings.Contains(string(b), "lan") && strings.Contains(string(b), "group"), err
	})
	if err != nil {
		t.Errorf("notify_master scripts did not run: %v", err)
	}
	if err := p2.Stop(10 * time.Second); err != nil {
		t.Errorf("stop keepalived in fw2: %v", err)
	}

	stopStart := time.Now()
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatalf("stop keepalived: %v", err)
	}
	t.Logf("keepalived stopped in %v", time.Since(stopStart))
	for _, vip := range vips {
		if has, err := l.HasAddr(lab.RoleFW1, "lan", vip.Addr()); err != nil || has {
			t.Errorf("VIP %v on fw1 lan after stop: %v, %v", vip, has, err)
		}
	}
}

func TestConntrackd(t *testing.T) {
	lab.RequireNetns(t)
	lab.RequireCommands(t, "conntrackd", "conntrack")
	l := lab.New(t, lab.Options{})

	d1 := l.StartConntrackd(t, lab.RoleFW1, lab.ConntrackdConfig{})
	d2 := l.StartConntrackd(t, lab.RoleFW2, lab.ConntrackdConfig{})
	for _, d := range []*lab.Conntrackd{d1, d2} {
		err := lab.WaitFor(5*time.Second, 100*time.Millisecond, func() (bool, error) {
			out, err := d.Ctl("-s")
			return strings.Contains(out, "cache internal"), err
		})
		if err != nil {
			t.Fatalf("%s -s: %v", d.Name, err)
		}
	}

	// A flow of the firewall itself first (the ignore filter must keep it
	// out of both caches), then a forwarded one.
	l.MustExec(t, lab.RoleFW1, "conntrack", "-I", "-p", "tcp",
		"-s", lab.FW1LAN.Addr().String(), "-d", lab.ClientAddr.Addr().String(),
		"--sport", "22", "--dport", "40001", "--state", "ESTABLISHED", "-t", "120")
	l.MustExec(t, lab.RoleFW1, "conntrack", "-I", "-p", "tcp",
		"-s", lab.ClientAddr.Addr().String(), "-d", lab.ServerAddr.Addr().String(),
		"--sport", "40000", "--dport", "5001", "--state", "ESTABLISHED",
		"-t", "120", "-u", "ASSURED")
	want := "src=" + lab.ClientAddr.Addr().String() + " dst=" + lab.ServerAddr.Addr().String() + " sport=40000 dport=5001"
	start := time.Now()
	var out string
	err := lab.WaitFor(10*time.Second, 100*time.Millisecond, func() (bool, error) {
		var err error
		out, err = d2.Ctl("-e")
		return strings.Contains(out, want), err
	})
	if err != nil {
		t.Fatalf("flow not in fw2's external cache: %v\nfw2 -e:\n%s\nfw1 -i:\n%s", err, out, must(d1.Ctl("-i")))
	}
	t.Logf("flow replicated after %v", time.Since(start))

	// Events are handled in order: the local flow was seen and ignored.
	if out := must(d1.Ctl("-i")); strings.Contains(out, "sport=22 ") {
		t.Errorf("fw1 internal cache has a local flow:\n%s", out)
	}
	if strings.Contains(out, "sport=22 ") {
		t.Errorf("fw2 external cache has a local flow:\n%s", out)
	}

	for _, d := range []*lab.Conntrackd{d1, d2} {
		if err := d.Stop(10 * time.Second); err != nil {
			t.Errorf("stop %s: %v", d.Name, err)
		}
		if _, err := os.Stat(filepath.Join(d.Dir, "conntrackd.lock")); !os.IsNotExist(err) {
			t.Errorf("%s: lock file left after SIGTERM: %v", d.Name, err)
		}
	}
}

// TestConntrackdModes checks that other configurations replicate too.
func TestConntrackdModes(t *testing.T) {
	lab.RequireNetns(t)
	lab.RequireCommands(t, "conntrackd", "conntrack")
	l := lab.New(t, lab.Options{})
	tests := []struct {
		name    string
		c1, c2  lab.ConntrackdConfig
		inTable bool // the flow goes to fw2's kernel table, not its external cache
	}{
		{name: "FTFW over IPv6",
			c1: lab.ConntrackdConfig{LocalAddr: lab.FW1Sync6.Addr(), PeerAddr: lab.FW2Sync6.Addr()},
			c2: lab.ConntrackdConfig{LocalAddr: lab.FW2Sync6.Addr(), PeerAddr: lab.FW1Sync6.Addr()}},
		{name: "FTFW without external cache",
			c1:      lab.ConntrackdConfig{DisableExternalCache: true},
			c2:      lab.ConntrackdConfig{DisableExternalCache: true},
			inTable: true},
		{name: "NOTRACK over TCP",
			c1: lab.ConntrackdConfig{Mode: "NOTRACK", Transport: "TCP", DisableInternalCache: true},
			c2: lab.ConntrackdConfig{Mode: "NOTRACK", Transport: "TCP", DisableInternalCache: true}},
		{name: "ALARM",
			c1: lab.ConntrackdConfig{Mode: "ALARM", RefreshTime: 5 * time.Second, CacheTimeout: 30 * time.Second},
			c2: lab.ConntrackdConfig{Mode: "ALARM", RefreshTime: 5 * time.Second, CacheTimeout: 30 * time.Second}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d1 := l.StartConntrackd(t, lab.RoleFW1, tt.c1)
			d2 := l.StartConntrackd(t, lab.RoleFW2, tt.c2)
			sport := strconv.Itoa(41000 + i)
			l.MustExec(t, lab.RoleFW1, "conntrack", "-I", "-p", "tcp",
				"-s", lab.ClientAddr.Addr().String(), "-d", lab.ServerAddr.Addr().String(),
				"--sport", sport, "--dport", "5001", "--state", "ESTABLISHED",
				"-t", "120", "-u", "ASSURED")
			var out string
			err := lab.WaitFor(10*time.Second, 100*time.Millisecond, func() (bool, error) {
				var err error
				if tt.inTable {
					out, err = l.Exec(lab.RoleFW2, "conntrack", "-L", "-p", "tcp", "--sport", sport)
				} else {
					out, err = d2.Ctl("-e")
				}
				return strings.Contains(out, "sport="+sport+" "), err
			})
			if err != nil {
				t.Errorf("flow with sport %s not replicated to fw2: %v\n%s", sport, err, out)
			}
			for _, d := range []*lab.Conntrackd{d1, d2} {
				if err := d.Stop(10 * time.Second); err != nil {
					t.Errorf("stop %s: %v", d.Name, err)
				}
			}
		})
	}
}

func must(out string, err error) string {
	if err != nil {
		return out + "\n" + err.Error()
	}
	return out
}
