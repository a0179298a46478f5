package integration

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/unit"
	"github.com/ctha/ctha/integration/lab"
)

// TestExampleNft loads examples/ctha.nft into a lab firewall, twice (the
// file must be re-loadable), and checks its chains exist.
func TestExampleNft(t *testing.T) {
	lab.RequireNetns(t)
	l := lab.New(t, lab.Options{NoIPv6: true})
	path, _ := filepath.Abs(filepath.Join("..", "examples", "ctha.nft"))
	for range 2 {
		l.MustExec(t, lab.RoleFW1, "nft", "-f", path)
	}
	out := l.MustExec(t, lab.RoleFW1, "nft", "list", "table", "inet", "ctha")
	for _, want := range []string{"chain raw_prerouting", "chain raw_output", "chain input", "notrack", "udp dport 3780",
		`ip protocol ah iifname { "lan", "wan" } notrack`, `ip protocol ah iifname { "lan", "wan" } ip ttl != 255`} {
		if !strings.Contains(out, want) {
			t.Errorf("table inet ctha lacks %q:\n%s", want, out)
		}
	}
}

// TestExampleSysctl checks that every key of examples/ctha-sysctl.conf
// names a real sysctl (read-only check: nothing is written).
func TestExampleSysctl(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "examples", "ctha-sysctl.conf"))
	if err != nil {
		t.Fatal(err)
	}
	keys := 0
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, _, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("not a key = value line: %q", line)
			continue
		}
		key = strings.TrimSpace(key)
		path := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
		if _, err := os.Stat(path); err != nil {
			t.Errorf("%s: %v", key, err)
		}
		keys++
	}
	if keys == 0 || !strings.Contains(string(b), "net.netfilter.nf_conntrack_events = 1") {
		t.Errorf("ctha-sysctl.conf must set nf_conntrack_events = 1 (found %d keys)", keys)
	}
}

// TestExampleService checks the hardening of examples/ctha.service.
func TestExampleService(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "examples", "ctha.service"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts, err := unit.DeserializeOptions(f)
	if err != nil {
		t.Fatalf("parse unit: %v", err)
	}
	get := func(section, name string) []string {
		var vals []string
		for _, o := range opts {
			if o.Section == section && o.Name == name {
				vals = append(vals, o.Value)
			}
		}
		return vals
	}
	want := map[string]string{
		"Type":                  "notify",
		"ProtectSystem":         "strict",
		"NoNewPrivileges":       "yes",
		"StateDirectory":        "ctha",
		"RuntimeDirectory":      "ctha",
		"CapabilityBoundingSet": "CAP_NET_ADMIN CAP_NET_RAW",
		"AmbientCapabilities":   "CAP_NET_ADMIN CAP_NET_RAW",
	}
	for name, val := range want {
		if got := get("Service", name); !slices.Equal(got, []string{val}) {
			t.Errorf("[Service] %s = %q, want %q", name, got, val)
		}
	}
	start := get("Service", "ExecStart")
	if len(start) != 1 || !strings.HasSuffix(start[0], "ctha run -c /etc/ctha/ctha.hcl") {
		t.Errorf("ExecStart = %q", start)
	}
	// The Debian package's unit (issue 17): the binary in /usr/sbin, not
	// started without its file, and the one sysctl ctha cannot set itself
	// set by a privileged pre-start, nothing more.
	for _, v := range append(append(get("Service", "ExecStartPre"), start...), get("Service", "ExecReload")...) {
		if f := strings.Fields(v); strings.Contains(f[0], "ctha") && strings.TrimLeft(f[0], "+-") != "/usr/sbin/ctha" {
			t.Errorf("%q: want /usr/sbin/ctha", v)
		}
	}
	if got := get("Unit", "ConditionPathExists"); !slices.Equal(got, []string{"/etc/ctha/ctha.hcl"}) {
		t.Errorf("ConditionPathExists = %q, want /etc/ctha/ctha.hcl", got)
	}
	var privileged []string
	for _, v := range get("Service", "ExecStartPre") {
		if strings.HasPrefix(v, "+") {
			privileged = append(privileged, v)
		}
	}
	if !slices.Equal(privileged, []string{"+/usr/sbin/sysctl -q -e -w net.netfilter.nf_conntrack_events=1"}) {
		t.Errorf("privileged ExecStartPre = %q, want only the nf_conntrack_events sysctl", privileged)
	}
	reload := get("Service", "ExecReload")
	if len(reload) != 2 || !strings.Contains(reload[0], "ctha check") || !strings.Contains(reload[1], "kill -HUP $MAINPID") {
		t.Errorf("ExecReload = %q, want a check before the HUP", reload)
	}
}
