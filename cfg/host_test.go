package cfg

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/ctha/ctha/ctsync/auth"
	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"
)

// fakeHost answers the host checks from tables: interfaces with their
// addresses, and files by absolute path.
type fakeHost struct {
	ifs   map[string][]string // name -> "addr/len"
	files fstest.MapFS        // paths without the leading slash
	err   error               // of Interfaces
}

func (h fakeHost) Interfaces() (map[string][]netip.Prefix, error) {
	if h.err != nil {
		return nil, h.err
	}
	out := map[string][]netip.Prefix{}
	for name, addrs := range h.ifs {
		out[name] = []netip.Prefix{}
		for _, a := range addrs {
			out[name] = append(out[name], netip.MustParsePrefix(a))
		}
	}
	return out, nil
}

func (h fakeHost) Stat(path string) (fs.FileInfo, error) {
	fi, err := h.files.Stat(strings.TrimPrefix(path, "/"))
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: path, Err: errors.Unwrap(err)}
	}
	return fi, nil
}

// labFW1 is the machine of the lab's fw1, which the examples describe.
var labFW1 = fakeHost{
	ifs: map[string][]string{
		"lo":    {"127.0.0.1/8", "::1/128"},
		"lan":   {"10.10.1.2/24", "fd00:10:1::2/64", "fe80::1/64"},
		"wan":   {"10.10.2.2/24", "fd00:10:2::2/64", "fe80::2/64"},
		"sync":  {"10.10.3.1/24", "fd00:10:3::1/64", "fe80::3/64"},
		"sync2": {"10.10.4.1/24", "fd00:10:4::1/64", "fe80::4/64"},
	},
	files: fstest.MapFS{
		"usr/bin/ping":           {Mode: 0o755},
		"etc/ctha/on-master.sh":  {Mode: 0o700},
		"etc/ctha/not-a-program": {Mode: 0o644},
		"etc/ctha":               {Mode: fs.ModeDir | 0o755},
		"dev/null":               {Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666},
	},
}

// labFW2 is the lab's fw2.
var labFW2 = fakeHost{
	ifs: map[string][]string{
		"lo":   {"127.0.0.1/8", "::1/128"},
		"lan":  {"10.10.1.3/24", "fe80::11/64"},
		"wan":  {"10.10.2.3/24", "fe80::12/64"},
		"sync": {"10.10.3.2/24", "fe80::13/64"},
	},
}

