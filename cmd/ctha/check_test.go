package main

import (
	"bytes"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/cfg"
)

// tableHost is a machine for `ctha check` made of tables (cfg.Host).
type tableHost struct {
	ifs   map[string][]netip.Prefix
	files map[string]fs.FileMode
}

func (h tableHost) Interfaces() (map[string][]netip.Prefix, error) { return h.ifs, nil }

func (h tableHost) Stat(path string) (fs.FileInfo, error) {
	m, ok := h.files[path]
	if !ok {
		return nil, &fs.PathError{Op: "stat", Path: path, Err: fs.ErrNotExist}
	}
	return fileInfo{filepath.Base(path), m}, nil
}

type fileInfo struct {
	name string
	mode fs.FileMode
}

func (f fileInfo) Name() string       { return f.name }
func (f fileInfo) Size() int64        { return 0 }
func (f fileInfo) Mode() fs.FileMode  { return f.mode }
func (f fileInfo) ModTime() time.Time { return time.Time{} }
func (f fileInfo) IsDir() bool        { return f.mode.IsDir() }
func (f fileInfo) Sys() any           { return nil }

// fw1Host is the lab's fw1, as examples/fw1.hcl expects it.
var fw1Host = tableHost{
	ifs: map[string][]netip.Prefix{
		"lan":  {netip.MustParsePrefix("10.10.1.2/24")},
		"wan":  {netip.MustParsePrefix("10.10.2.2/24")},
		"sync": {netip.MustParsePrefix("10.10.3.1/24")},
	},
	files: map[string]fs.FileMode{"/etc/ctha/on-master.sh": 0o755, "/etc/ctha/notes.txt": 0o644},
}

// runCheck runs `ctha check` in process against host (nil: this machine).
func runCheck(host cfg.Host, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	c := &cli{stdout: &out, stderr: &errb, host: host}
	code = c.main(append([]string{"check"}, args...))
	return code, out.String(), errb.String()
}

