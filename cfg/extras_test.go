package cfg

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestExtras: keepalived's everyday extras as the spec's example writes
// them, translated with their defaults.
func TestExtras(t *testing.T) {
	src := `
vrrp_instance "lan" {
  interface   = "lan"
  vrid        = 51
  virtual_ips = ["10.10.1.1/24", "10.10.2.1/24 dev wan", "10.10.1.9/32 dev lan"]
  excluded_virtual_ips = ["203.0.113.5/32 dev lo", "fd00:10:1::1/64"]
  virtual_routes = [{ to = "198.51.100.0/24", via = "10.10.2.254" },
                    { to = "2001:db8:5::/48", dev = "wan", table = 100, metric = 7 }]
  virtual_rules  = [{ from = "10.10.1.0/24", table = 100 },
                    { to = "2001:db8::/32", table = 200, priority = 1000 }]
  track_file "/run/ctha/weight" { weight = 10 }
  track_file "/run/ctha/other" { reverse = true }
  track_process "bird" { weight = -50 }
  track_process "/usr/sbin/bird -f" {
    full_command = true
    quorum       = 2
    quorum_max   = 3
    reverse      = true
  }
}
`
	c, diags := Parse([]byte(src), "x.hcl")
	if len(diags) > 0 {
		t.Fatalf("diagnostics: %v", lines(diags))
	}
	p := netip.MustParsePrefix
	got := c.Instances[0]
	want := Instance{
		VIPs: []netip.Prefix{p("10.10.1.1/24"), p("10.10.1.9/32")},
		ExtraVIPs: []ExtraVIP{
			{Prefix: p("10.10.2.1/24"), Interface: "wan"},
			{Prefix: p("203.0.113.5/32"), Interface: "lo", Excluded: true},
			{Prefix: p("fd00:10:1::1/64"), Interface: "lan", Excluded: true},
		},
		Routes: []Route{
			{To: p("198.51.100.0/24"), Via: netip.MustParseAddr("10.10.2.254")},
			{To: p("2001:db8:5::/48"), Dev: "wan", Table: 100, Metric: 7},
		},
		Rules: []Rule{
			{From: p("10.10.1.0/24"), Table: 100},
			{To: p("2001:db8::/32"), Table: 200, Priority: 1000},
		},
		TrackFiles: []TrackFile{
			{Path: "/run/ctha/weight", Weight: 10},
			{Path: "/run/ctha/other", Weight: 1, Reverse: true},
		},
		TrackProcesses: []TrackProcess{
			{Name: "bird", Quorum: 1, QuorumMax: -1, Weight: -50},
			{Name: "/usr/sbin/bird -f", FullCommand: true, Quorum: 2, QuorumMax: 3, Reverse: true},
		},
	}
	opts := cmpopts.IgnoreFields(Instance{}, "Name", "Interface", "VRID", "Priority", "Version", "Family",
		"AdvertInterval", "Preempt", "PreemptDelay", "GARP", "Notify")
	if diff := cmp.Diff(want, got, opts, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("instance (-want +got):\n%s", diff)
	}
	if got.Family != IPv4 {
		t.Errorf("family %v: the excluded IPv6 VIP must not count", got.Family)
	}
}

