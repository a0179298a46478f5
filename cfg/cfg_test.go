package cfg

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"
)

var update = flag.Bool("update", false, "rewrite the golden files of TestDiagnostics")

// keyLine is a valid key line for test key files.
const keyLine = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"

// inKeyDir runs the test in a fresh directory holding the key files the
// test configurations refer to: sync.key (valid, 0600), open.key (valid,
// 0644) and malformed.key (0600). Git does not keep modes, so they are made
// here rather than checked in.
func inKeyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, f := range map[string]struct {
		content string
		mode    os.FileMode
	}{
		"sync.key":      {keyLine, 0o600},
		"open.key":      {keyLine, 0o644},
		"malformed.key": {"not a key\n", 0o600},
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(f.content), f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil { // the umask may have narrowed it
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
	return dir
}

// TestDiagnostics checks the exact diagnostics (message and position) of
// every configuration in testdata/diag against its .golden file.
func TestDiagnostics(t *testing.T) {
	files, err := filepath.Glob("testdata/diag/*.hcl")
	if err != nil || len(files) < 20 {
		t.Fatalf("want at least 20 configurations in testdata/diag, found %d (%v)", len(files), err)
	}
	root, _ := os.Getwd()
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".hcl")
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join(root, file))
			if err != nil {
				t.Fatal(err)
			}
			inKeyDir(t)
			_, diags := Parse(src, name+".hcl")
			got := formatAll(diags)
			golden := filepath.Join(root, "testdata", "diag", name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./cfg -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("diagnostics of %s (-want +got):\n%s", file, diff)
			}
			if got == "" {
				t.Errorf("%s yields no diagnostic; every file in testdata/diag must yield at least one", file)
			}
		})
	}
}

func formatAll(diags hcl.Diagnostics) string {
	var b strings.Builder
	for _, d := range diags {
		b.WriteString(Format(d))
		b.WriteByte('\n')
	}
	return b.String()
}

// TestManyMistakesAllReported checks that one file with many mistakes
// reports each of them, not just the first.
func TestManyMistakesAllReported(t *testing.T) {
	src, err := os.ReadFile("testdata/diag/many-mistakes.hcl")
	if err != nil {
		t.Fatal(err)
	}
	inKeyDir(t)
	_, diags := Parse(src, "many-mistakes.hcl")
	want := []string{
		`many-mistakes.hcl:6,21: vrid must be from 1 to 255, got 256`,
		`many-mistakes.hcl:8,21: advert_interval for VRRP version 3 must be a multiple of 10ms`,
		`many-mistakes.hcl:9,38: virtual IP fd00:10:1::1/64 is IPv6 but 10.10.1.1/24 is IPv4`,
		`many-mistakes.hcl:10,22: unknown track_script "nope"`,
		`many-mistakes.hcl:16,17: priority 255 (address owner) is not allowed in sync_group "fw"`,
		`many-mistakes.hcl:18,3: Unsupported argument`,
		`many-mistakes.hcl:22,30: sync_group "fw" names unknown vrrp_instance "dmz"`,
		`many-mistakes.hcl:27,20: cache must be "direct" or "external", got "both"`,
		`many-mistakes.hcl:28,20: commit_timeout: "soon" is not a duration`,
		`many-mistakes.hcl:29,3: link "sync0" needs peer or peers (unicast), or multicast_group`,
		`many-mistakes.hcl:33,19: key file open.key is accessible by group or others (mode 0644)`,
	}
	got := strings.Split(strings.TrimSpace(formatAll(diags)), "\n")
	if len(got) != len(want) {
		t.Errorf("got %d diagnostics, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range min(len(got), len(want)) {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("diagnostic %d = %q, want it to start with %q", i, got[i], want[i])
		}
	}
}