// TestCheck: the verdicts of `ctha check` and its exit codes: 0 for a
// file without errors (warnings allowed), 1 with errors, 2 for a wrong
// command line; --offline leaves the machine out.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	fw1 := mustRead(t, "../../examples/fw1.hcl")
	good := writeConfig(t, dir, "good.hcl", fw1)
	aa := writeConfig(t, dir, "aa.hcl", mustRead(t, "../../examples/aa-fw1.hcl"))
	bad := writeConfig(t, dir, "bad.hcl", `vrrp_instance "lan" {
  interface   = "lan"
  vrid        = 0
  virtual_ips = ["10.10.1.1/24", "fd00::1/64"]
}
`)
	warned := writeConfig(t, dir, "warned.hcl", strings.NewReplacer(
		`vrid            = 51`, `vrid            = "51"`,
		`virtual_ips     = ["10.10.2.1/24"]`, `virtual_ips     = ["10.10.9.1/24"]`,
		`conntrack = true`, `conntrack = true
  notify {
    master = ["/etc/ctha/on-master.sh", "/etc/ctha/notes.txt"]
  }`,
	).Replace(fw1)+`control {
  metrics = "0.0.0.0:9477"
}
`)
	noKey := filepath.Join(t.TempDir(), "fw1.hcl") // config management: a file alone
	if err := os.WriteFile(noKey, []byte(fw1), 0o644); err != nil {
		t.Fatal(err)
	}
	var many strings.Builder
	for i := range 60 {
		many.WriteString("vrrp_instance \"i" + strings.Repeat("i", i) + "\" {\n  interface = \"lan\"\n  vrid = 0\n  virtual_ips = [\"10.10.1.1/24\"]\n}\n")
	}
	manyErrs := writeConfig(t, dir, "many.hcl", many.String())

	tests := []struct {
		name       string
		host       cfg.Host
		args       []string
		code       int
		stdout     []string // substrings
		stderrLine []string // exact lines
		noStderr   bool
	}{
		{
			name:     "valid",
			host:     fw1Host,
			args:     []string{"-c", good},
			code:     exitOK,
			stdout:   []string{good + ": ok: node fw1; 2 instances (lan, wan); 1 sync group (fw, drives conntrack); sync reliable/direct over 1 link (sync0 10.10.3.1->10.10.3.2), key "},
			noStderr: true,
		},
		{
			name: "valid multiprimary",
			host: fw1Host,
			args: []string{"-c", aa},
			code: exitOK,
			stdout: []string{aa + ": ok: node fw1; 4 instances (lan-a, wan-a, lan-b, wan-b); 2 sync groups (a; b); " +
				"sync multiprimary reliable/direct over 1 link (sync0 10.10.3.1->10.10.3.2), key "},
			noStderr: true,
		},
		{
			name: "invalid",
			host: fw1Host,
			args: []string{"-c", bad},
			code: exitFail,
			stderrLine: []string{
				bad + ":3,17: vrid must be from 1 to 255, got 0",
				bad + `:4,34: virtual IP fd00::1/64 is IPv6 but 10.10.1.1/24 is IPv4; one instance's virtual IPs are all of one family (use a second instance)`,
				bad + ": 2 errors, 0 warnings",
			},
		},
		{
			name:   "warnings only",
			host:   fw1Host,
			args:   []string{"-c", warned},
			code:   exitOK,
			stdout: []string{warned + ": ok, 4 warnings: node fw1; 2 instances"},
			stderrLine: []string{
				warned + `:15,21: warning: vrid is written as a string; write the number without quotes: vrid = 51`,
				warned + `:26,22: warning: virtual IP 10.10.9.1/24 is outside every IPv4 subnet of interface "wan" (10.10.2.0/24); is the address or the interface mistaken?`,
				warned + `:34,41: warning: /etc/ctha/notes.txt is not executable (mode 0644); this notify command of sync_group "fw" fails at every transition to MASTER`,
				warned + `:52,13: warning: metrics "0.0.0.0:9477" listens on every interface: anyone who reaches this firewall on port 9477 reads its state; give an address of a management network or "127.0.0.1:9477"`,
			},
		},
		{
			name: "missing interfaces",
			host: tableHost{ifs: map[string][]netip.Prefix{"lan": {netip.MustParsePrefix("10.10.1.2/24")}}},
			args: []string{"-c", good},
			code: exitFail,
			stderrLine: []string{
				good + `:22,21: interface "wan" does not exist on this machine`,
				good + `:40,17: interface "sync" does not exist on this machine`,
				good + ": 2 errors, 0 warnings",
			},
		},
		{
			// The file alone, as config management validates it before
			// installing it: no interfaces, no key beside it.
			name:     "offline",
			host:     tableHost{},
			args:     []string{"--offline", "-c", noKey},
			code:     exitOK,
			stdout:   []string{noKey + ": ok: node fw1;", "key not read; not checked against this machine (--offline)"},
			noStderr: true,
		},
		{
			name:     "offline, after -c",
			args:     []string{"-c", noKey, "--offline"},
			code:     exitOK,
			stdout:   []string{noKey + ": ok: node fw1;"},
			noStderr: true,
		},
		{
			name:       "offline still checks the file",
			args:       []string{"--offline", "-c", bad},
			code:       exitFail,
			stderrLine: []string{bad + ": 2 errors, 0 warnings"},
		},
		{
			name:       "online, the key is read",
			host:       fw1Host,
			args:       []string{"-c", noKey},
			code:       exitFail,
			stderrLine: []string{noKey + ": 1 error, 0 warnings"},
		},
		{
			// The diagnostic that stands for those not shown counts what
			// it stands for, not one more error.
			name:       "more problems than shown",
			host:       fw1Host,
			args:       []string{"-c", manyErrs},
			code:       exitFail,
			stderrLine: []string{"10 more problems not shown (the first 50 are)", manyErrs + ": 60 errors, 0 warnings"},
		},
		{
			name:       "missing file",
			args:       []string{"-c", filepath.Join(dir, "none.hcl")},
			code:       exitFail,
			stderrLine: []string{"cannot read configuration: open " + filepath.Join(dir, "none.hcl") + ": no such file or directory"},
		},
		{name: "stray argument", args: []string{good}, code: exitUsage},
		{name: "stray argument offline", args: []string{"--offline", good}, code: exitUsage},
		{name: "bad flag", args: []string{"-x"}, code: exitUsage},
		{name: "bad flag value", args: []string{"--offline=perhaps", "-c", good}, code: exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runCheck(tt.host, tt.args...)
			if code != tt.code {
				t.Errorf("exit code = %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out, errs)
			}
			for _, s := range tt.stdout {
				if !strings.Contains(out, s) {
					t.Errorf("stdout %q lacks %q", out, s)
				}
			}
			lines := strings.Split(strings.TrimRight(errs, "\n"), "\n")
			for _, want := range tt.stderrLine {
				if !slices.Contains(lines, want) {
					t.Errorf("stderr lacks the line %q; got:\n%s", want, errs)
				}
			}
			if tt.noStderr && errs != "" {
				t.Errorf("stderr: %s", errs)
			}
			if tt.code == exitUsage && (out != "" || len(lines) != 1 || !strings.HasPrefix(lines[0], "ctha: check: ")) {
				t.Errorf("a wrong command line: stdout %q, stderr %q; want one line on stderr", out, errs)
			}
		})
	}
}