// TestHostChecks: what `ctha run` would fail on is an error, what it
// would run with but wrongly a warning; each at its position.
func TestHostChecks(t *testing.T) {
	const instance = `vrrp_instance "lan" {
  interface   = "%IFACE%"
  vrid        = 51
  virtual_ips = [%VIPS%]
}
`
	vrrp := func(iface, vips string) string {
		return strings.NewReplacer("%IFACE%", iface, "%VIPS%", vips).Replace(instance)
	}
	const group = `sync_group "fw" {
  instances = ["lan"]
  conntrack = true
}
`
	link := func(iface, local, peer string) string {
		return `conntrack_sync {
  link "sync0" {
    interface = "` + iface + `"
    local     = "` + local + `"
    ` + peer + `
  }
  auth_key_file = "sync.key"
}
`
	}
	for _, tc := range []struct {
		name string
		src  string
		host fakeHost
		want []string
	}{
		{
			name: "all there",
			src:  vrrp("lan", `"10.10.1.1/24", "10.10.1.254", "192.0.2.7/32"`) + link("sync", "10.10.3.1", `peer = "10.10.3.2"`) + group,
		},
		{
			name: "interfaces missing",
			src:  vrrp("eth9", `"10.10.1.1/24"`) + link("sync9", "10.10.3.1", `peer = "10.10.3.2"`) + group,
			want: []string{
				`x.hcl:2,17: interface "eth9" does not exist on this machine`,
				`x.hcl:8,17: interface "sync9" does not exist on this machine`,
			},
		},
		{
			name: "no IPv4 address to send from",
			src:  vrrp("v6only", `"10.10.1.1/24"`),
			host: fakeHost{ifs: map[string][]string{"v6only": {"fe80::1/64"}}},
			want: []string{`x.hcl:2,17: interface "v6only" has no IPv4 address to send VRRP adverts from`},
		},
		{
			name: "no IPv6 link-local address to send from",
			src:  vrrp("nolinklocal", `"fd00:10:1::1/64"`),
			host: fakeHost{ifs: map[string][]string{"nolinklocal": {"10.10.1.2/24", "fd00:10:1::2/64"}}},
			want: []string{`x.hcl:2,17: interface "nolinklocal" has no IPv6 link-local address to send VRRP adverts from`},
		},
		{
			name: "VIP outside every subnet",
			src:  vrrp("lan", `"10.10.1.1/24", "10.10.9.1/24", "10.10.9.2/32", "10.10.9.3"`),
			want: []string{
				`x.hcl:4,34: warning: virtual IP 10.10.9.1/24 is outside every IPv4 subnet of interface "lan" (10.10.1.0/24); is the address or the interface mistaken?`,
			},
		},
		{
			name: "IPv6 VIP and only a link-local address",
			src:  vrrp("lan", `"2001:db8::1/64", "2001:db8::2/128"`),
			host: fakeHost{ifs: map[string][]string{"lan": {"10.10.1.2/24", "fe80::1/64"}}},
			want: []string{
				`x.hcl:4,18: warning: virtual IP 2001:db8::1/64 is outside every IPv6 subnet of interface "lan" (fe80::/64); is the address or the interface mistaken?`,
			},
		},
		{
			// A master holds its VIPs: they make no subnet of their own.
			name: "a VIP on the interface is no subnet",
			src:  vrrp("lan", `"10.10.9.1/24"`),
			host: fakeHost{ifs: map[string][]string{"lan": {"10.10.9.1/24"}}},
			want: []string{
				`x.hcl:4,18: warning: virtual IP 10.10.9.1/24 is outside every IPv4 subnet of interface "lan" (it has none but virtual IPs); is the address or the interface mistaken?`,
			},
		},
		{
			name: "tracked interfaces missing",
			src: `vrrp_instance "lan" {
  interface   = "lan"
  vrid        = 51
  virtual_ips = ["10.10.1.1/24"]
  track_interface "wan" { weight = 0 }
  track_interface "ppp0" { weight = 0 }
  track_interface "ppp1" { weight = -20 }
  track_interface "ppp2" { weight = 10 }
}
`,
			want: []string{
				`x.hcl:6,19: warning: interface "ppp0" does not exist on this machine; it counts as down until it appears: vrrp_instance "lan" stays in FAULT`,
				`x.hcl:7,19: warning: interface "ppp1" does not exist on this machine; it counts as down until it appears: vrrp_instance "lan" runs with its priority lowered by 20`,
				`x.hcl:8,19: warning: interface "ppp2" does not exist on this machine; it counts as down until it appears: vrrp_instance "lan" runs without its weight of 10`,
			},
		},
		{
			name: "unicast local not on this machine",
			src:  link("sync", "10.10.3.2", `peer = "10.10.3.1"`),
			want: []string{`x.hcl:4,17: local 10.10.3.2 is not an address of this machine, so the link cannot bind to it (the other node's?)`},
		},
		{
			name: "local on another interface",
			src:  link("sync", "10.10.4.1", `peer = "10.10.4.2"`),
			want: []string{`x.hcl:4,17: warning: local 10.10.4.1 is on interface "sync2", not on the link's interface "sync"`},
		},
		{
			name: "multicast local not on this machine",
			src:  link("sync", "10.10.3.2", `multicast_group = "225.0.0.50"`),
			want: []string{`x.hcl:4,17: warning: local 10.10.3.2 is not an address of this machine (the other node's?)`},
		},
		{
			name: "commands that cannot run",
			src: vrrp("lan", `"10.10.1.1/24"`) + `
track_script "ok" {
  command = ["/usr/bin/ping", "-c1", "192.0.2.1"]
}
track_script "missing" {
  command = ["/usr/bin/pingg", "-c1", "192.0.2.1"]
}
track_script "mode" {
  command = ["/etc/ctha/not-a-program"]
}
track_script "dir" {
  command = ["/etc/ctha"]
}
track_script "device" {
  command = ["/dev/null"]
}
sync_group "fw" {
  instances = ["lan"]
  notify {
    master = ["/etc/ctha/on-master.sh", "/etc/ctha/on-master"]
    fault  = ["/etc/ctha/not-a-program"]
  }
}
`,
			want: []string{
				`x.hcl:7,14: warning: track_script "ok" is not used by any vrrp_instance`,
				`x.hcl:10,14: warning: track_script "missing" is not used by any vrrp_instance`,
				`x.hcl:11,14: warning: /usr/bin/pingg does not exist; track_script "missing" fails at every run`,
				`x.hcl:13,14: warning: track_script "mode" is not used by any vrrp_instance`,
				`x.hcl:14,14: warning: /etc/ctha/not-a-program is not executable (mode 0644); track_script "mode" fails at every run`,
				`x.hcl:16,14: warning: track_script "dir" is not used by any vrrp_instance`,
				`x.hcl:17,14: warning: /etc/ctha is a directory; track_script "dir" fails at every run`,
				`x.hcl:19,14: warning: track_script "device" is not used by any vrrp_instance`,
				`x.hcl:20,14: warning: /dev/null is not a regular file; track_script "device" fails at every run`,
				`x.hcl:25,41: warning: /etc/ctha/on-master does not exist; this notify command of sync_group "fw" fails at every transition to MASTER`,
				`x.hcl:26,15: warning: /etc/ctha/not-a-program is not executable (mode 0644); this notify command of sync_group "fw" fails at every transition to FAULT`,
			},
		},
		{
			// The program of a command line is its first word.
			name: "notify command lines that cannot run",
			src: `vrrp_instance "lan" {
  interface   = "lan"
  vrid        = 51
  virtual_ips = ["10.10.1.1/24"]
  notify {
    master = ["/etc/ctha/on-master.sh lan 'first hop'", "/etc/ctha/on-master lan"]
    stop   = ["/etc/ctha/not-a-program --stop"]
    notify = ["/etc/ctha/on-master.sh", "/etc/ctha/generic x"]
  }
}
sync_group "fw" {
  instances = ["lan"]
  notify {
    stop = ["/etc/ctha \"a b\""]
  }
}
`,
			want: []string{
				`x.hcl:6,57: warning: /etc/ctha/on-master does not exist; this notify command of vrrp_instance "lan" fails at every transition to MASTER`,
				`x.hcl:7,15: warning: /etc/ctha/not-a-program is not executable (mode 0644); this notify command of vrrp_instance "lan" fails when ctha stops`,
				`x.hcl:8,41: warning: /etc/ctha/generic does not exist; this notify command of vrrp_instance "lan" fails at every transition`,
				`x.hcl:14,13: warning: /etc/ctha is a directory; this notify command of sync_group "fw" fails when ctha stops`,
			},
		},
		{
			name: "interfaces cannot be listed",
			src:  vrrp("lan", `"10.10.1.1/24"`),
			host: fakeHost{err: errors.New("netlink: permission denied")},
			want: []string{`x.hcl:1,1: cannot list this machine's interfaces to check the configuration against them: netlink: permission denied`},
		},
		{
			// The file's own errors and the host's come together, in
			// the order of the file; what is wrong already is not
			// checked again.
			name: "with the file's errors",
			src: `vrrp_instance "lan" {
  interface   = "eth9"
  vrid        = 0
  virtual_ips = ["10.10.1.1/24"]
  track_interface "not/valid" { weight = 0 }
}
`,
			want: []string{
				`x.hcl:2,17: interface "eth9" does not exist on this machine`,
				`x.hcl:3,17: vrid must be from 1 to 255, got 0`,
				`x.hcl:5,19: "not/valid" is not a valid interface name (1-15 characters, no '/', ':' or spaces)`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inKeyDir(t)
			h := tc.host
			if h.ifs == nil && h.err == nil {
				h = labFW1
			}
			_, diags := ParseWith([]byte(tc.src), "x.hcl", Options{Host: h})
			if diff := cmp.Diff(tc.want, lines(diags)); diff != "" {
				t.Errorf("diagnostics (-want +got):\n%s", diff)
			}
			// Offline, the machine is never asked.
			_, diags = ParseWith([]byte(tc.src), "x.hcl", Options{Host: panicHost{}, Offline: true})
			for _, d := range diags {
				if strings.Contains(d.Summary, "this machine") {
					t.Errorf("offline: %s", Format(d))
				}
			}
		})
	}
}

