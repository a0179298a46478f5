package vrrp

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func reloadBase() Config {
	return Config{
		Instances: []Instance{
			{Name: "lan", Interface: "lan", VRID: 51, Priority: 150, Version: 3, Family: IPv4,
				AdvertInterval: time.Second, Preempt: true,
				VIPs: []netip.Prefix{netip.MustParsePrefix("10.10.1.1/24")}},
			{Name: "wan", Interface: "wan", VRID: 52, Priority: 150, Version: 3, Family: IPv4,
				AdvertInterval: time.Second, Preempt: true,
				VIPs: []netip.Prefix{netip.MustParsePrefix("10.10.2.1/24")}},
		},
		SyncGroups: []SyncGroup{{Name: "fw", Instances: []string{"lan", "wan"}, Conntrack: true}},
	}
}

func TestDiffInstances(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(c *Config)
		changes []string // instance: what, for the live changes
		restart string   // substring of the restart reasons; "" = none
	}{
		{name: "same", edit: func(*Config) {}},
		{name: "priority and an extra VIP", edit: func(c *Config) {
			c.Instances[0].Priority = 160
			c.Instances[0].VIPs = append(c.Instances[0].VIPs, netip.MustParsePrefix("10.10.1.5/24"))
		}, changes: []string{"lan: priority 150 -> 160, virtual_ips +[10.10.1.5/24] -[]"}},
		{name: "advert interval, preemption, garp", edit: func(c *Config) {
			c.Instances[1].AdvertInterval = 300 * time.Millisecond
			c.Instances[1].Preempt = false
			c.Instances[1].GARP.Repeat = 3
		}, changes: []string{"wan: advert_interval 1s -> 300ms, preempt true (delay 0s) -> false (delay 0s), garp"}},
		{name: "vrid", edit: func(c *Config) { c.Instances[0].VRID = 9 }, restart: "instance lan: vrid"},
		{name: "interface", edit: func(c *Config) { c.Instances[1].Interface = "eth9" }, restart: "instance wan: interface"},
		{name: "instance added", edit: func(c *Config) {
			c.Instances = append(c.Instances, Instance{Name: "dmz", Interface: "dmz", VRID: 53})
		}, restart: "instances [lan wan] become [lan wan dmz]"},
		{name: "group membership", edit: func(c *Config) { c.SyncGroups[0].Instances = []string{"lan"} },
			restart: "sync group fw: instances change"},
		{name: "tracker", edit: func(c *Config) {
			c.Instances[0].TrackInterface = []TrackInterface{{Name: "sync", Weight: -20}}
		}, restart: "instance lan: trackers"},
		{name: "address owner", edit: func(c *Config) { c.Instances[0].Priority = 255 }, restart: "address owner"},
		{name: "authentication", edit: func(c *Config) { c.Instances[0].Auth = Auth{Type: AuthPass, Password: pw1} },
			restart: "instance lan: authentication"},
		{name: "VIPs of a virtual MAC", edit: func(c *Config) {
			c.Instances[0].VirtualMAC = true
		}, restart: "virtual_mac"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old, new := reloadBase(), reloadBase()
			tt.edit(&new)
			changes, restart := diffInstances(old, new)
			var got []string
			for _, ch := range changes {
				got = append(got, ch.in.Name+": "+strings.Join(ch.what, ", "))
			}
			if !slices.Equal(got, tt.changes) {
				t.Errorf("changes %q, want %q", got, tt.changes)
			}
			joined := strings.Join(restart, "; ")
			if (tt.restart == "") != (joined == "") || !strings.Contains(joined, tt.restart) {
				t.Errorf("restart reasons %q, want one containing %q", joined, tt.restart)
			}
		})
	}
}

func TestReconfigureMasterNoTransition(t *testing.T) {
	tg := newTestGroup(t, 150, nil)
	tg.at(4 * time.Second)
	tg.timer()
	if tg.state != Master {
		t.Fatalf("setup: group %v", tg.state)
	}
	transitions := tg.members[0].stats.transitions.Load()
	in := tg.members[0].cfg
	in.Priority = 160
	in.VIPs = append(slices.Clone(in.VIPs), netip.MustParsePrefix("10.10.1.5/24"))
	nv := &fakeVIPs{}
	old := tg.vips[0]
	tg.reconfigure(0, in, nv)

	if tg.state != Master || tg.members[0].m.State != Master {
		t.Fatalf("group %v, lan %v after reload; want MASTER", tg.state, tg.members[0].m.State)
	}
	if got := tg.members[0].stats.transitions.Load(); got != transitions {
		t.Errorf("transitions %d -> %d: the reload made one", transitions, got)
	}
	if !nv.up || nv.ups != 1 {
		t.Errorf("new VIPs: up %v after %d Up calls; want up once", nv.up, nv.ups)
	}
	if !slices.Equal(old.retired, in.VIPs) || old.downs != 0 {
		t.Errorf("old VIPs retired keeping %v with %d Down calls; want %v kept, no Down", old.retired, old.downs, in.VIPs)
	}
	if got := tg.members[0].m.EffPriority; got != 160 {
		t.Errorf("effective priority %d, want 160", got)
	}
	recv := tg.members[0].recv.Load()
	if !slices.Equal(recv.vips, vipAddrs(in.VIPs)) {
		t.Errorf("advertised addresses %v, want %v", recv.vips, in.VIPs)
	}
	// The next advert carries the new priority and both addresses.
	tg.at(5 * time.Second)
	tg.timer()
	if got := tg.conns[0].lastPriority(); got != 160 {
		t.Errorf("next advert priority %d, want 160", got)
	}
}

func TestReconfigureBackup(t *testing.T) {
	tg := newTestGroup(t, 100, nil)
	tg.at(time.Second)
	tg.advert(0, peer, 150)
	tg.advert(1, netip.MustParseAddr("10.10.2.3"), 150)
	if tg.state != Backup {
		t.Fatalf("setup: group %v", tg.state)
	}
	// A higher priority still below the master's: no transition, VIPs stay down.
	in := tg.members[0].cfg
	in.Priority = 120
	in.VIPs = append(slices.Clone(in.VIPs), netip.MustParsePrefix("10.10.1.5/24"))
	nv := &fakeVIPs{}
	tg.reconfigure(0, in, nv)
	if tg.state != Backup || nv.ups != 0 {
		t.Fatalf("group %v, new VIPs brought up %d times; want BACKUP and none", tg.state, nv.ups)
	}
	// Above the master's: a backup that now outranks it preempts, as a
	// tracker change would make it.
	in.Priority = 200
	tg.reconfigure(0, in, nil)
	if !tg.taking && tg.state != Master {
		t.Errorf("priority 200 over a master at 150: group %v, no takeover started", tg.state)
	}
}
