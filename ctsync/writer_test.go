package ctsync

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
)

// recordingKernel records the writes it is given, in order; every write
// says on started that it began, and waits until release is closed.
type recordingKernel struct {
	mu      sync.Mutex
	calls   []string
	started chan struct{}
	release chan struct{}
}

func (k *recordingKernel) record(s string) {
	select {
	case k.started <- struct{}{}:
	default:
	}
	<-k.release
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = append(k.calls, s)
}

func (k *recordingKernel) Write(_ context.Context, op kernel.Op, flows []ct.Flow, _ kernel.WriteOptions) (kernel.WriteResult, error) {
	s := op.String()
	for _, f := range flows {
		s += fmt.Sprintf(" %d", f.Orig.SrcPort)
	}
	k.record(s)
	return kernel.WriteResult{OK: len(flows)}, nil
}

func (k *recordingKernel) WriteExpect(_ context.Context, op kernel.Op, exps []ct.Expect) ([]error, error) {
	s := "expect " + op.String()
	for _, x := range exps {
		s += fmt.Sprintf(" %d", x.Master.SrcPort)
	}
	k.record(s)
	return make([]error, len(exps)), nil
}

func testFlow(port uint16) ct.Flow {
	o := ct.NewTuple(ct.ProtoTCP, netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.2.0.1"), port, 80)
	return ct.Flow{Orig: o, Reply: o.Reverse()}
}

// testWriter starts a writer over a recordingKernel whose writes wait
// until release is called (at the latest when the test ends, before the
// writer is stopped and waited for) and refreshes wait laneWait.
func testWriter(t *testing.T, laneWait time.Duration) (e *Engine, k *recordingKernel, ctx context.Context, release func()) {
	k = &recordingKernel{started: make(chan struct{}, 1), release: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	e = &Engine{cfg: Config{Cache: Direct}, log: slog.New(slog.DiscardHandler), writtenWake: make(chan struct{}, 1),
		wr: writer{queue: make(chan writeJob, writeQueue), stop: ctx.Done(), kern: k, laneWait: laneWait}}
	done := make(chan struct{})
	go func() { defer close(done); e.runWriter(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	release = sync.OnceFunc(func() { close(k.release) })
	t.Cleanup(release) // first: a failed test leaves no write waiting
	return e, k, ctx, release
}

// TestWriterOrder: the writer applies jobs in the order queued, merging
// the flows of consecutive jobs into one write per run of the same
// operation; a job's expectations follow its flows (and end the merge);
// a barrier is released once everything before it is written.
func TestWriterOrder(t *testing.T) {
	e, k, ctx, release := testWriter(t, refreshMaxWait)

	c := func(p uint16) flowOp { return flowOp{kernel.Create, testFlow(p)} }
	d := func(p uint16) flowOp { return flowOp{kernel.Delete, testFlow(p)} }
	master := ct.Expect{Master: testFlow(3).Orig}
	// The first job blocks the writer (in its write) while the others
	// queue up behind it.
	e.queueWrite(writeJob{flows: []flowOp{c(1)}})
	select {
	case <-k.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the writer did not write")
	}
	e.queueWrite(writeJob{flows: []flowOp{c(2), d(1)}})
	e.queueWrite(writeJob{flows: []flowOp{c(1), c(3)}, exps: expectBatch{creates: []ct.Expect{master}}})
	e.queueWrite(writeJob{flows: []flowOp{c(4)}})
	e.queueWrite(writeJob{flows: []flowOp{c(5)}})
	release()
	settled := make(chan error, 1)
	go func() { settled <- e.settleWrites(ctx) }()
	select {
	case err := <-settled:
		if err != nil {
			t.Fatalf("settleWrites: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("settleWrites did not return")
	}
	want := []string{
		"create 1",
		"create 2", "delete 1", "create 1 3", "expect create 3",
		"create 4 5",
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if diff := cmp.Diff(want, k.calls); diff != "" {
		t.Errorf("kernel writes (-want +got):\n%s", diff)
	}
	if n := e.wr.backlog.Load(); n != 0 {
		t.Errorf("backlog = %d after the barrier, want 0", n)
	}
}

// closingKernel is a recordingKernel that can be closed.
type closingKernel struct {
	*recordingKernel
	closed bool
}

func (k *closingKernel) Close() error { k.closed = true; return nil }

// TestWriterParallelBulk: on a node that is not master, a large run of
// creates (a bulk copy arriving) is written with the events paused, by
// two sockets, each flow on one of them; the deletes after it wait for
// both; a resync is owed after. A stream of changes, however large, and
// a master are written serially with the events on.
func TestWriterParallelBulk(t *testing.T) {
	for _, tc := range []struct {
		name         string
		master, bulk bool
	}{{"backup, bulk copy", false, true}, {"backup, stream of changes", false, false}, {"master", true, true}} {
		master := tc.master
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			close(release)
			main := &recordingKernel{started: make(chan struct{}, 1), release: release}
			second := &closingKernel{recordingKernel: &recordingKernel{started: make(chan struct{}, 1), release: release}}
			var pauses, resumes int
			ctx, cancel := context.WithCancel(context.Background())
			e := &Engine{cfg: Config{Cache: Direct}, log: slog.New(slog.DiscardHandler),
				wr: writer{queue: make(chan writeJob, writeQueue), stop: ctx.Done(), kern: main,
					dial: func() (kernelConn, error) { return second, nil }}}
			e.evPause.pause = func() error { pauses++; return nil }
			e.evPause.join = func() error { resumes++; return nil }
			e.wr.mayPause.Store(!master)
			done := make(chan struct{})
			go func() { defer close(done); e.runWriter(ctx) }()

			var ops []flowOp
			for p := range uint16(2000) {
				ops = append(ops, flowOp{kernel.Create, testFlow(p + 1)})
			}
			ops = append(ops, flowOp{kernel.Delete, testFlow(1)})
			e.queueWrite(writeJob{flows: ops, bulk: tc.bulk})
			if err := e.settleWrites(ctx); err != nil {
				t.Fatal(err)
			}
			cancel()
			<-done

			count := func(k *recordingKernel) (creates int, calls []string) {
				k.mu.Lock()
				defer k.mu.Unlock()
				for _, c := range k.calls {
					creates += strings.Count(c, " ")
					if strings.HasPrefix(c, "delete") {
						creates -= strings.Count(c, " ")
					}
				}
				return creates, k.calls
			}
			n1, calls1 := count(main)
			n2, _ := count(second.recordingKernel)
			if n1+n2 != 2000 {
				t.Errorf("%d + %d flows created, want 2000", n1, n2)
			}
			if last := calls1[len(calls1)-1]; last != "delete 1" {
				t.Errorf("last write on the main socket %q, want the delete after every create", last)
			}
			if master {
				if owed := e.resyncOwed(); n2 != 0 || pauses != 0 || owed {
					t.Errorf("a master wrote %d flows on the second socket, paused the events %d times, resync owed %v; want none", n2, pauses, owed)
				}
				return
			}
			if tc.bulk && (n1 == 0 || n2 == 0) {
				t.Errorf("creates split %d / %d, want both sockets used for a bulk copy", n1, n2)
			}
			if !tc.bulk && n2 != 0 {
				t.Errorf("%d creates of a stream of changes on the second socket: both CPUs taken outside a bulk copy", n2)
			}
			if !tc.bulk {
				if owed := e.resyncOwed(); pauses != 0 || owed {
					t.Errorf("a stream of changes paused the events %d times, resync owed %v: want none (each pause costs a dump of the table)", pauses, owed)
				}
				return
			}
			if pauses != 1 || resumes != 1 || !e.resyncOwed() {
				t.Errorf("events paused %d times, resumed %d, resync owed: want one pause, one resume and a resync", pauses, resumes)
			}
			if tc.bulk && !second.closed {
				t.Error("the second socket was not closed when the writer stopped")
			}
		})
	}
}

// TestWriteInline: a small job with write acks is written on the loop,
// before writeInline returns, only while the writer is idle; behind a
// job the writer has not finished it is queued, and written after it.
func TestWriteInline(t *testing.T) {
	e, k, ctx, release := testWriter(t, refreshMaxWait)
	c := func(p uint16) flowOp { return flowOp{kernel.Create, testFlow(p)} }
	acked := func(ops ...flowOp) writeJob { return writeJob{flows: ops, acks: []uint32{7}, ackPeer: &peer{}} }

	// Busy: the writer is in its write of job 1.
	e.queueWrite(writeJob{flows: []flowOp{c(1)}})
	<-k.started
	inline := make(chan bool, 1)
	go func() { inline <- e.writeInline(ctx, acked(c(2))) }()
	select {
	case ok := <-inline:
		if ok {
			t.Fatal("written on the loop while the writer was writing: ahead of what was queued before it")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("writeInline waits for the kernel while the writer is writing: it writes ahead of what was queued before it")
	}
	e.queueWrite(acked(c(2)))
	release()
	if err := e.settleWrites(ctx); err != nil {
		t.Fatal(err)
	}
	// Idle: written at once.
	big := acked()
	for p := range uint16(inlineMax + 1) {
		big.flows = append(big.flows, c(100+p))
	}
	for _, tc := range []struct {
		name string
		j    writeJob
		want bool
	}{
		{"no write ack", writeJob{flows: []flowOp{c(3)}}, false},
		{"too large", big, false},
		{"with expectations", writeJob{flows: []flowOp{c(3)}, acks: []uint32{1}, ackPeer: &peer{}, exps: expectBatch{creates: []ct.Expect{{Master: testFlow(3).Orig}}}}, false},
		{"small, acked, writer idle", acked(c(3), c(4)), true},
		{"a datagram waits for the loop", acked(c(5)), false},
	} {
		if strings.HasPrefix(tc.name, "a datagram waits") {
			e.inbox = make(chan datagram, 1)
			e.inbox <- datagram{}
		}
		if got := e.writeInline(ctx, tc.j); got != tc.want {
			t.Errorf("%s: written inline %v, want %v", tc.name, got, tc.want)
		}
		e.writtenMu.Lock()
		n := len(e.written)
		e.writtenMu.Unlock()
		if tc.want && n != 0 {
			t.Errorf("%s: %d write acks left unanswered after an inline write", tc.name, n)
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if diff := cmp.Diff([]string{"create 1", "create 2", "create 3 4"}, k.calls); diff != "" {
		t.Errorf("kernel writes (-want +got):\n%s", diff)
	}
	if n := e.wr.jobs.Load(); n != 0 {
		t.Errorf("%d jobs outstanding after the barrier, want 0", n)
	}
}

// TestWriterRefreshLane: refresh writes wait while other jobs are queued
// (a write ack behind them waits for no refresh), a refresh of a flow a
// later job writes or deletes is dropped (never an older state over a
// newer one), and a barrier waits for the refreshes queued before it.
func TestWriterRefreshLane(t *testing.T) {
	e, k, ctx, release := testWriter(t, time.Hour)
	c := func(p uint16) flowOp { return flowOp{kernel.Create, testFlow(p)} }
	u := func(p uint16) flowOp { return flowOp{kernel.Update, testFlow(p)} }

	d := func(p uint16) flowOp { return flowOp{kernel.Delete, testFlow(p)} }

	e.queueWrite(writeJob{flows: []flowOp{c(1)}})
	<-k.started // the writer is busy: the rest queues up
	e.queueWrite(writeJob{flows: []flowOp{u(10), u(11), u(12), u(14)}, refresh: true})
	e.queueWrite(writeJob{flows: []flowOp{c(11)}, acks: []uint32{1}, ackPeer: &peer{}})
	e.queueWrite(writeJob{flows: []flowOp{u(13)}, refresh: true})
	e.queueWrite(writeJob{flows: []flowOp{u(12)}, refresh: true}) // a newer refresh of 12
	e.queueWrite(writeJob{flows: []flowOp{c(2), d(14)}})
	barrier := e.writeBarrier() // queued while the writer is busy: behind every refresh
	release()
	if err := e.awaitWrites(ctx, barrier); err != nil {
		t.Fatal(err)
	}
	k.mu.Lock()
	calls := slices.Clone(k.calls)
	k.mu.Unlock()
	want := []string{"create 1", "create 11 2", "delete 14", "update 10 13 12"}
	if diff := cmp.Diff(want, calls); diff != "" {
		t.Errorf("kernel writes (-want +got):\n%s", diff)
	}
	if b, j := e.wr.backlog.Load(), e.wr.jobs.Load(); b != 0 || j != 0 {
		t.Errorf("after the barrier: backlog %d, jobs %d; want 0, 0", b, j)
	}
	if !e.writeInline(ctx, writeJob{flows: []flowOp{c(3)}, acks: []uint32{2}, ackPeer: &peer{}}) {
		t.Error("the writer is not idle once its refreshes are written")
	}
}

// TestWriterRefreshOverdue: refreshes that have waited refreshMaxWait
// are written between groups even while other jobs keep coming; before
// that, they wait for the queue to empty.
func TestWriterRefreshOverdue(t *testing.T) {
	for _, tc := range []struct {
		name string
		wait time.Duration
		want []string
	}{
		{"fresh", time.Hour, []string{"create 1", "create 11", "expect create 11", "create 12", "update 10"}},
		{"overdue", 0, []string{"create 1", "create 11", "expect create 11", "update 10", "create 12"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, k, ctx, release := testWriter(t, tc.wait)
			c := func(p uint16) flowOp { return flowOp{kernel.Create, testFlow(p)} }

			e.queueWrite(writeJob{flows: []flowOp{c(1)}})
			<-k.started
			e.queueWrite(writeJob{flows: []flowOp{{kernel.Update, testFlow(10)}}, refresh: true})
			// Two groups: expectations end the first.
			e.queueWrite(writeJob{flows: []flowOp{c(11)}, exps: expectBatch{creates: []ct.Expect{{Master: testFlow(11).Orig}}}})
			e.queueWrite(writeJob{flows: []flowOp{c(12)}})
			barrier := e.writeBarrier()
			release()
			if err := e.awaitWrites(ctx, barrier); err != nil {
				t.Fatal(err)
			}
			k.mu.Lock()
			defer k.mu.Unlock()
			if diff := cmp.Diff(tc.want, k.calls); diff != "" {
				t.Errorf("kernel writes (-want +got):\n%s", diff)
			}
		})
	}
}