// panicHost fails a test that asks it anything.
type panicHost struct{}

func (panicHost) Interfaces() (map[string][]netip.Prefix, error) { panic("offline, yet asked") }
func (panicHost) Stat(string) (fs.FileInfo, error)               { panic("offline, yet asked") }

func lines(diags hcl.Diagnostics) []string {
	var out []string
	for _, d := range diags {
		out = append(out, Format(d))
	}
	return out
}

// TestExamplesOnTheirMachine: the examples hold against the lab machines
// they describe.
func TestExamplesOnTheirMachine(t *testing.T) {
	for file, h := range map[string]fakeHost{
		"fw1.hcl": labFW1, "fw2.hcl": labFW2, "ipv6.hcl": labFW1, "multilink.hcl": labFW1,
		"aa-fw1.hcl": labFW1, "aa-fw2.hcl": labFW2, "aa3-fw1.hcl": labFW1,
	} {
		t.Run(file, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join("..", "examples", file))
			if err != nil {
				t.Fatal(err)
			}
			inKeyDir(t)
			if _, diags := ParseWith(src, file, Options{Host: h}); len(diags) != 0 {
				t.Errorf("diagnostics:\n%s", strings.Join(lines(diags), "\n"))
			}
		})
	}
}

// TestOffline: offline, the key file is not read (CI has no key, a
// checkout no modes), but what the file says of it still is checked.
func TestOffline(t *testing.T) {
	t.Chdir(t.TempDir()) // no key file here
	src := []byte(`conntrack_sync {
  link "sync0" {
    interface = "sync"
    local     = "10.10.3.1"
    peer      = "10.10.3.2"
  }
  auth_key_file = "sync.key"
}
`)
	c, diags := ParseWith(src, "x.hcl", Options{Offline: true})
	if len(diags) != 0 {
		t.Fatalf("offline: %s", strings.Join(lines(diags), "\n"))
	}
	if c.Sync.KeyFile != "sync.key" || c.Sync.Key != (auth.Key{}) {
		t.Errorf("offline: KeyFile %q, Key %s; want the path and no key", c.Sync.KeyFile, c.Sync.Key)
	}
	if _, diags := Parse(src, "x.hcl"); !strings.Contains(strings.Join(lines(diags), "\n"), "key file sync.key does not exist") {
		t.Errorf("online, a missing key file is not an error: %q", lines(diags))
	}
	bad := []byte(strings.Replace(string(src), `auth_key_file = "sync.key"`, `auth_key_file = "sync.key"
  insecure_no_auth = true`, 1))
	if _, diags := ParseWith(bad, "x.hcl", Options{Offline: true}); !diags.HasErrors() {
		t.Errorf("offline: auth_key_file with insecure_no_auth = true is accepted")
	}
}

