package kernel

import (
	"context"
	"testing"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/internal/nstest"
)

// testNS is a network namespace of one test (internal/nstest), removed
// when the test ends.
type testNS struct {
	*nstest.NS
	t *testing.T
}

// newNS creates a namespace with nf_conntrack_events=1. It skips the test
// when namespaces are not available, or fails it if CTHA_REQUIRE_NETNS=1
// (lab.RequireNetns).
func newNS(t *testing.T) *testNS {
	t.Helper()
	n := &testNS{NS: nstest.New(t, "ctk"), t: t}
	n.exec("sysctl", "-qw", "net.netfilter.nf_conntrack_events=1")
	return n
}

// in runs fn on an OS thread switched into the namespace; sockets opened
// there stay in it.
func (n *testNS) in(fn func() error) error { return n.In(fn) }

// exec runs a command in the namespace and returns its output.
func (n *testNS) exec(args ...string) string {
	n.t.Helper()
	return n.Exec(args...)
}

// nft loads a ruleset into the namespace.
func (n *testNS) nft(ruleset string) {
	n.t.Helper()
	if out, err := n.TryInput(ruleset, "nft", "-f", "-"); err != nil {
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
