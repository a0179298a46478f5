package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func startServer(t *testing.T, path string, h Handler) {
	t.Helper()
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	srv := NewServer(ln, h, slog.New(slog.NewTextHandler(io.Discard, nil)))
	go func() { srv.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestCallRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "ctha.sock")
	want := Status{Node: "fw1", Groups: []GroupStatus{{Name: "fw", State: "MASTER"}}}
	startServer(t, path, func(_ context.Context, req Request) (any, error) {
		switch req.Op {
		case "status":
			return want, nil
		case "fail":
			return nil, errors.New("commit left 3 entries out")
		}
		return nil, fmt.Errorf("%w %q", ErrUnknown, req.Op)
	})

	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %04o, want 0600", st.Mode().Perm())
	}

	var got Status
	if err := Call(context.Background(), path, "status", nil, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	if err := Call(context.Background(), path, "fail", nil, nil); err == nil || err.Error() != "commit left 3 entries out" {
		t.Errorf("failing op: err = %v, want the handler's error", err)
	}
	if err := Call(context.Background(), path, "nope", nil, nil); err == nil {
		t.Errorf("unknown op: no error")
	}
	if _, err := Listen(path); err == nil {
		t.Errorf("second Listen on a live socket succeeded, want an error")
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctha.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // leaves the file behind, like a crashed daemon
	ln2, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ln2.Close()
}

// TestListenKeepsOtherFiles: a path that is not a socket (the
// configuration file given to -s by a slip) is refused, never deleted.
func TestListenKeepsOtherFiles(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "ctha.hcl")
	if err := os.WriteFile(file, []byte("node_name = \"fw1\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{file, dir} {
		ln, err := Listen(path)
		if err == nil {
			ln.Close()
			t.Fatalf("Listen(%s) replaced something that is not a socket", path)
		}
		if !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("Listen(%s): %v, want it to say the path is not a socket", path, err)
		}
	}
	if b, err := os.ReadFile(file); err != nil || !strings.HasPrefix(string(b), "node_name") {
		t.Errorf("the file given as the socket is gone or changed: %v %q", err, b)
	}
}

func TestCallNoDaemon(t *testing.T) {
	err := Call(context.Background(), filepath.Join(t.TempDir(), "none.sock"), "status", nil, nil)
	if !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("err = %v, want ErrNoDaemon", err)
	}
}

func TestBadRequest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctha.sock")
	startServer(t, path, func(context.Context, Request) (any, error) { return "ok", nil })
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "{not json\n")
	b, _ := io.ReadAll(c)
	if want := `"error":"bad request`; !strings.Contains(string(b), want) {
		t.Errorf("response %q lacks %q", b, want)
	}
}
