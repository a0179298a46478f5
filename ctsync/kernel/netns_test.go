package kernel

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

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/integration/lab"
)

// testNS is a network namespace of one test, removed when the test ends.
type testNS struct {
	t    *testing.T
	name string
	h    netns.NsHandle
}

// newNS creates a namespace with nf_conntrack_events=1. It skips the test
// when namespaces are not available, or fails it if CTHA_REQUIRE_NETNS=1
// (lab.RequireNetns).
func newNS(t *testing.T) *testNS {
	t.Helper()
	lab.RequireNetns(t)
	unavailable := func(format string, args ...any) {
		t.Helper()
		t.Fatalf(format, args...)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "ctk" + hex.EncodeToString(b[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		unavailable("ip netns add: %v: %s", err, out)
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
	n := &testNS{t: t, name: name, h: h}
	n.exec("sysctl", "-qw", "net.netfilter.nf_conntrack_events=1")
	return n
}

// in runs fn on an OS thread switched into the namespace; sockets opened
// there stay in it. The thread is switched back and unlocked afterwards.
func (n *testNS) in(fn func() error) error {
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
		if err := netns.Set(n.h); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter %s: %w", n.name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it dies with this goroutine rather
			// than run other goroutines in the wrong namespace.
			errc <- fmt.Errorf("leave %s: %w", n.name, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// exec runs a command in the namespace and returns its output.
func (n *testNS) exec(args ...string) string {
	n.t.Helper()
	out, err := n.try(args...)
	if err != nil {
		n.t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return out
}

func (n *testNS) try(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.name}, args...)...).CombinedOutput()
	return string(out), err
}

// nft loads a ruleset into the namespace.
func (n *testNS) nft(ruleset string) {
	n.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", n.name, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		n.t.Fatalf("nft: %v: %s", err, out)
	}
}

// labelsAndHelpers makes labels stick and the FTP helper available.
func (n *testNS) labelsAndHelpers() {
	n.nft(`table inet ctk {
	ct helper ftp-std { type "ftp" protocol tcp; }
	chain pre {
		type filter hook prerouting priority 0;
		tcp dport 21 ct helper set "ftp-std"
		ct label 1 counter
	}
}`)
}

func (n *testNS) dial() *Conn {
	n.t.Helper()
	var c *Conn
	if err := n.in(func() (err error) { c, err = Dial(); return err }); err != nil {
		n.t.Fatalf("Dial: %v", err)
	}
	n.t.Cleanup(func() { c.Close() })
	return c
}

func (n *testNS) listen(opts ListenOptions) *Listener {
	n.t.Helper()
	var l *Listener
	if err := n.in(func() (err error) { l, err = Listen(opts); return err }); err != nil {
		n.t.Fatalf("Listen: %v", err)
	}
	n.t.Cleanup(func() { l.Close() })
	return l
}

func (n *testNS) count() int {
	n.t.Helper()
	var c int
	if err := n.in(func() (err error) { c, _, err = TableCount(); return err }); err != nil {
		n.t.Fatalf("TableCount: %v", err)
	}
	return c
}

// dumpMap dumps the table into a map by key.
func dumpMap(t *testing.T, c *Conn) map[ct.Key]ct.Flow {
	t.Helper()
	m := map[ct.Key]ct.Flow{}
	err := c.Dump(context.Background(), func(f ct.Flow) bool {
		m[f.Key()] = f
		return true
	})
	if err != nil {
		t.Fatalf("Dump: %v", err)
	}
	return m
}

// write runs Write and fails the test on an error or any failed flow.
func write(t *testing.T, c *Conn, op Op, flows []ct.Flow, opts WriteOptions) WriteResult {
	t.Helper()
	res, err := c.Write(context.Background(), op, flows, opts)
	if err != nil {
		t.Fatalf("Write(%v): %v", op, err)
	}
	for _, f := range res.Failed {
		t.Errorf("Write(%v): %v", op, f)
	}
	if res.OK != len(flows) {
		t.Fatalf("Write(%v): OK = %d, want %d", op, res.OK, len(flows))
	}
	return res
}
