package vrrp

import (
	"net/netip"
	"strings"
	"testing"
)

// TestDiffExtras: VIPs on other interfaces and excluded ones reload live;
// routes, rules, track files and tracked processes need a restart.
func TestDiffExtras(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edit    func(in *Instance)
		live    bool
		restart string
	}{
		{"vip on another interface", func(in *Instance) {
			in.ExtraVIPs = []ExtraVIP{{Prefix: netip.MustParsePrefix("10.10.9.1/24"), Interface: "wan"}}
		}, true, ""},
		{"excluded vip", func(in *Instance) {
			in.ExtraVIPs = []ExtraVIP{{Prefix: netip.MustParsePrefix("203.0.113.5/32"), Interface: "lo", Excluded: true}}
		}, true, ""},
		{"route", func(in *Instance) {
			in.Routes = []Route{{To: netip.MustParsePrefix("198.51.100.0/24"), Dev: "lan"}}
		}, false, "virtual_routes"},
		{"rule", func(in *Instance) {
			in.Rules = []Rule{{From: netip.MustParsePrefix("10.10.1.0/24"), Table: 100}}
		}, false, "virtual_routes, virtual_rules"},
		{"track_file", func(in *Instance) { in.TrackFiles = []TrackFile{{Path: "/run/w", Weight: 1}} }, false, "trackers"},
		{"track_process", func(in *Instance) {
			in.TrackProcesses = []TrackProcess{{Name: "bird", Quorum: 1, QuorumMax: -1}}
		}, false, "trackers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old, nu := reloadBase(), reloadBase()
			tc.edit(&nu.Instances[0])
			changes, restart := diffInstances(old, nu)
			if got := len(changes) == 1 && changes[0].vips; got != tc.live {
				t.Errorf("live VIP change: %t, want %t (%+v)", got, tc.live, changes)
			}
			if got := strings.Join(restart, "; "); tc.restart == "" && got != "" || !strings.Contains(got, tc.restart) {
				t.Errorf("restart reasons %q, want %q", got, tc.restart)
			}
		})
	}
}
