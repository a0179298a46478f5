package importer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/cfg"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// mapFiles serves files from memory, for the fuzz targets and error
// tests; glob matches exact names only.
type mapFiles map[string]string

func (m mapFiles) read(path string) ([]byte, error) {
	s, ok := m[path]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
	}
	return []byte(s), nil
}

func (m mapFiles) glob(pattern string) ([]string, error) {
	if _, ok := m[pattern]; ok {
		return []string{pattern}, nil
	}
	return nil, nil
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, ka, ct, want string
	}{
		{"unclosed", "vrrp_instance a {\n  interface eth0\n", "", "keepalived.conf:1: the block \"vrrp_instance a\" opened here is not closed"},
		{"stray close", "global_defs {\n}\n}\n", "", "keepalived.conf:3: } closes no block"},
		{"quote", "vrrp_script s {\n  script \"/bin/true\n}\n", "", "keepalived.conf:2: missing closing \""},
		{"brace alone", "{\n", "", "keepalived.conf:1: { without a keyword before it"},
		{"missing include", "include /etc/none.conf\n", "", "keepalived.conf:1: include \"/etc/none.conf\" matches no file"},
		{"include loop", "include /keepalived.conf\n", "", "includes nested deeper than 8"},
		{"nul", "a\x00", "", "keepalived.conf:1: a NUL byte"},
		{"conntrackd", "", "Sync {\n  Mode FTFW {\n}\n", "conntrackd.conf:1: the block \"Sync\" opened here is not closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mapFiles{}
			var o Options
			if tt.ka != "" {
				o.Keepalived = "/keepalived.conf"
				m[o.Keepalived] = tt.ka
			}
			if tt.ct != "" {
				o.Conntrackd = "/conntrackd.conf"
				m[o.Conntrackd] = tt.ct
			}
			_, err := convert(o, m)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to say %q", err, tt.want)
			}
		})
	}
}

func TestHeaderOnNextLine(t *testing.T) {
	m := mapFiles{"/k.conf": "vrrp_instance a\n{\n interface eth0\n virtual_router_id 1\n virtual_ipaddress\n {\n 192.0.2.1\n }\n}\n"}
	res, err := convert(Options{Keepalived: "/k.conf"}, m)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(res.HCL), `virtual_ips = ["192.0.2.1/32"]`) {
		t.Errorf("output:\n%s", res.HCL)
	}
}

func TestNothingUsable(t *testing.T) {
	m := mapFiles{"/k.conf": "global_defs {\n router_id a\n}\n"}
	res, err := convert(Options{Keepalived: "/k.conf"}, m)
	if !errors.Is(err, ErrNothing) || res.Usable {
		t.Errorf("err = %v, usable %v; want ErrNothing", err, res.Usable)
	}
}

func TestExpandBraces(t *testing.T) {
	tests := []struct {
		name, pattern, want, err string
	}{
		{name: "nested", pattern: "/a/{b,c/{d,e}}.conf", want: "/a/b.conf /a/c/d.conf /a/c/e.conf"},
		{name: "none", pattern: "/a/*.conf", want: "/a/*.conf"},
		{name: "unmatched brace is a character", pattern: "/a/{b,c", want: "/a/{b,c"},
		{name: "64 patterns", pattern: strings.Repeat("{a,b}", 6), want: "64"},
		{name: "65 patterns", pattern: strings.Repeat("{a,b}", 6) + "{x,y}", err: "more than 64 patterns"},
		{name: "one alternative deep", pattern: strings.Repeat("{", 2000) + "a" + strings.Repeat("}", 2000), err: "too long to expand"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := expandBraces(tt.pattern)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want it to say %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s := strings.Join(got, " ")
			if tt.want == "64" {
				s = fmt.Sprint(len(got))
			}
			if s != tt.want {
				t.Errorf("got %q, want %q", s, tt.want)
			}
		})
	}
}

