package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/lab"
)

// demoSummary is the part of `make demo`'s JSON summary (DEMO_JSON) the
// tests read.
type demoSummary struct {
	Result           string   `json:"result"`
	Error            string   `json:"error"`
	Prefix           string   `json:"prefix"`
	Namespaces       []string `json:"namespaces"`
	Dir              string   `json:"dir"`
	AdvertMs         float64  `json:"advert_ms"`
	Flows            int      `json:"flows"`
	Survived         int      `json:"survived"`
	KillToVIPsMs     float64  `json:"kill_to_vips_ms"`
	LongestGapMs     float64  `json:"longest_gap_ms"`
	StatesReplicated int      `json:"states_replicated"`
	InvalidDrops     uint64   `json:"invalid_drops"`
	Processes        []struct {
		Name string `json:"name"`
		Pid  int    `json:"pid"`
	} `json:"processes"`
	Cleaned       bool     `json:"cleaned"`
	CleanupErrors []string `json:"cleanup_errors"`
	DurationS     float64  `json:"duration_s"`
}

// demoCmd returns `make demo` run from the repository's root, in a
// process group of its own (so a test can send SIGINT to it as a
// terminal's Ctrl-C does), with no terminal and no DEMO_* settings of
// the caller's.
func demoCmd(t *testing.T, ctx context.Context, summary string) *exec.Cmd {
	t.Helper()
	lab.RequireNetns(t)
	lab.RequireCommands(t, "make")
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "-C", "..", "demo", "DEMO_JSON="+summary)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DEMO_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// On timeout the whole group goes, the demo with it (its daemons die
	// with it: they have a parent-death signal).
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// TestDemo runs `make demo` as a newcomer would, without a terminal, and
// checks its summary: every flow survived, no INVALID drop on the new
// master, the VIPs moved within the Master_Down_Interval, and nothing is
// left behind.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "summary.json")
	cmd := demoCmd(t, ctx, path)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("make demo: %v in %v", err, time.Since(start).Round(time.Second))
	if err != nil {
		t.Fatalf("make demo: %v\n%s", err, out.String())
	}
	s := readDemoSummary(t, path, out.String())
	checkDemoLeftovers(t, s)

	t.Logf("figure: make demo: %d/%d flows survived, kill -> VIPs %.0f ms, longest gap %.0f ms, %d states replicated, %d INVALID drops, %.1f s (advert %.0f ms)",
		s.Survived, s.Flows, s.KillToVIPsMs, s.LongestGapMs, s.StatesReplicated, s.InvalidDrops, s.DurationS, s.AdvertMs)
	if s.Result != "pass" || s.Flows != 200 || s.Survived != s.Flows {
		t.Errorf("result %q: %d/%d flows survived, want pass with 200/200", s.Result, s.Survived, s.Flows)
	}
	if s.InvalidDrops != 0 {
		t.Errorf("%d INVALID drops on the new master, want 0", s.InvalidDrops)
	}
	if s.StatesReplicated < s.Flows {
		t.Errorf("fw2 held %d states at the kill, want at least %d", s.StatesReplicated, s.Flows)
	}
	// fw2 (priority 100) takes over a Master_Down_Interval (3.61 adverts)
	// after fw1's last advert, which was at most one advert before the
	// kill; the margin is for a loaded machine and the polling of `ip`.
	advert := time.Duration(s.AdvertMs * float64(time.Millisecond))
	lo, hi := 2*advert, 3*advert+advert*156/256+1500*time.Millisecond
	if took := time.Duration(s.KillToVIPsMs * float64(time.Millisecond)); took < lo || took > hi {
		t.Errorf("kill -> VIPs %v, want within %v..%v", took, lo, hi)
	}
	if s.LongestGapMs <= 0 || s.LongestGapMs > 10000 {
		t.Errorf("longest gap %.0f ms, want a TCP retransmission step under 10 s", s.LongestGapMs)
	}
	if s.DurationS > 120 {
		t.Errorf("the demo took %.0f s, want under two minutes", s.DurationS)
	}
	text := out.String()
	for _, want := range []string{"flows alive", "fw2 is MASTER", "Summary:", "ip netns exec " + s.Prefix + "-fw2 ", "demo: PASS"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "\x1b[") {
		t.Errorf("escape sequences in the output, though stdout is not a terminal")
	}
}

// TestDemoInterrupt sends SIGINT to `make demo` (as Ctrl-C does: to the
// whole process group) while its flows run, and checks that it still
// removes everything.
func TestDemoInterrupt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "summary.json")
	cmd := demoCmd(t, ctx, path)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		out strings.Builder
	)
	running := make(chan struct{})
	var once sync.Once
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			out.WriteString(line + "\n")
			mu.Unlock()
			// A live-view line of the flows phase: daemons, server and
			// client all run.
			if strings.Contains(line, "| 200/200") {
				once.Do(func() { close(running) })
			}
		}
	}()
	output := func() string {
		mu.Lock()
		defer mu.Unlock()
		return out.String()
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); pw.Close() }()

	select {
	case <-running:
	case err := <-done:
		t.Fatalf("make demo ended before its flows ran: %v\n%s", err, output())
	case <-ctx.Done():
		t.Fatalf("the flows never ran\n%s", output())
	}
	sent := time.Now()
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("make demo still running 60 s after SIGINT\n%s", output())
	}
	<-scanned
	t.Logf("make demo ended %v after SIGINT: %v", time.Since(sent).Round(time.Millisecond), err)
	if err == nil {
		t.Errorf("make demo exited 0 after SIGINT")
	}
	s := readDemoSummary(t, path, output())
	if s.Result != "interrupted" {
		t.Errorf("result %q (%s), want interrupted", s.Result, s.Error)
	}
	if len(s.Processes) != 4 {
		t.Errorf("the demo had started %d processes when interrupted, want 4 (both daemons, server, client)", len(s.Processes))
	}
	checkDemoLeftovers(t, s)
	if text := output(); !strings.Contains(text, "Done: no namespace "+s.Prefix) {
		t.Errorf("output lacks the cleanup report:\n%s", text)
	}
}

func readDemoSummary(t *testing.T, path, output string) demoSummary {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("summary: %v\n%s", err, output)
	}
	var s demoSummary
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("summary: %v\n%s", err, b)
	}
	if !strings.HasPrefix(s.Prefix, "ct") || len(s.Namespaces) != len(lab.Roles) || s.Dir == "" {
		t.Fatalf("summary names no lab: %s", b)
	}
	return s
}

// checkDemoLeftovers checks, independently of the demo's own report, that
// no namespace of its lab, no process it started and no process running
// from its directory is left, and that the directory is gone.
func checkDemoLeftovers(t *testing.T, s demoSummary) {
	t.Helper()
	if !s.Cleaned || len(s.CleanupErrors) > 0 {
		t.Errorf("the demo reports an incomplete cleanup: %q", s.CleanupErrors)
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, s.Prefix+"-") {
			t.Errorf("namespace left: %s", line)
			if name := strings.Fields(line)[0]; name != "" {
				_ = exec.Command("ip", "netns", "del", name).Run()
			}
		}
	}
	for _, p := range s.Processes {
		if err := syscall.Kill(p.Pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %s (pid %d) left: %v", p.Name, p.Pid, err)
		}
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(s.Dir)) {
			t.Errorf("process %d left, running from the demo's directory: %s", pid, bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		}
	}
	if _, err := os.Stat(s.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the demo's directory %s is left: %v", s.Dir, err)
	}
}
