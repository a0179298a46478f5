package lab

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestKeepalivedRender(t *testing.T) {
	c := KeepalivedConfig{
		RouterID:     "fw1",
		SyncGroup:    "fw",
		NotifyMaster: "/x/notify.sh master",
		Instances: []KeepalivedInstance{{
			Name: "lan", Interface: "lan", VRID: 51, Priority: 150,
			AdvertInterval: 500 * time.Millisecond,
			VIPs:           []netip.Prefix{LANVIP, LANVIP6},
			NoPreempt:      true,
		}, {
			Name: "wan", Interface: "wan", VRID: 52, Priority: 150, Version: 2,
			VIPs:         []netip.Prefix{WANVIP},
			UnicastSrc:   FW1WAN.Addr(),
			UnicastPeers: []netip.Addr{FW2WAN.Addr()},
			NotifyFault:  "/x/fault.sh",
		}},
	}
	want := `global_defs {
	router_id fw1
	script_user root
	enable_script_security
}
vrrp_sync_group fw {
	group {
		lan
		wan
	}
	notify_master "/x/notify.sh master"
}
vrrp_instance lan {
	state BACKUP
	interface lan
	virtual_router_id 51
	priority 150
	version 3
	advert_int 0.5
	nopreempt
	virtual_ipaddress {
		10.10.1.1/24 dev lan
	}
	virtual_ipaddress_excluded {
		fd00:10:1::1/64 dev lan
	}
}
vrrp_instance wan {
	state BACKUP
	interface wan
	virtual_router_id 52
	priority 150
	version 2
	advert_int 1
	unicast_src_ip 10.10.2.2
	unicast_peer {
		10.10.2.3
	}
	virtual_ipaddress {
		10.10.2.1/24 dev wan
	}
	notify_fault "/x/fault.sh"
}
`
	got, err := c.Render()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Render (-want +got):\n%s", diff)
	}
}