// TestCountOmitted: the diagnostic that stands for those not shown counts
// as what it stands for, not as one more error.
func TestCountOmitted(t *testing.T) {
	var b strings.Builder
	for i := range 40 {
		b.WriteString(`vrrp_instance "i` + string(rune('a'+i%26)) + strings.Repeat("x", i/26) + `" {
  interface   = "lan"
  vrid        = 0
  virtual_ips = ["10.10.1.1/24"]
}
track_script "s` + strings.Repeat("x", i) + `" {
  command = ["/bin/true"]
}
`)
	}
	_, diags := Parse([]byte(b.String()), "many.hcl")
	if len(diags) != MaxDiagnostics+1 {
		t.Fatalf("%d diagnostics, want %d", len(diags), MaxDiagnostics+1)
	}
	// 40 errors (vrid), 40 warnings (track scripts no instance uses).
	errs, warns := Count(diags)
	if errs != 40 || warns != 40 {
		t.Errorf("Count = %d errors, %d warnings; want 40, 40", errs, warns)
	}
	last := diags[len(diags)-1]
	if o, ok := last.Extra.(Omitted); !ok || o.Errors+o.Warnings != 80-MaxDiagnostics || o.Errors == 0 || o.Warnings == 0 {
		t.Errorf("the last diagnostic %q has Extra %#v", Format(last), last.Extra)
	}
}