func TestValidSyncOnly(t *testing.T) {
	inKeyDir(t)
	c, diags := Parse([]byte(`
conntrack_sync {
  cache = "external"
  link "sync0" {
    interface = "sync"
    local     = "10.10.3.1"
    peer      = "10.10.3.2"
  }
  auth_key_file = "sync.key"
}
`), "sync-only.hcl")
	if len(diags) != 0 {
		t.Fatalf("unexpected diagnostics:\n%s", formatAll(diags))
	}
	want := &Sync{
		Mode:     ModeReliable,
		Cache:    CacheExternal,
		Topology: TopologyPrimaryBackup,
		Links: []Link{{
			Name: "sync0", Interface: "sync", Port: DefaultSyncPort,
			Local: netip.MustParseAddr("10.10.3.1"), Peer: netip.MustParseAddr("10.10.3.2"), Peers: []netip.Addr{netip.MustParseAddr("10.10.3.2")},
		}},
		Protocol:           DefaultSyncProtocol,
		DeferQueue:         DefaultDeferQueue,
		Key:                c.Sync.Key, // checked below
		KeyFile:            "sync.key",
		Filter:             Filter{IgnoreAddresses: DefaultIgnoreAddresses},
		Expectations:       true,
		CommitTimeout:      DefaultCommitTimeout,
		PurgeDelay:         DefaultPurgeDelay,
		StartupSyncTimeout: DefaultStartupSyncTimeout,
		RefreshInterval:    DefaultRefreshInterval,
		CacheTimeout:       DefaultCacheTimeout,
	}
	if diff := cmp.Diff(want, c.Sync, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("Sync (-want +got):\n%s", diff)
	}
	if c.Sync.Key[0] != 0x01 || c.Sync.Key[31] != 0xef {
		t.Errorf("key not loaded from sync.key: %s", c.Sync.Key)
	}
	if len(c.Instances) != 0 || len(c.SyncGroups) != 0 {
		t.Errorf("sync-only config has instances or groups")
	}
}

func TestValidVRRPOnlyDefaults(t *testing.T) {
	c, diags := Parse([]byte(`
node_name = "fw1"
vrrp_instance "lan" {
  interface   = "lan"
  vrid        = 51
  virtual_ips = ["10.10.1.1/24", "10.10.1.254"]
}
`), "vrrp-only.hcl")
	if len(diags) != 0 {
		t.Fatalf("unexpected diagnostics:\n%s", formatAll(diags))
	}
	want := Config{
		Path:     "vrrp-only.hcl",
		NodeName: "fw1",
		StateDir: DefaultStateDir,
		Control:  Control{Socket: DefaultSocket, Metrics: DefaultMetrics},
		Log:      Log{Format: "text"},
		Instances: []Instance{{
			Name: "lan", Interface: "lan", VRID: 51, Priority: DefaultPriority, Version: 3,
			Family: IPv4, AdvertInterval: time.Second, Preempt: true,
			VIPs:   []netip.Prefix{netip.MustParsePrefix("10.10.1.1/24"), netip.MustParsePrefix("10.10.1.254/32")},
			GARP:   GARP{Repeat: DefaultGARPRepeat, Interval: DefaultGARPInterval, Delay: DefaultGARPDelay},
			Notify: Notify{Timeout: DefaultNotifyTimeout},
		}},
	}
	if diff := cmp.Diff(want, c, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("Config (-want +got):\n%s", diff)
	}
}

func TestNodeNameDefaultsToHostname(t *testing.T) {
	c, diags := Parse([]byte(`vrrp_instance "a" {
  interface   = "lan"
  vrid        = 1
  virtual_ips = ["10.0.0.1/24"]
}`), "x.hcl")
	if diags.HasErrors() {
		t.Fatal(formatAll(diags))
	}
	host, _ := os.Hostname()
	if c.NodeName != host {
		t.Errorf("NodeName = %q, want the hostname %q", c.NodeName, host)
	}
}

