package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ctha/ctha/internal/control"
)

// TestMain lets the tests run the test binary itself as `ctha`, so the
// daemon runs as a real process (signals, exit codes) without a build step.
func TestMain(m *testing.M) {
	if os.Getenv("CTHA_TEST_MAIN") == "1" {
		main()
		return
	}
	// Every goroutine a test starts has an owner that stops it.
	goleak.VerifyTestMain(m)
}

// runCLI runs ctha in process and returns its exit code and output.
func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	c := &cli{stdout: &out, stderr: &errb}
	code = c.main(args)
	return code, out.String(), errb.String()
}

const testKey = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"

// writeConfig writes a config and a valid sync.key beside it.
func writeConfig(t *testing.T, dir, name, src string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "sync.key"), []byte(testKey), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestKeygen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sync.key")
	code, out, errs := runCLI("keygen", path)
	if code != exitOK || !strings.Contains(out, "fingerprint") {
		t.Fatalf("keygen = %d, %q, %q", code, out, errs)
	}
	first := mustRead(t, path)
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("key mode = %04o, want 0600", st.Mode().Perm())
	}
	code, _, errs = runCLI("keygen", path)
	if code != exitFail || !strings.Contains(errs, "file exists") {
		t.Errorf("second keygen = %d, %q; want a failure that says the file exists", code, errs)
	}
	if mustRead(t, path) != first {
		t.Errorf("keygen overwrote an existing key")
	}
	code, out, _ = runCLI("keygen")
	if code != exitOK || out == first || !strings.Contains(out, "# ctha sync key") {
		t.Errorf("keygen to stdout = %d, %q", code, out)
	}
}

func TestHelpAndUsage(t *testing.T) {
	code, out, _ := runCLI("help")
	if code != exitOK {
		t.Fatalf("help exit %d", code)
	}
	for _, cmd := range commands {
		if !strings.Contains(out, "ctha "+cmd.name) {
			t.Errorf("help does not list %s", cmd.name)
		}
		if cmd.name == "help" {
			continue
		}
		code, out, errs := runCLI(cmd.name, "-h")
		if code != exitOK || !strings.HasPrefix(out, "Usage: ctha "+cmd.name) || errs != "" {
			t.Errorf("%s -h: exit %d, stdout %q, stderr %q; want 0 and help on stdout", cmd.name, code, out, errs)
		}
		// A wrong flag: one line beginning ctha:, exit 2, nothing on stdout.
		code, out, errs = runCLI(cmd.name, "--no-such-flag")
		if lines := strings.Split(strings.TrimSpace(errs), "\n"); code != exitUsage || out != "" || len(lines) != 1 ||
			!strings.HasPrefix(lines[0], "ctha: "+cmd.name+": flag provided but not defined: -no-such-flag") {
			t.Errorf("%s --no-such-flag: exit %d, stdout %q, stderr %q; want %d and one ctha: line", cmd.name, code, out, errs, exitUsage)
		}
		code, out, _ = runCLI("help", cmd.name)
		if code != exitOK || !strings.Contains(out, "Usage: ctha "+cmd.name) {
			t.Errorf("help %s: exit %d, %q", cmd.name, code, out)
		}
	}
	if code, _, errs := runCLI("frobnicate"); code != exitUsage || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, %q", code, errs)
	}
	if code, _, _ := runCLI(); code != exitUsage {
		t.Errorf("no command: exit %d, want %d", code, exitUsage)
	}
	if code, out, _ := runCLI("version"); code != exitOK || !strings.HasPrefix(out, "ctha ") {
		t.Errorf("version: %d %q", code, out)
	}
}

