package vrrp

import (
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// countConn counts what it is asked to send and keeps nothing.
type countConn struct {
	src   netip.Addr
	sent  int
	bytes int
}

func (c *countConn) ReadPacket([]byte) (PacketIn, error) { return PacketIn{}, net.ErrClosed }
func (c *countConn) Source() netip.Addr                  { return c.src }
func (c *countConn) Close() error                        { return nil }
func (c *countConn) WritePacket(b []byte, _ netip.Addr) error {
	c.sent++
	c.bytes += len(b)
	return nil
}

// TestTimingPathAllocatesNothing runs a master's advert timer as the
// timing thread does (timer event, drain, status publication, re-arm)
// and checks that it sends every time without allocating: the packets
// are built once, the queue and actions reuse their arrays.
func TestTimingPathAllocatesNothing(t *testing.T) {
	tg := newTestGroup(t, 100, nil)
	box := statusBox{groups: map[string]GroupStatus{}, instances: map[string]InstanceStatus{}}
	tg.publish = func(gs GroupStatus, is []InstanceStatus) { box.set(gs, false, is) }
	tg.at(4 * time.Second) // Master_Down: no master heard
	tg.timer()
	if tg.states() != [2]State{Master, Master} {
		t.Fatalf("states %v, want both MASTER", tg.states())
	}
	conns := []*countConn{{src: tg.conns[0].src}, {src: tg.conns[1].src}}
	for i, c := range conns {
		tg.members[i].conn = c
	}
	tick := func() {
		tg.clock = tg.clock.Add(time.Second) // every advert is due
		tg.mu.Lock()
		tg.dispatchAll(Event{Kind: EvTimer})
		tg.drain()
		tg.arm()
		tg.mu.Unlock()
	}
	tick() // the first send builds the packets
	const runs = 100
	allocs := testing.AllocsPerRun(runs, tick)
	if allocs != 0 {
		t.Errorf("%.1f allocations per advert tick, want 0", allocs)
	}
	for i, c := range conns {
		// AllocsPerRun runs the function once more to warm up.
		if want := runs + 2; c.sent != want {
			t.Errorf("member %d sent %d adverts, want %d", i, c.sent, want)
		}
	}
	// A change of priority rebuilds the packet: what is sent says so.
	tg.members[0].conn = tg.conns[0]
	tg.mu.Lock()
	tg.dispatch(0, Event{Kind: EvPriority, Priority: 90})
	tg.drain()
	tg.mu.Unlock()
	if got := tg.conns[0].lastPriority(); got != 90 {
		t.Errorf("after the priority change the advert says %d, want 90", got)
	}
}

// TestRealtime gives a thread SCHED_FIFO and takes it back, as the
// timing thread does at start and after a reload. Where the kernel
// refuses, the status must say so with its error, and the thread must
// have stayed at normal priority.
func TestRealtime(t *testing.T) {
	log, logs := captureLog()
	rt := newRealtime(10, log)
	type result struct {
		policy int
		status RealtimeStatus
	}
	onThread := func(f func() result) result {
		ch := make(chan result)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			ch <- f()
		}()
		return <-ch
	}
	policy := func() int {
		a, err := unix.SchedGetAttr(0, 0)
		if err != nil {
			t.Errorf("sched_getattr: %v", err)
			return -1
		}
		return int(a.Policy)
	}
	r := onThread(func() result {
		rt.apply(-1)
		return result{policy(), rt.Status()}
	})
	switch r.status.State {
	case "on":
		if r.policy != unix.SCHED_FIFO {
			t.Errorf("status on, but the thread's policy is %d, want SCHED_FIFO", r.policy)
		}
	case "refused":
		if r.policy != unix.SCHED_NORMAL || r.status.Err == "" {
			t.Errorf("refused: policy %d, error %q; want normal and the kernel's error", r.policy, r.status.Err)
		}
		t.Logf("this machine refuses realtime: %s", r.status.Err)
	default:
		t.Errorf("status %+v after asking for priority 10", r.status)
	}

	// Back to normal priority: a reload to 0.
	rt.set(0)
	r = onThread(func() result {
		rt.apply(10)
		return result{policy(), rt.Status()}
	})
	if r.policy != unix.SCHED_NORMAL || r.status.State != "off" {
		t.Errorf("after set(0): policy %d, status %+v; want normal, off", r.policy, r.status)
	}

	// A priority the kernel refuses whoever asks (above 99): refused,
	// with the error, logged once however many threads ask.
	rt.set(120)
	for range 3 {
		r = onThread(func() result {
			rt.apply(-1)
			return result{policy(), rt.Status()}
		})
	}
	if r.status.State != "refused" || r.status.Err == "" || r.policy != unix.SCHED_NORMAL {
		t.Errorf("priority 120: policy %d, status %+v; want refused with the error, normal policy", r.policy, r.status)
	}
	if n := logs.count("realtime priority refused"); n != 1 {
		t.Errorf("the refusal was logged %d times, want once", n)
	}
}

// logBuffer is a log destination safe for the threads of a test.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

func captureLog() (*slog.Logger, *logBuffer) {
	l := &logBuffer{}
	return slog.New(slog.NewTextHandler(l, nil)), l
}

// errConn is a socket always readable whose reads always fail (an error
// that stays on it), counting them.
type errConn struct {
	countConn
	fd    int
	reads int
}

func (c *errConn) pollFD() int { return c.fd }
func (c *errConn) readNow([]byte) (PacketIn, error) {
	c.reads++
	return PacketIn{}, unix.EIO
}

// TestTimingThreadBacksOffReadErrors: a socket whose reads keep failing
// does not make the timing thread spin (at realtime priority it would
// starve the CPU): it is polled again after a pause that doubles up to
// maxReadBackoff.
func TestTimingThreadBacksOffReadErrors(t *testing.T) {
	tg := newTestGroup(t, 100, nil)
	fd, err := unix.Eventfd(1, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC) // readable, never drained
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ec := &errConn{countConn: countConn{src: tg.conns[0].src}, fd: fd}
	tg.members[0].conn = ec
	c, err := newClock(tg.Group, newRealtime(0, slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	tg.Group.clock = c
	c.start()
	time.Sleep(500 * time.Millisecond)
	c.shutdown()
	tg.mu.Lock()
	reads := ec.reads
	tg.mu.Unlock()
	// 1+2+4+...+32 ms, then every 50 ms: about 15 in half a second.
	if reads < 5 || reads > 40 {
		t.Errorf("%d failed reads in 500 ms, want about 15 (a pause doubling to %v between them)", reads, maxReadBackoff)
	}
}
