package nfq

import (
	"errors"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/ctha/ctha/internal/nstest"
)

func open(t *testing.T, ns *nstest.NS, num uint16, opts Options) (*Queue, error) {
	t.Helper()
	var q *Queue
	err := ns.In(func() (err error) { q, err = Open(num, opts); return err })
	return q, err
}

// TestBindNetns: what the kernel says to a bind, checked in a namespace of
// its own: the conntrack glue is used where the kernel has it and refused
// (EOPNOTSUPP, before anything is bound) where it does not; a queue bound
// by another socket is refused with EPERM, named in the error; Close
// unbinds, so the queue can be bound again; no goroutine outlives Close.
func TestBindNetns(t *testing.T) {
	defer goleak.VerifyNone(t)
	ns := nstest.New(t, "nfq")

	q, err := open(t, ns, 3170, Options{Conntrack: true})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	// The fallback happens only on EOPNOTSUPP: any other error fails Open.
	t.Logf("conntrack glue (NFQA_CFG_F_CONNTRACK) in this kernel: %v", q.Glue())
	if !q.Glue() {
		// Check the refusal itself: a bind asking for the glue fails with
		// EOPNOTSUPP and binds nothing.
		err := q.request(config{cmd: cmdBind, mask: flagConntrack, flags: flagConntrack})
		if !errors.Is(err, unix.EOPNOTSUPP) {
			t.Errorf("bind with NFQA_CFG_F_CONNTRACK on a kernel without the glue: %v, want EOPNOTSUPP", err)
		}
	}

	// Our own socket binding again: EBUSY.
	if err := q.request(config{cmd: cmdBind}); !errors.Is(err, unix.EBUSY) {
		t.Errorf("second bind on the same socket: %v, want EBUSY", err)
	}

	_, err = open(t, ns, 3170, Options{})
	if !errors.Is(err, ErrQueueTaken) || !errors.Is(err, unix.EPERM) || !strings.Contains(err.Error(), "3170") {
		t.Errorf("Open of a queue bound by another socket: %v, want ErrQueueTaken (EPERM) naming queue 3170", err)
	} else {
		t.Logf("second Open: %v", err)
	}

	// Another number is free.
	q2, err := open(t, ns, 3171, Options{})
	if err != nil {
		t.Fatalf("Open 3171: %v", err)
	}
	if err := q2.Close(); err != nil {
		t.Errorf("Close 3171: %v", err)
	}

	if err := q.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := q.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, ok := <-q.Packets(); ok {
		t.Errorf("Packets still open after Close")
	}
	if err := q.Err(); err != nil {
		t.Errorf("Err after Close = %v, want nil", err)
	}
	if err := q.Verdict(1, Accept); !errors.Is(err, ErrClosed) {
		t.Errorf("Verdict after Close: %v, want ErrClosed", err)
	}

	q3, err := open(t, ns, 3170, Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	if err := q3.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if s := q.Stats(); s.Malformed != 0 || s.Overruns != 0 {
		t.Errorf("stats %+v", s)
	}
}
