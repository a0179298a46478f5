// Package nstest gives a test its own network namespace: created under a
// unique name, removed when the test ends, with helpers to open sockets
// in it (on a locked OS thread) and run commands in it. It skips or fails
// as lab.RequireNetns says.
package nstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/ctha/ctha/integration/lab"
)

// NS is a network namespace of one test.
type NS struct {
	t    testing.TB
	Name string
	// Handle is an open file descriptor of the namespace.
	Handle netns.NsHandle
}

// New creates a namespace named prefix and random hex digits, with its
// loopback up, removed when the test ends.
func New(t testing.TB, prefix string) *NS {
	t.Helper()
	lab.RequireNetns(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := prefix + hex.EncodeToString(b[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open namespace %s: %v", name, err)
	}
	t.Cleanup(func() { h.Close() })
	n := &NS{t: t, Name: name, Handle: h}
	n.Exec("ip", "link", "set", "lo", "up")
	return n
}

// In runs fn on an OS thread switched into the namespace: sockets opened
// there stay in it. The thread is switched back afterwards.
func (n *NS) In(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(n.Handle); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter %s: %w", n.Name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// The thread stays locked and dies with this goroutine rather
			// than run others in the wrong namespace.
			errc <- fmt.Errorf("leave %s: %w", n.Name, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Exec runs a command in the namespace and fails the test if it fails.
func (n *NS) Exec(args ...string) string {
	n.t.Helper()
	out, err := n.Try(args...)
	if err != nil {
		n.t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return out
}

// Try runs a command in the namespace (at most 20 s) and returns its
// output and error.
func (n *NS) Try(args ...string) (string, error) {
	return n.TryInput("", args...)
}

// TryInput is Try with stdin.
func (n *NS) TryInput(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