func TestStatusNoDaemon(t *testing.T) {
	code, _, errs := runCLI("status", "-s", filepath.Join(t.TempDir(), "none.sock"))
	if code != exitFail {
		t.Errorf("exit %d, want %d", code, exitFail)
	}
	if lines := strings.Split(strings.TrimSpace(errs), "\n"); len(lines) != 1 || !strings.Contains(errs, "ctha is not running") {
		t.Errorf("want one line saying ctha is not running, got %q", errs)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFlagsAfterArguments(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	for _, args := range [][]string{
		{"sync", "commit", "-s", sock},
		{"sync", "-s", sock, "commit"},
		{"dump", "external", "--json", "-s", sock},
		{"failover", "fw", "--cancel", "-s", sock},
	} {
		code, _, errs := runCLI(args...)
		// The flags were understood: the command got as far as the socket.
		if code != exitFail || !strings.Contains(errs, "ctha is not running (no daemon answers on "+sock+")") {
			t.Errorf("ctha %v: exit %d, %q", args, code, errs)
		}
	}
	if code, _, _ := runCLI("sync", "frobnicate", "-s", sock); code != exitUsage {
		t.Errorf("an unknown sync operation: exit %d, want %d", code, exitUsage)
	}
}

// TestCLIContract: every error is one line beginning ctha: with exit 1 for
// a failed operation and 2 for a wrong command line; - means stdout.
func TestCLIContract(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "none.sock")
	notSocket := filepath.Join(dir, "ctha.hcl")
	if err := os.WriteFile(notSocket, []byte("node_name = \"fw1\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"sync", "bogus", "-s", sock}, exitUsage, `unknown operation "bogus"`},
		{[]string{"sync", "-s", sock}, exitUsage, "name an operation"},
		{[]string{"status", "-s", notSocket}, exitFail, "is not a control socket (a regular file)"},
		{[]string{"keygen", "a", "b"}, exitUsage, "at most one FILE"},
		{[]string{"check", "--offline", notSocket}, exitUsage, `unexpected argument "` + notSocket + `"`},
	} {
		code, out, errs := runCLI(tc.args...)
		lines := strings.Split(strings.TrimSpace(errs), "\n")
		if code != tc.code || out != "" || len(lines) != 1 || !strings.HasPrefix(lines[0], "ctha: ") || !strings.Contains(errs, tc.want) {
			t.Errorf("ctha %v: exit %d, stdout %q, stderr %q; want %d and one ctha: line with %q", tc.args, code, out, errs, tc.code, tc.want)
		}
	}
	if b, err := os.ReadFile(notSocket); err != nil || !strings.HasPrefix(string(b), "node_name") {
		t.Errorf("the file given as a socket changed: %v", err)
	}
	// keygen - writes the key on stdout, and no file named "-".
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	code, out, _ := runCLI("keygen", "-")
	if code != exitOK || !strings.Contains(out, "# ctha sync key") {
		t.Errorf("keygen -: exit %d, %q", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "-")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("keygen - wrote a file named -: %v", err)
	}
}

// TestPrintStatusSplitBrain: plain status says a split brain, as it says
// a demotion, and how far the peer's copy has come.
func TestPrintStatusSplitBrain(t *testing.T) {
	var b bytes.Buffer
	st := control.Status{Node: "fw1", Sync: &control.SyncStatus{Mode: "reliable", Cache: "direct", Running: true,
		PeerUp: true, SplitBrain: true, BulkReceived: 120, BulkExpected: 50200}}
	printStatus(&b, st, time.Now())
	for _, want := range []string{"SPLIT BRAIN", "awaited, 120 of 50200 entries received"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
	st.Sync.SplitBrain, st.Sync.BulkComplete = false, true
	b.Reset()
	printStatus(&b, st, time.Now())
	if strings.Contains(b.String(), "SPLIT BRAIN") || !strings.Contains(b.String(), "held (120 of 50200 entries)") {
		t.Errorf("status without a split brain:\n%s", b.String())
	}
}

// TestPanicExitsOne: a command that panics fails with exit 1 and one
// "ctha: internal error" line (then the stack), not the runtime's 2, the
// usage code.
func TestPanicExitsOne(t *testing.T) {
	saved := commands
	t.Cleanup(func() { commands = saved })
	commands = append(slices.Clone(saved), command{name: "boom", run: func(*cli, []string) int { panic("kaboom") }})
	var stdout, stderr strings.Builder
	c := &cli{stdout: &stdout, stderr: &stderr}
	if code := c.main([]string{"boom"}); code != exitFail {
		t.Errorf("exit %d, want %d", code, exitFail)
	}
	if !strings.HasPrefix(stderr.String(), "ctha: internal error: kaboom\n") {
		t.Errorf("stderr %q", stderr.String())
	}
}