// TestExtrasDiagnostics: every mistake in the extras, each at its place.
func TestExtrasDiagnostics(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"vip dev syntax", `virtual_ips = ["10.10.1.1/24 on wan"]`,
			[]string{`x.hcl:5,18: virtual IP "10.10.1.1/24 on wan": write "ADDR/LEN" or "ADDR/LEN dev IFACE", e.g. "203.0.113.5/32 dev eth3"`}},
		{"vip bad dev", `virtual_ips = ["10.10.1.1/24 dev a/b"]`,
			[]string{`x.hcl:5,18: virtual IP "10.10.1.1/24 dev a/b": "a/b" is not a valid interface name (1-15 characters, no '/', ':' or spaces)`}},
		{"vip dev other family", `virtual_ips = ["10.10.1.1/24", "fd00::1/64 dev wan"]`,
			[]string{`x.hcl:5,34: virtual IP fd00::1/64 is IPv6 but 10.10.1.1/24 is IPv4; one instance's virtual IPs are all of one family (use a second instance)`}},
		{"excluded duplicate", "virtual_ips = [\"10.10.1.1/24\"]\n  excluded_virtual_ips = [\"10.10.1.1/32\"]",
			[]string{`x.hcl:6,27: excluded virtual IP 10.10.1.1 is listed twice`}},
		{"route without to", "virtual_ips = [\"10.10.1.1/24\"]\n  virtual_routes = [{ via = \"10.10.1.254\" }]",
			[]string{`x.hcl:6,21: a virtual route needs to, e.g. { to = "198.51.100.0/24", via = "192.0.2.254" }`}},
		{"route unknown key", "virtual_ips = [\"10.10.1.1/24\"]\n  virtual_routes = [{ to = \"10.9.0.0/16\", gw = \"10.10.1.254\" }]",
			[]string{`x.hcl:6,21: a virtual route needs via, dev or both`,
				`x.hcl:6,43: a virtual route has no key "gw" (it takes to, via, dev, table, metric)`}},
		{"route host bits", "virtual_ips = [\"10.10.1.1/24\"]\n  virtual_routes = [{ to = \"10.9.0.1/16\", dev = \"lan\" }]",
			[]string{`x.hcl:6,28: to "10.9.0.1/16" has host bits set; write 10.9.0.0/16`}},
		{"route mixed family", "virtual_ips = [\"10.10.1.1/24\"]\n  virtual_routes = [{ to = \"10.9.0.0/16\", via = \"fd00::1\" }]",
			[]string{`x.hcl:6,49: via fd00::1 is IPv6 but to 10.9.0.0/16 is IPv4`}},
		{"route bad table", "virtual_ips = [\"10.10.1.1/24\"]\n  virtual_routes = [{ to = \"10.9.0.0/16\", dev = \"lan\", table = 0 }]",
			[]string{`x.hcl:6,64: table must be a whole number from 1 to 4294967295, got 0`}},
		{"not a list", "virtual_ips = [\"10.10.1.1/24\"]\n  virtual_routes = { to = \"10.9.0.0/16\" }",
			[]string{`x.hcl:6,20: virtual_routes must be a list of objects, e.g. [{ to = "198.51.100.0/24", via = "192.0.2.254" }]`}},
		{"rule without table", "virtual_ips = [\"10.10.1.1/24\"]\n  virtual_rules = [{ from = \"10.10.1.0/24\" }]",
			[]string{`x.hcl:6,20: a virtual rule needs a table, e.g. { from = "192.0.2.0/24", table = 100 }`}},
		{"rule without selector", "virtual_ips = [\"10.10.1.1/24\"]\n  virtual_rules = [{ table = 100 }]",
			[]string{`x.hcl:6,20: a virtual rule needs from, to or both, e.g. { from = "192.0.2.0/24", table = 100 }`}},
		{"track_file relative", "virtual_ips = [\"10.10.1.1/24\"]\n  track_file \"weight\" { weight = 300 }",
			[]string{`x.hcl:6,14: track_file "weight": the file must be an absolute path, e.g. "/run/ctha/weight"`,
				`x.hcl:6,34: weight must be from -254 to 254, got 300`}},
		{"track_process long name", "virtual_ips = [\"10.10.1.1/24\"]\n  track_process \"a-name-longer-than-15\" {}",
			[]string{`x.hcl:6,17: track_process "a-name-longer-than-15": a process name (comm) is at most 15 characters; set full_command = true to match the command line instead`}},
		{"track_process quorum", "virtual_ips = [\"10.10.1.1/24\"]\n  track_process \"bird\" {\n    quorum = 3\n    quorum_max = 2\n  }",
			[]string{`x.hcl:8,18: quorum_max (2) must not be less than quorum (3)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "vrrp_instance \"lan\" {\n  interface = \"lan\"\n  vrid = 51\n\n  " + tc.body + "\n}\n"
			_, diags := Parse([]byte(src), "x.hcl")
			if diff := cmp.Diff(tc.want, lines(diags)); diff != "" {
				t.Errorf("diagnostics (-want +got):\n%s\n%s", diff, src)
			}
		})
	}
}

// TestExtrasHost: a VIP's interface that does not exist is an error, a
// route's and a track file's directory are warnings.
func TestExtrasHost(t *testing.T) {
	src := `vrrp_instance "lan" {
  interface   = "lan"
  vrid        = 51
  virtual_ips = ["10.10.1.1/24", "10.10.5.1/24 dev eth7"]
  excluded_virtual_ips = ["203.0.113.5/32 dev dummy0"]
  virtual_routes = [{ to = "198.51.100.0/24", dev = "eth8" }]
  track_file "/nowhere/weight" {}
}
`
	_, diags := ParseWith([]byte(src), "x.hcl", Options{Host: labFW1})
	want := []string{
		`x.hcl:4,34: virtual IP 10.10.5.1/24: interface "eth7" does not exist on this machine`,
		`x.hcl:5,27: excluded virtual IP 203.0.113.5/32: interface "dummy0" does not exist on this machine`,
		`x.hcl:6,53: warning: interface "eth8" does not exist on this machine; the route to 198.51.100.0/24 fails until it appears`,
		`x.hcl:7,14: warning: directory /nowhere does not exist; the file counts as 0 (keepalived's value for a missing file)`,
	}
	if diff := cmp.Diff(want, lines(diags)); diff != "" {
		t.Errorf("diagnostics (-want +got):\n%s", diff)
	}
}

// TestExtrasHostAfterInvalidRoute: a route's warning points at its own
// object even after an invalid route that was skipped.
func TestExtrasHostAfterInvalidRoute(t *testing.T) {
	src := `vrrp_instance "lan" {
  interface   = "lan"
  vrid        = 51
  virtual_ips = ["10.10.1.1/24"]
  virtual_routes = [{ to = "nonsense", dev = "lan" },
                    { to = "198.51.100.0/24", dev = "eth8" }]
}
`
	_, diags := ParseWith([]byte(src), "x.hcl", Options{Host: labFW1})
	var got []string
	for _, l := range lines(diags) {
		if strings.Contains(l, "eth8") {
			got = append(got, l)
		}
	}
	want := []string{`x.hcl:6,53: warning: interface "eth8" does not exist on this machine; the route to 198.51.100.0/24 fails until it appears`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("diagnostics (-want +got):\n%s\n%v", diff, lines(diags))
	}
}

// routeHost is labFW1 with routes of someone else's.
type routeHost struct {
	fakeHost
	routes map[int][]HostRoute
}

func (h routeHost) ForeignRoutes(table int) ([]HostRoute, error) { return h.routes[table], nil }

// TestExtrasRouteConflict: a virtual route whose place (table,
// destination, metric; IPv6's default metric is 1024) someone else's
// route holds is a warning; another metric is not.
func TestExtrasRouteConflict(t *testing.T) {
	src := `vrrp_instance "lan" {
  interface   = "lan"
  vrid        = 51
  virtual_ips = ["10.10.1.1/24"]
  virtual_routes = [{ to = "198.51.100.0/24", via = "10.10.2.254" },
                    { to = "2001:db8:5::/48", dev = "wan", table = 100 },
                    { to = "0.0.0.0/0", dev = "wan", metric = 50 }]
}
`
	h := routeHost{fakeHost: labFW1, routes: map[int][]HostRoute{
		254: {{To: netip.MustParsePrefix("198.51.100.0/24")}, {To: netip.MustParsePrefix("0.0.0.0/0"), Metric: 100}},
		100: {{To: netip.MustParsePrefix("2001:db8:5::/48"), Metric: 1024}},
	}}
	_, diags := ParseWith([]byte(src), "x.hcl", Options{Host: h})
	want := []string{
		`x.hcl:5,21: warning: a route to 198.51.100.0/24 with metric 0, not ctha's, is in table 254 on this machine: ctha will not replace it, nor add this route while it is there (give one of them another metric)`,
		`x.hcl:6,21: warning: a route to 2001:db8:5::/48 with metric 1024, not ctha's, is in table 100 on this machine: ctha will not replace it, nor add this route while it is there (give one of them another metric)`,
	}
	if diff := cmp.Diff(want, lines(diags)); diff != "" {
		t.Errorf("diagnostics (-want +got):\n%s", diff)
	}
}