// TestIncludeBraceBomb: an include line of 40 brace groups (2^40
// patterns) fails at once, at its line, instead of expanding for days.
func TestIncludeBraceBomb(t *testing.T) {
	m := mapFiles{"/k.conf": "global_defs {\n}\ninclude /etc/" + strings.Repeat("{a,b}", 40) + ".conf\n"}
	start := time.Now()
	_, err := convert(Options{Keepalived: "/k.conf"}, m)
	if took := time.Since(start); took > time.Second {
		t.Errorf("took %v", took)
	}
	if err == nil || !strings.Contains(err.Error(), "k.conf:3: include") || !strings.Contains(err.Error(), "more than 64 patterns") {
		t.Errorf("err = %v, want FILE:3: include ...: more than 64 patterns", err)
	}
}

// TestDebianLive imports the examples the conntrackd package installs,
// when this machine has them: they must import, give what the copies in
// testdata give when they are the same files, and validate (once cfg has
// authentication).
func TestDebianLive(t *testing.T) {
	const dir = "/usr/share/doc/conntrackd/examples/sync"
	if _, err := os.Stat(dir); err != nil {
		t.Skip("conntrackd's examples are not installed")
	}
	for _, mode := range []string{"ftfw", "alarm", "notrack"} {
		t.Run(mode, func(t *testing.T) {
			o := Options{Keepalived: filepath.Join(dir, "keepalived.conf"), Conntrackd: filepath.Join(dir, mode, "conntrackd.conf")}
			res, err := Import(o)
			if err != nil {
				t.Fatal(err)
			}
			copyDir := filepath.Join("testdata", "debian-"+mode)
			if same(t, o.Keepalived, filepath.Join(copyDir, "keepalived.conf")) && same(t, o.Conntrackd, filepath.Join(copyDir, "conntrackd.conf")) {
				golden(t, filepath.Join(copyDir, "want.hcl"), string(res.HCL))
			}
			if _, diags := cfg.ParseWith(res.HCL, "out.hcl", cfg.Options{Offline: true}); diags.HasErrors() {
				t.Errorf("does not validate: %v", diags)
			}
		})
	}
}