// TestCheckThisMachine: `ctha check` against the machine it runs on,
// unprivileged: an interface it lacks is an error, one of its own with a
// VIP in its subnet is fine.
func TestCheckThisMachine(t *testing.T) {
	dir := t.TempDir()
	missing := writeConfig(t, dir, "missing.hcl", `vrrp_instance "lan" {
  interface   = "ctha-nosuch0"
  vrid        = 51
  virtual_ips = ["10.10.1.1/24"]
  track_interface "ctha-nosuch1" { weight = -10 }
}
`)
	code, _, errs := runCheck(nil, "-c", missing)
	if want := missing + `:2,17: interface "ctha-nosuch0" does not exist on this machine`; code != exitFail || !strings.Contains(errs, want) ||
		!strings.Contains(errs, `interface "ctha-nosuch1" does not exist on this machine; it counts as down`) {
		t.Errorf("exit %d, stderr %q; want 1 and %q", code, errs, want)
	}
	if code, _, errs := runCheck(nil, "--offline", "-c", missing); code != exitOK || errs != "" {
		t.Errorf("offline: exit %d, stderr %q; want 0 and nothing", code, errs)
	}

	iface, vip := ownSubnet(t)
	own := writeConfig(t, dir, "own.hcl", `vrrp_instance "own" {
  interface   = "`+iface+`"
  vrid        = 51
  virtual_ips = ["`+vip.String()+`"]
}
track_script "true" {
  command = ["/bin/true"]
}
`)
	code, out, errs := runCheck(nil, "-c", own)
	if code != exitOK || !strings.HasPrefix(out, own+": ok, 1 warning: ") || strings.Count(errs, "\n") != 1 ||
		!strings.Contains(errs, `track_script "true" is not used`) {
		t.Errorf("%s with VIP %s: exit %d, stdout %q, stderr %q; want 0 and the unused script's warning only", iface, vip, code, out, errs)
	}
}

// ownSubnet finds an interface of this machine with an IPv4 subnet, and
// an address in it; it skips the test when there is none.
func ownSubnet(t *testing.T) (string, netip.Prefix) {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Skipf("cannot list interfaces: %v", err)
	}
	for _, ifi := range ifs {
		addrs, _ := ifi.Addrs()
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok || n.IP.To4() == nil || !n.IP.IsGlobalUnicast() || len(ifi.Name) > 15 {
				continue
			}
			ones, _ := n.Mask.Size()
			if ones > 30 {
				continue
			}
			ip, _ := netip.AddrFromSlice(n.IP.To4())
			return ifi.Name, netip.PrefixFrom(ip.Next(), ones)
		}
	}
	t.Skip("no interface with an IPv4 subnet of /30 or wider")
	return "", netip.Prefix{}
}

// TestCheckHelp: `ctha check -h` documents --offline and the verdicts.
func TestCheckHelp(t *testing.T) {
	code, out, _ := runCLI("check", "-h")
	for _, want := range []string{"Usage: ctha check [--offline] [-c FILE]", "-offline", "a warning, what it would run with", "1: errors; 2: a wrong"} {
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("check -h: exit %d, lacks %q:\n%s", code, want, out)
		}
	}
}