func TestKeepalivedRenderErrors(t *testing.T) {
	good := KeepalivedInstance{Name: "lan", Interface: "lan", VRID: 1, Priority: 100, VIPs: []netip.Prefix{LANVIP}}
	tests := []struct {
		name string
		c    KeepalivedConfig
		want []string // every one must be reported
	}{
		{"no instance", KeepalivedConfig{}, []string{"no vrrp instance"}},
		{"bad fields", KeepalivedConfig{Instances: []KeepalivedInstance{{
			Name: "a b", Interface: "lan", VRID: 256, Priority: 0, Version: 4,
			AdvertInterval: 5 * time.Millisecond,
		}}}, []string{"name", "vrid 256", "priority 0", "version 4", "advert interval 5ms", "no VIP"}},
		{"v2 fractional advert and v6", KeepalivedConfig{Instances: []KeepalivedInstance{{
			Name: "lan", Interface: "lan", VRID: 1, Priority: 100, Version: 2,
			AdvertInterval: 1500 * time.Millisecond, VIPs: []netip.Prefix{LANVIP6},
		}}}, []string{"whole seconds", "VRRPv2 has no IPv6"}},
		{"duplicate", KeepalivedConfig{Instances: []KeepalivedInstance{good, good}}, []string{"duplicate"}},
		{"auth", KeepalivedConfig{Instances: []KeepalivedInstance{{Name: "lan", Interface: "lan", VRID: 1, Priority: 100,
			VIPs: []netip.Prefix{LANVIP}, AuthType: "pass", AuthPass: "a b"}}}, []string{"auth type"}},
		{"group of one", KeepalivedConfig{SyncGroup: "g", Instances: []KeepalivedInstance{good}}, []string{"at least 2"}},
		{"group notify without group", KeepalivedConfig{NotifyMaster: "/x", Instances: []KeepalivedInstance{good}}, []string{"need a SyncGroup"}},
		{"quote in notify", KeepalivedConfig{Instances: []KeepalivedInstance{{
			Name: "lan", Interface: "lan", VRID: 1, Priority: 100, VIPs: []netip.Prefix{LANVIP},
			NotifyMaster: `/x "y"`,
		}}}, []string{"no quotes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.c.Render()
			if err == nil {
				t.Fatal("Render: no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestConntrackdRender(t *testing.T) {
	want := `Sync {
	Mode FTFW {
		DisableExternalCache off
		StartupResync off
	}
	UDP {
		IPv4_address 10.10.3.2
		IPv4_Destination_Address 10.10.3.1
		Port 3780
		Interface sync
		SndSocketBuffer 4194304
		RcvSocketBuffer 4194304
		Checksum on
	}
}
General {
	Systemd off
	LogFile off
	Syslog off
	HashSize 65536
	HashLimit 524288
	LockFile /d/conntrackd.lock
	UNIX {
		Path /d/conntrackd.ctl
	}
	NetlinkBufferSize 8388608
	NetlinkBufferSizeMaxGrowth 67108864
	Filter From Userspace {
		Protocol Accept {
			TCP
			UDP
		}
		Address Ignore {
			IPv4_address 127.0.0.1
			IPv6_address ::1
			IPv4_address 10.10.1.3
			IPv6_address fd00:10:1::3
			IPv4_address 10.10.2.3
			IPv6_address fd00:10:2::3
			IPv4_address 10.10.3.2
			IPv6_address fd00:10:3::2
			IPv4_address 10.10.1.1
			IPv4_address 10.10.2.1
			IPv6_address fd00:10:1::1
			IPv6_address fd00:10:2::1
		}
	}
}
`
	got, err := ConntrackdConfig{}.Render(RoleFW2, "/d")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Render (-want +got):\n%s", diff)
	}
}

func TestConntrackdRenderErrors(t *testing.T) {
	tests := []struct {
		name string
		role string
		c    ConntrackdConfig
		want []string
	}{
		{"no sync addresses outside firewalls", RoleClient, ConntrackdConfig{}, []string{"LocalAddr and PeerAddr"}},
		{"bad mode and transport", RoleFW1, ConntrackdConfig{Mode: "FAST", Transport: "SCTP", Port: 70000},
			[]string{`mode "FAST"`, `transport "SCTP"`, "port 70000"}},
		{"mixed families", RoleFW1, ConntrackdConfig{PeerAddr: FW2Sync6.Addr()}, []string{"families differ"}},
		{"internal cache outside NOTRACK", RoleFW1, ConntrackdConfig{DisableInternalCache: true}, []string{"needs mode NOTRACK"}},
		{"alarm options", RoleFW1, ConntrackdConfig{Mode: "ALARM", StartupResync: true}, []string{"mode ALARM has no"}},
		{"unknown protocol", RoleFW1, ConntrackdConfig{Protocols: []string{"tcp"}}, []string{`protocol "tcp"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.c.Render(tt.role, "/d")
			if err == nil {
				t.Fatal("Render: no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestParseInvalidDrops(t *testing.T) {
	const head = `{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}, {"table": {"family": "inet", "name": "fw", "handle": 1}}, `
	const accept = `{"rule": {"family": "inet", "table": "fw", "chain": "forward", "handle": 2, "expr": [{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}, {"counter": {"packets": 7, "bytes": 9}}, {"accept": null}]}}`
	rule := func(right string, packets string) string {
		return `{"rule": {"family": "inet", "table": "fw", "chain": "forward", "handle": 6, "expr": [{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ` +
			right + `}}, {"counter": {"packets": ` + packets + `, "bytes": 0}}, {"drop": null}]}}`
	}
	tests := []struct {
		name    string
		json    string
		want    uint64
		wantErr error
	}{
		{"lab ruleset", head + accept + ", " + rule(`"invalid"`, "42") + "]}", 42, nil},
		{"list", head + rule(`["invalid", "untracked"]`, "3") + "]}", 3, nil},
		{"set", head + rule(`{"set": ["invalid"]}`, "4") + "]}", 4, nil},
		{"no invalid rule", head + accept + "]}", 0, ErrNoInvalidRule},
		{"empty ruleset", `{"nftables": [{"metainfo": {"version": "1.0.6"}}]}`, 0, ErrNoInvalidRule},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseInvalidDrops([]byte(tt.json))
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Errorf("parseInvalidDrops = %d, %v; want %d, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
	if _, err := parseInvalidDrops([]byte("{")); err == nil {
		t.Error("parseInvalidDrops of bad JSON: no error")
	}
}
