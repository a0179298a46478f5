package kernel

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/ctha/ctha/ctsync/ct"
)

// TestExpectations creates an FTP master flow and an expectation of it,
// which a listener of the expectation groups sees, a dump lists, and a
// delete removes; an expectation without its master is refused.
func TestExpectations(t *testing.T) {
	n := newNS(t)
	n.labelsAndHelpers()
	l := n.listen(ListenOptions{Expectations: true})
	c := n.dial()
	ctx := context.Background()

	master := plain(ct.ProtoTCP, "10.1.0.1", "10.2.0.1", 40000, 21)
	extra(&master).Helper = "ftp"
	master.Status |= ct.StatusHelper
	write(t, c, Create, []ct.Flow{master}, WriteOptions{})
	receiveN(t, l, 1, 5*time.Second)

	ones := ip("255.255.255.255")
	exp := ct.Expect{
		Master:  master.Orig,
		Tuple:   ct.NewTuple(ct.ProtoTCP, ip("10.1.0.1"), ip("10.2.0.1"), 0, 50000),
		Mask:    ct.NewTuple(ct.ProtoTCP, ones, ones, 0, 0xffff),
		Timeout: 120, Helper: "ftp",
	}
	orphan := exp
	orphan.Master = ct.NewTuple(ct.ProtoTCP, ip("10.1.0.9"), ip("10.2.0.1"), 40000, 21)
	orphan.Tuple.DstPort = 50001
	errs, err := c.WriteExpect(ctx, Create, []ct.Expect{exp, orphan})
	if err != nil || errs[0] != nil || !errors.Is(errs[1], unix.ENOENT) {
		t.Fatalf("WriteExpect(Create) = %v, %v; want nil, ENOENT for the orphan", errs, err)
	}
	ev := receiveN(t, l, 1, 5*time.Second)[0]
	if ev.Type != EventExpectNew || ev.Expect == nil || ev.Expect.Key() != exp.Key() || ev.Expect.Master != exp.Master {
		t.Fatalf("event %v %v, want expect new of %v", ev.Type, ev.Expect, &exp)
	}
	got, err := c.DumpExpect(ctx)
	if err != nil || len(got) != 1 {
		t.Fatalf("DumpExpect = %v, %v; want one", got, err)
	}
	g := got[0]
	// A master with a helper: the kernel takes the timeout of the
	// helper's policy (FTP: 300 s), not the one sent.
	if g.Timeout == 0 || g.Timeout > 300 {
		t.Errorf("timeout %d, want 1..300", g.Timeout)
	}
	g.Timeout = exp.Timeout
	if diff := cmp.Diff(exp, g); diff != "" {
		t.Errorf("dumped expectation (-want +got):\n%s", diff)
	}

	errs, err = c.WriteExpect(ctx, Delete, []ct.Expect{exp, exp})
	if err != nil || errs[0] != nil || !errors.Is(errs[1], unix.ENOENT) {
		t.Fatalf("WriteExpect(Delete) = %v, %v; want nil, ENOENT", errs, err)
	}
	if ev := receiveN(t, l, 1, 5*time.Second)[0]; ev.Type != EventExpectDestroy || ev.Expect.Key() != exp.Key() {
		t.Fatalf("event %v %v, want expect destroy", ev.Type, ev.Expect)
	}
	if got, err := c.DumpExpect(ctx); err != nil || len(got) != 0 {
		t.Fatalf("DumpExpect after delete = %v, %v", got, err)
	}
}
