package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/flowgen"
)

// syncBuffer is a strings.Builder safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServer runs "flowgen server" on a loopback port until the test
// ends and returns its address.
func startServer(t *testing.T, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancelCause(context.Background())
	pr, pw := io.Pipe()
	var stderr syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, append([]string{"server", "-listen", "127.0.0.1:0"}, extra...), pw, &stderr)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	go io.Copy(io.Discard, pr)
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if err != nil || !ok {
		cancel(nil)
		t.Fatalf("server said %q (%v), stderr %q", line, err, stderr.String())
	}
	t.Cleanup(func() {
		cancel(errors.New("signal terminated"))
		select {
		case c := <-code:
			if c != exitOK {
				t.Errorf("server exit %d, stderr %q", c, stderr.String())
			}
		case <-time.After(5 * time.Second):
			t.Error("server still running 5 s after its signal")
		}
	})
	return addr
}

func TestClientServer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srvReady := filepath.Join(dir, "srv.ready")
	addr := startServer(t, "-ready", srvReady)
	if b, err := os.ReadFile(srvReady); err != nil || string(b) != "listening "+addr+"\n" {
		t.Errorf("server ready file: %q, %v", b, err)
	}

	out, ready := filepath.Join(dir, "report.json"), filepath.Join(dir, "ready")
	var stdout, stderr syncBuffer
	code := run(context.Background(), []string{"client", "-connect", addr, "-flows", "10", "-interval", "10ms",
		"-duration", "1200ms", "-json", out, "-ready", ready, "-progress"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("client exit %d, stderr %q", code, stderr.String())
	}
	if stdout.String() != "" {
		t.Errorf("stdout %q, want nothing (report and ready line in files)", stdout.String())
	}
	if b, err := os.ReadFile(ready); err != nil || !strings.HasPrefix(string(b), "ready 10 flows") {
		t.Errorf("ready file: %q, %v", b, err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep flowgen.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, b)
	}
	if rep.Flows != 10 || rep.Survived != 10 || rep.LongestGapMs <= 0 || rep.LongestGapMs > 500 {
		t.Errorf("flows %d survived %d longest gap %v ms", rep.Flows, rep.Survived, rep.LongestGapMs)
	}
	e := stderr.String()
	if !strings.Contains(e, "flowgen: t=1.0s alive=10/10") || !strings.Contains(e, "10/10 flows survived") {
		t.Errorf("stderr %q lacks the progress or summary line", e)
	}
}

// Without -json and -ready, stdout has the ready line then the report on
// one line; a signal stops the run and still gives the report.
func TestClientStdoutAndSignal(t *testing.T) {
	t.Parallel()
	addr := startServer(t)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	time.AfterFunc(500*time.Millisecond, func() { cancel(errors.New("signal terminated")) })
	var stdout, stderr syncBuffer
	code := run(ctx, []string{"client", "-connect", addr, "-flows", "3", "-interval", "10ms", "-duration", "0"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("client exit %d, stderr %q", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if len(lines) != 2 || lines[0] != "ready 3 flows to "+addr {
		t.Fatalf("stdout %q, want the ready line and the report", stdout.String())
	}
	var rep flowgen.Report
	if err := json.Unmarshal([]byte(lines[1]), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Survived != 3 || rep.StopReason != "stopped: signal terminated" {
		t.Errorf("survived %d, stop reason %q", rep.Survived, rep.StopReason)
	}
}

func TestClientStopFile(t *testing.T) {
	t.Parallel()
	addr := startServer(t)
	stop := filepath.Join(t.TempDir(), "stop")
	time.AfterFunc(400*time.Millisecond, func() { os.WriteFile(stop, nil, 0o644) })
	var stdout, stderr syncBuffer
	start := time.Now()
	code := run(context.Background(), []string{"client", "-connect", addr, "-flows", "2", "-duration", "20s", "-stop-file", stop}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("client exit %d, stderr %q", code, stderr.String())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stop file noticed after %v", d)
	}
	if !strings.Contains(stdout.String(), `"stop_reason":"stopped: stop file `) {
		t.Errorf("stdout %q", stdout.String())
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	exists := filepath.Join(dir, "exists")
	if err := os.WriteFile(exists, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string // in stderr
	}{
		{nil, exitFail, "usage"},
		{[]string{"help"}, exitOK, ""},
		{[]string{"bogus"}, exitFail, "unknown command"},
		{[]string{"server"}, exitFail, "-listen is required"},
		{[]string{"server", "-listen", "256.0.0.1:1"}, exitFail, "listen"},
		{[]string{"server", "-h"}, exitOK, "usage"},
		{[]string{"client"}, exitFail, "-connect is required"},
		{[]string{"client", "-h"}, exitOK, "usage"},
		{[]string{"client", "-nosuchflag"}, exitFail, "not defined"},
		{[]string{"client", "-connect", "127.0.0.1:1", "extra"}, exitFail, "unexpected argument"},
		{[]string{"client", "-connect", "127.0.0.1:1", "-flows", "0"}, exitFail, "-flows"},
		{[]string{"client", "-connect", "127.0.0.1:1", "-interval", "0s"}, exitFail, "-interval"},
		{[]string{"client", "-connect", "127.0.0.1:1", "-stop-file", exists}, exitFail, "already exists"},
		{[]string{"client", "-connect", "127.0.0.1:1", "-json", "/nonexistent/dir/r.json"}, exitFail, "-json"},
		{[]string{"client", "-connect", "127.0.0.1:1", "-flows", "2"}, exitFail, "refused"},
	} {
		var stdout, stderr syncBuffer
		code := run(context.Background(), tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("flowgen %q: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr.String(), tc.code, tc.want)
		}
	}
}