// TestExamples checks that every configuration in examples/ is valid
// (with a key file beside it, as the examples expect).
func TestExamples(t *testing.T) {
	files, _ := filepath.Glob("../examples/*.hcl")
	if len(files) < 3 {
		t.Fatalf("found %d example configurations, want at least 3", len(files))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			inKeyDir(t)
			c, diags := Parse(src, filepath.Base(file))
			if len(diags) != 0 {
				t.Fatalf("diagnostics:\n%s", formatAll(diags))
			}
			if len(c.Instances) == 0 || c.Sync == nil {
				t.Errorf("example has no instance or no conntrack_sync")
			}
			_, ok := c.ConntrackGroup()
			switch {
			case c.Multiprimary() && (ok || len(c.SyncGroups) < 2):
				t.Errorf("multiprimary example: %d sync groups (want 2 or more), one drives conntrack: %v", len(c.SyncGroups), ok)
			case !c.Multiprimary() && !ok:
				t.Errorf("example has no sync group driving conntrack")
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, diags := Load(filepath.Join(t.TempDir(), "none.hcl"))
	if !diags.HasErrors() || !strings.Contains(Format(diags[0]), "cannot read configuration") {
		t.Fatalf("diags = %q, want a cannot-read error", formatAll(diags))
	}
}

func TestKeyFileTooLarge(t *testing.T) {
	dir := inKeyDir(t)
	if err := os.WriteFile(filepath.Join(dir, "big.key"), make([]byte, maxKeyFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	_, diags := Parse([]byte(`conntrack_sync {
  link "s" {
    interface = "sync"
    local     = "10.0.0.1"
    peer      = "10.0.0.2"
  }
  auth_key_file = "big.key"
}`), "x.hcl")
	if got := formatAll(diags); !strings.Contains(got, "is larger than 4096 bytes") {
		t.Errorf("diags = %q, want a too-large error", got)
	}
}

// TestHostileFiles: files no one should write get a quick, bounded
// verdict, never a crash: deep nesting (counted on the lexer's tokens, so
// brackets in strings and heredocs do not count), a binary, a file over
// MaxFileSize, a huge value quoted in a message.
func TestHostileFiles(t *testing.T) {
	brackets := strings.Repeat("[", 60000)
	long := strings.Repeat("A", 100000)
	garbage := make([]byte, 1<<20)
	for i := range garbage {
		garbage[i] = byte(i*7919 + i>>3)
	}
	for _, tc := range []struct {
		name, src, want string
		maxDiags        int
	}{
		{"nesting", "node_name = " + brackets, "nested deeper than 32", 1},
		{"nesting in interpolations", "node_name = " + nestedTemplate(40), "nested deeper than 32", 1},
		{"binary", string(garbage), "", MaxDiagnostics + 1},
		{"too large", "# " + strings.Repeat("x", MaxFileSize), "larger than 1024 KiB", 1},
		{"long value", "vrrp_instance \"lan\" {\n  interface = \"lan\"\n  vrid = 51\n  virtual_ips = [\"" + long + "\"]\n}\n", "more characters", MaxDiagnostics + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, diags := Parse([]byte(tc.src), "hostile.hcl")
			if !diags.HasErrors() {
				t.Fatalf("no error")
			}
			if len(diags) > tc.maxDiags {
				t.Errorf("%d diagnostics, want at most %d", len(diags), tc.maxDiags)
			}
			all := ""
			for _, d := range diags {
				msg := Format(d)
				if len(msg) > 2*maxMessage+100 {
					t.Errorf("a message of %d bytes: %.80s...", len(msg), msg)
				}
				all += msg + "\n"
			}
			if !strings.Contains(all, tc.want) {
				t.Errorf("diagnostics lack %q:\n%.2000s", tc.want, all)
			}
			// Before the bounds, 50 MB of garbage took 35 s; 1 MiB now
			// takes about 1 s (5 s under the race detector, on 2 vCPUs).
			if d := time.Since(start); d > slowdown*5*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
	// Brackets and braces inside a string or a heredoc are no nesting.
	quoted := "node_name = \"" + strings.Repeat("[{(", 100) + "\"\n" +
		"state_dir = <<EOT\n" + strings.Repeat("[[[{{{", 100) + "\nEOT\n"
	_, diags := Parse([]byte(quoted), "quoted.hcl")
	for _, d := range diags {
		if strings.Contains(d.Summary, "nested") {
			t.Errorf("brackets in a string counted as nesting: %s", Format(d))
		}
	}
}

// nestedTemplate is a string holding a template interpolation holding a
// string, and so on, depth times: valid HCL.
func nestedTemplate(depth int) string {
	s := `"x"`
	for range depth {
		s = `"${` + s + `}"`
	}
	return s
}

// mpFile is a two-group multiprimary node; %s is put into its
// conntrack_sync block, %c into sync_group "a".
const mpFile = `node_name = "fw1"
vrrp_instance "lan-a" {
  interface   = "lan"
  vrid        = 51
  priority    = 150
  virtual_ips = ["10.10.1.1/24"]
}
vrrp_instance "lan-b" {
  interface   = "lan"
  vrid        = 52
  priority    = 100
  virtual_ips = ["10.10.1.254/24"]
}
sync_group "a" {
  instances = ["lan-a"]
%c}
sync_group "b" {
  instances = ["lan-b"]
}
conntrack_sync {
%s  link "sync0" {
    interface = "sync"
    local     = "10.10.3.1"
    peers     = ["10.10.3.2"]
  }
  auth_key_file = "sync.key"
}
`

// TestMultiprimary: topology = "multiprimary" and what it rules out, and
// the peers list of a link, in both topologies.
func TestMultiprimary(t *testing.T) {
	file := func(sync, group string) string {
		return strings.NewReplacer("%s", sync, "%c", group).Replace(mpFile)
	}
	for _, tc := range []struct {
		name, src string
		want      []string // diagnostics, each the beginning of one
		topology  string
		peer      string // the link's Peer
		peers     int    // how many it lists (0: 1)
		snat      [2]uint16
		deferFor  time.Duration
		queue     uint16 // 0: DefaultDeferQueue
	}{
		{name: "valid", src: file("  topology = \"multiprimary\"\n", ""), topology: TopologyMultiprimary, peer: "10.10.3.2"},
		{name: "cache direct said", src: file("  topology = \"multiprimary\"\n  cache = \"direct\"\n", ""), topology: TopologyMultiprimary, peer: "10.10.3.2"},
		{name: "conntrack = false is fine", src: file("  topology = \"multiprimary\"\n", "  conntrack = false\n"), topology: TopologyMultiprimary, peer: "10.10.3.2"},
		{name: "primary-backup by default, peers too", src: file("", "  conntrack = true\n"), topology: TopologyPrimaryBackup, peer: "10.10.3.2"},
		{name: "primary-backup said", src: file("  topology = \"primary-backup\"\n", "  conntrack = true\n"), topology: TopologyPrimaryBackup, peer: "10.10.3.2"},
		{name: "external cache", src: file("  topology = \"multiprimary\"\n  cache = \"external\"\n", ""),
			want: []string{`mp.hcl:22,11: cache = "external" cannot be used with topology = "multiprimary"`}},
		{name: "conntrack group", src: file("  topology = \"multiprimary\"\n", "  conntrack = true\n"),
			want: []string{`mp.hcl:16,15: sync_group "a" sets conntrack = true, but with topology = "multiprimary" no group drives`}},
		{name: "unknown topology", src: file("  topology = \"mesh\"\n", ""),
			want: []string{`mp.hcl:20,1: warning: no sync_group sets conntrack = true`, // taken for primary-backup
				`mp.hcl:21,14: topology must be "primary-backup" or "multiprimary", got "mesh"`}},
		{name: "primary-backup without a conntrack group warns", src: file("", ""),
			want: []string{`mp.hcl:20,1: warning: no sync_group sets conntrack = true`}, topology: TopologyPrimaryBackup, peer: "10.10.3.2"},
		{name: "three nodes", src: strings.Replace(file("  topology = \"multiprimary\"\n", ""), `["10.10.3.2"]`, `["10.10.3.2", "10.10.3.3"]`, 1),
			topology: TopologyMultiprimary, peer: "10.10.3.2", peers: 2},
		{name: "snat port range", src: file("  topology = \"multiprimary\"\n  snat_port_range = \"20000-29999\"\n", ""),
			topology: TopologyMultiprimary, peer: "10.10.3.2", snat: [2]uint16{20000, 29999}},
		{name: "snat port range reversed", src: file("  topology = \"multiprimary\"\n  snat_port_range = \"29999-20000\"\n", ""),
			want: []string{`mp.hcl:22,21: snat_port_range must be "LOW-HIGH", ports 1 to 65535 with LOW <= HIGH`}},
		{name: "snat port range beyond 65535", src: file("  topology = \"multiprimary\"\n  snat_port_range = \"60000-70000\"\n", ""),
			want: []string{`mp.hcl:22,21: snat_port_range must be "LOW-HIGH"`}},
		{name: "snat port range one port", src: file("  topology = \"multiprimary\"\n  snat_port_range = \"2000\"\n", ""),
			want: []string{`mp.hcl:22,21: snat_port_range must be "LOW-HIGH"`}},
		{name: "snat port range in primary-backup", src: file("  snat_port_range = \"20000-29999\"\n", "  conntrack = true\n"),
			want:     []string{`mp.hcl:22,21: warning: snat_port_range is only used with topology = "multiprimary"`},
			topology: TopologyPrimaryBackup, peer: "10.10.3.2", snat: [2]uint16{20000, 29999}},
		{name: "defer", src: file("  topology = \"multiprimary\"\n  defer = \"20ms\"\n", ""),
			topology: TopologyMultiprimary, peer: "10.10.3.2", deferFor: 20 * time.Millisecond},
		{name: "defer with its queue", src: file("  topology = \"multiprimary\"\n  defer = \"5ms\"\n  defer_queue = 42\n", ""),
			topology: TopologyMultiprimary, peer: "10.10.3.2", deferFor: 5 * time.Millisecond, queue: 42},
		{name: "defer off", src: file("  topology = \"multiprimary\"\n  defer = \"0s\"\n", ""),
			topology: TopologyMultiprimary, peer: "10.10.3.2"},
		{name: "defer in primary-backup", src: file("  defer = \"20ms\"\n", "  conntrack = true\n"),
			want: []string{`mp.hcl:22,11: defer needs topology = "multiprimary"`}},
		{name: "defer too long", src: file("  topology = \"multiprimary\"\n  defer = \"2s\"\n", ""),
			want: []string{`mp.hcl:22,11: defer must be at most 1s`}},
		{name: "defer negative", src: file("  topology = \"multiprimary\"\n  defer = \"-1ms\"\n", ""),
			want: []string{`mp.hcl:22,11: defer must not be negative`}},
		{name: "defer queue out of range", src: file("  topology = \"multiprimary\"\n  defer = \"20ms\"\n  defer_queue = 70000\n", ""),
			want: []string{`mp.hcl:23,17: defer_queue must be from 0 to 65535, got 70000`}},
		{name: "defer queue without defer", src: file("  topology = \"multiprimary\"\n  defer_queue = 7\n", ""),
			want:     []string{`mp.hcl:22,17: warning: defer_queue is only used with defer`},
			topology: TopologyMultiprimary, peer: "10.10.3.2", queue: 7},
		{name: "two peers in primary-backup", src: strings.Replace(file("", "  conntrack = true\n"), `["10.10.3.2"]`, `["10.10.3.2", "10.10.3.3"]`, 1),
			want: []string{`mp.hcl:22,3: 2 peers: primary-backup has one (topology = "multiprimary" has up to 7)`}},
		{name: "two peers in alarm mode", src: strings.Replace(file("  topology = \"multiprimary\"\n  mode = \"alarm\"\n", ""), `["10.10.3.2"]`, `["10.10.3.2", "10.10.3.3"]`, 1),
			want: []string{`mp.hcl:23,3: 2 peers: mode = "alarm" replicates to one peer; use "reliable"`}},
		{name: "links reach different nodes", src: strings.Replace(file("  topology = \"multiprimary\"\n", ""), "  auth_key_file", `  link "sync1" {
    interface = "sync1"
    local     = "10.10.4.1"
    peers     = ["10.10.4.2", "10.10.4.3"]
  }
  auth_key_file`, 1),
			want: []string{`mp.hcl:27,3: link "sync1" reaches 2 peers but link "sync0" 1: every link lists the same nodes, in the same order`}},
		{name: "eight peers", src: strings.Replace(file("  topology = \"multiprimary\"\n", ""), `["10.10.3.2"]`,
			`["10.10.3.2", "10.10.3.3", "10.10.3.4", "10.10.3.5", "10.10.3.6", "10.10.3.7", "10.10.3.8", "10.10.3.9"]`, 1),
			want: []string{`mp.hcl:25,17: peers lists 8 addresses; at most 7 (8 nodes)`}},
		{name: "own address", src: strings.Replace(file("  topology = \"multiprimary\"\n", ""), `["10.10.3.2"]`, `["10.10.3.1"]`, 1),
			want: []string{`mp.hcl:25,18: peer 10.10.3.1 is this node's own local address`}},
		{name: "peer and peers", src: strings.Replace(file("", "  conntrack = true\n"), `peers     = ["10.10.3.2"]`, `peer = "10.10.3.2"
    peers = ["10.10.3.2"]`, 1),
			want: []string{`mp.hcl:26,13: link "sync0" sets both peer and peers; use one`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inKeyDir(t)
			c, diags := Parse([]byte(tc.src), "mp.hcl")
			got := strings.Split(strings.TrimSpace(formatAll(diags)), "\n")
			if len(diags) == 0 {
				got = nil
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d diagnostics, want %d:\n%s", len(got), len(tc.want), strings.Join(got, "\n"))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tc.want[i]) {
					t.Errorf("diagnostic %d = %q, want it to start with %q", i, got[i], tc.want[i])
				}
			}
			if diags.HasErrors() {
				return
			}
			if c.Sync.Topology != tc.topology || c.Multiprimary() != (tc.topology == TopologyMultiprimary) {
				t.Errorf("topology %q (Multiprimary %v), want %q", c.Sync.Topology, c.Multiprimary(), tc.topology)
			}
			if c.Sync.Cache != CacheDirect {
				t.Errorf("cache %q, want %q", c.Sync.Cache, CacheDirect)
			}
			if got := c.Sync.Links[0].Peer; got != netip.MustParseAddr(tc.peer) || c.Sync.Links[0].MulticastGroup.IsValid() {
				t.Errorf("link peer %v (multicast %v), want %s", got, c.Sync.Links[0].MulticastGroup, tc.peer)
			}
			want := uint16(DefaultDeferQueue)
			if tc.queue != 0 {
				want = tc.queue
			}
			if c.Sync.Defer != tc.deferFor || c.Sync.DeferQueue != want {
				t.Errorf("defer %v queue %d, want %v queue %d", c.Sync.Defer, c.Sync.DeferQueue, tc.deferFor, want)
			}
			if c.Sync.SNATPorts != tc.snat {
				t.Errorf("snat_port_range %v, want %v", c.Sync.SNATPorts, tc.snat)
			}
			if got, want := c.Sync.Links[0].Peers, max(tc.peers, 1); len(got) != want || got[0] != c.Sync.Links[0].Peer {
				t.Errorf("link peers %v, want %d beginning with %s", got, want, tc.peer)
			}
		})
	}
}