func same(t *testing.T, a, b string) bool {
	x, err1 := os.ReadFile(a)
	y, err2 := os.ReadFile(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

// fuzzTime bounds one fuzz input's import: work that grows
// exponentially with the input (a brace bomb) fails instead of hanging.
const fuzzTime = 2 * time.Second

// fuzzCheck: whatever the input, no panic, no more than fuzzTime, and a
// successful import is HCL that parses.
func fuzzCheck(t *testing.T, o Options, m mapFiles) {
	start := time.Now()
	res, err := convert(o, m)
	if took := time.Since(start); took > fuzzTime {
		t.Fatalf("import took %v (more than %v)", took, fuzzTime)
	}
	if err != nil && !errors.Is(err, ErrNothing) {
		return
	}
	if _, diags := hclsyntax.ParseConfig(res.HCL, "out.hcl", hcl.InitialPos); diags.HasErrors() {
		t.Fatalf("output does not parse: %v\n%s", diags, res.HCL)
	}
}

func seeds(f *testing.F, name string) {
	dirs, _ := os.ReadDir("testdata")
	for _, d := range dirs {
		if b, err := os.ReadFile(filepath.Join("testdata", d.Name(), name)); err == nil {
			f.Add(string(b))
		}
	}
}

func FuzzKeepalived(f *testing.F) {
	seeds(f, "keepalived.conf")
	f.Add("vrrp_instance a {\n interface eth0\n virtual_router_id 1\n virtual_ipaddress { 192.0.2.1 }\n}\n")
	// 2^24 patterns: the expansion that once ran for seconds per line.
	f.Add("include /etc/keepalived/" + strings.Repeat("{a,b}", 24) + ".conf\n")
	f.Fuzz(func(t *testing.T, src string) {
		fuzzCheck(t, Options{Keepalived: "/k.conf"}, mapFiles{"/k.conf": src})
	})
}

func FuzzConntrackd(f *testing.F) {
	seeds(f, "conntrackd.conf")
	f.Fuzz(func(t *testing.T, src string) {
		fuzzCheck(t, Options{Conntrackd: "/c.conf"}, mapFiles{"/c.conf": src})
	})
}

// TestMapping checks single rules of the mapping on small inputs: what
// the output must hold and must not, and the warning.
func TestMapping(t *testing.T) {
	const inst = "vrrp_instance a {\n interface eth0\n virtual_router_id 1\n %s\n virtual_ipaddress {\n  %s\n }\n}\n"
	ka := func(extra, vip string) string { return fmt.Sprintf(inst, extra, vip) }
	const sync = "Sync {\n Mode %s {\n  %s\n }\n UDP {\n  IPv4_address 10.0.0.1\n  IPv4_Destination_Address 10.0.0.2\n  Interface eth9\n }\n}\n"
	ct := func(mode, opt string) string { return fmt.Sprintf(sync, mode, opt) }
	tests := []struct {
		name, ka, ct string
		want, not    []string
		warn         string
	}{
		{name: "bare IPv6 VIP is /128, version 3", ka: ka("", "2001:db8::1"), want: []string{`"2001:db8::1/128"`, "version     = 3"}},
		{name: "bare IPv4 VIP is /32, version 2 written", ka: ka("", "192.0.2.1"), want: []string{`"192.0.2.1/32"`, "version     = 2"}},
		{name: "vrrp_version 3", ka: "global_defs {\n vrrp_version 3\n}\n" + ka("", "192.0.2.1"), want: []string{"version     = 3"}},
		{name: "state is a comment", ka: ka("state MASTER", "192.0.2.1"), want: []string{"# keepalived.conf:4: state MASTER: ctha elects by priority alone."}, not: []string{"state ="}},
		{name: "instance without a name", ka: "vrrp_instance {\n}\n", warn: "vrrp_instance not carried: expects one name and a block"},
		{name: "notrack reported", ct: ct("NOTRACK", ""), want: []string{`mode = "reliable"`}, warn: "Mode NOTRACK not carried"},
		{name: "CommitTimeout is no commit_timeout", ct: ct("FTFW", "CommitTimeout 180"), not: []string{"commit_timeout ="}, warn: "CommitTimeout 180 not carried: it is the timeout conntrackd gives committed entries"},
		{name: "DisableExternalCache", ct: ct("FTFW", "DisableExternalCache on"), want: []string{`cache = "direct"`}},
		{name: "alarm", ct: ct("ALARM", "RefreshTime 5\n CacheTimeout 30"), want: []string{`mode             = "alarm"`, `refresh_interval = "5s"`, `cache_timeout    = "30s"`}},
		{name: "track_interface reverse is not carried", ka: ka("track_interface {\n  eth1 weight 10 reverse\n }", "192.0.2.1"),
			not: []string{`track_interface "eth1"`}, warn: "track_interface eth1 not carried: ctha's track_interface has no reverse"},
		{name: "track_process weight defaults to keepalived's 0", ka: "vrrp_track_process p {\n process bird\n}\n" + ka("track_process {\n  p\n }", "192.0.2.1"),
			want: []string{"track_process \"bird\" {\n    weight = 0\n  }"}},
		{name: "track_process noreverse at the instance", ka: "vrrp_track_process p {\n process bird\n weight 5 reverse\n}\n" + ka("track_process {\n  p weight 7 noreverse\n }", "192.0.2.1"),
			want: []string{"weight = 7"}, not: []string{"reverse"}},
		{name: "hook without conntrackd", ka: "vrrp_sync_group g {\n group {\n  a\n }\n notify_master \"/etc/conntrackd/primary-backup.sh primary\"\n}\n" + ka("", "192.0.2.1"),
			not: []string{"\n  conntrack = true", "primary-backup.sh primary\"]"}, warn: "primary-backup.sh hooks found but no conntrack_sync"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mapFiles{}
			var o Options
			if tt.ka != "" {
				o.Keepalived, m["/keepalived.conf"] = "/keepalived.conf", tt.ka
			}
			if tt.ct != "" {
				o.Conntrackd, m["/conntrackd.conf"] = "/conntrackd.conf", tt.ct
			}
			res, err := convert(o, m)
			if err != nil && !errors.Is(err, ErrNothing) {
				t.Fatal(err)
			}
			out := string(res.HCL)
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(out, w) {
					t.Errorf("output holds %q:\n%s", w, out)
				}
			}
			if tt.warn != "" && !strings.Contains(strings.Join(res.Warnings, "\n"), tt.warn) {
				t.Errorf("warnings %q lack %q", res.Warnings, tt.warn)
			}
		})
	}
}
