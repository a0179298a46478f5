package kernel

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
)

// receiveN reads until it has n events, failing after timeout.
func receiveN(t *testing.T, l *Listener, n int, timeout time.Duration) []Event {
	t.Helper()
	if err := l.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		t.Fatal(err)
	}
	defer l.SetReadDeadline(time.Time{})
	var evs []Event
	for len(evs) < n {
		var err error
		if evs, err = l.Receive(evs); err != nil {
			t.Fatalf("Receive after %d of %d events: %v", len(evs), n, err)
		}
	}
	return evs
}

// expectNone checks that no event arrives within wait.
func expectNone(t *testing.T, l *Listener, wait time.Duration) {
	t.Helper()
	if err := l.SetReadDeadline(time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	defer l.SetReadDeadline(time.Time{})
	evs, err := l.Receive(nil)
	if len(evs) > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Receive = %d events (%v), %v; want none", len(evs), evs, err)
	}
}

func TestEventsFromOthers(t *testing.T) {
	n := newNS(t)
	l := n.listen(ListenOptions{})
	tuple := []string{"-p", "tcp", "-s", "10.1.0.1", "-d", "10.2.0.1", "--sport", "1000", "--dport", "80"}
	want := plain(ct.ProtoTCP, "10.1.0.1", "10.2.0.1", 1000, 80)

	n.exec(append(append([]string{"conntrack", "-I"}, tuple...), "--state", "ESTABLISHED", "-t", "100", "-u", "SEEN_REPLY,ASSURED", "-m", "5")...)
	ev := receiveN(t, l, 1, 5*time.Second)[0]
	if ev.Type != EventNew || ev.Flow.Key() != want.Key() || ev.Flow.Reply != want.Reply || ev.Flow.Mark != 5 ||
		ev.Flow.TCP.State != ct.TCPEstablished || ev.Flow.Status&stEst != stEst {
		t.Errorf("after conntrack -I: %v %v", ev.Type, &ev.Flow)
	}

	n.exec(append(append([]string{"conntrack", "-U"}, tuple...), "-m", "6")...)
	ev = receiveN(t, l, 1, 5*time.Second)[0]
	if ev.Type != EventUpdate || ev.Flow.Key() != want.Key() || ev.Flow.Mark != 6 {
		t.Errorf("after conntrack -U: %v %v", ev.Type, &ev.Flow)
	}

	n.exec(append([]string{"conntrack", "-D"}, tuple...)...)
	ev = receiveN(t, l, 1, 5*time.Second)[0]
	if ev.Type != EventDestroy || ev.Flow.Key() != want.Key() || ev.Flow.Reply != want.Reply {
		t.Errorf("after conntrack -D: %v %v", ev.Type, &ev.Flow)
	}
}

func TestOwnWritesFiltered(t *testing.T) {
	n := newNS(t)
	c := n.dial()
	all := n.listen(ListenOptions{})
	filtered := n.listen(ListenOptions{IgnorePortID: c.PortID()})
	other := n.listen(ListenOptions{IgnorePortIDs: []uint32{c.PortID() + 1000}})

	f := snat(plain(ct.ProtoUDP, "10.1.0.1", "10.2.0.1", 1000, 53), "192.0.2.1", 2000)
	start := time.Now()
	write(t, c, Create, []ct.Flow{f}, WriteOptions{})
	first := receiveN(t, all, 1, 5*time.Second)[0]
	t.Logf("event delivery: %v from Write to Receive", time.Since(start))
	write(t, c, Update, []ct.Flow{with(f, func(f *ct.Flow) { f.Mark = 1 })}, WriteOptions{})
	write(t, c, Delete, []ct.Flow{f}, WriteOptions{})

	// Without the filter our writes arrive, with our flow as written...
	evs := append([]Event{first}, receiveN(t, all, 2, 5*time.Second)...)
	for i, typ := range []EventType{EventNew, EventUpdate, EventDestroy} {
		if evs[i].Type != typ || evs[i].Flow.Key() != f.Key() || evs[i].Flow.Reply != f.Reply {
			t.Errorf("event %d = %v %v, want %v of %v", i, evs[i].Type, &evs[i].Flow, typ, &f)
		}
	}
	evs = receiveN(t, other, 3, 5*time.Second)
	if len(evs) != 3 {
		t.Errorf("listener ignoring another port id got %d events, want 3", len(evs))
	}
	// ...with it they do not: the first event is the next one from the CLI.
	n.exec("conntrack", "-I", "-p", "udp", "-s", "10.7.0.1", "-d", "10.2.0.1", "--sport", "7", "--dport", "7", "-t", "50")
	ev := receiveN(t, filtered, 1, 5*time.Second)[0]
	if ev.Type != EventNew || ev.Flow.Orig.SrcAddr() != netip.MustParseAddr("10.7.0.1") {
		t.Errorf("filtered listener got %v %v, want the CLI's flow", ev.Type, &ev.Flow)
	}
	expectNone(t, filtered, 100*time.Millisecond)
}

func TestOverrun(t *testing.T) {
	n := newNS(t)
	c := n.dial()
	tiny := n.listen(ListenOptions{ReadBuffer: 4096})
	big := n.listen(ListenOptions{}) // DefaultReadBuffer
	if size, err := big.ReadBuffer(); err != nil || size < DefaultReadBuffer {
		t.Errorf("ReadBuffer() = %d, %v; want at least %d", size, err, DefaultReadBuffer)
	}

	const total = 20000
	flows := manyFlows(total)
	start := time.Now()
	write(t, c, Create, flows, WriteOptions{})

	// The big buffer holds every event of the burst.
	evs := receiveN(t, big, total, 20*time.Second)
	took := time.Since(start)
	t.Logf("events: %d NEW events written and received in %v (%.0f/s)", len(evs), took, float64(len(evs))/took.Seconds())
	for _, ev := range evs {
		if ev.Type != EventNew {
			t.Fatalf("unexpected %v event %v", ev.Type, &ev.Flow)
		}
	}

	// The tiny one reports the overrun...
	if err := tiny.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var got int
	for {
		evs, err := tiny.Receive(nil)
		got += len(evs)
		if errors.Is(err, ErrOverrun) {
			break
		}
		if err != nil {
			t.Fatalf("Receive after %d events: %v, want ErrOverrun", got, err)
		}
	}
	t.Logf("overrun reported after %d of %d events", got, total)
	// ...and keeps working: drain what it holds, then a new event arrives.
	for {
		_ = tiny.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		evs, err := tiny.Receive(nil)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil && !errors.Is(err, ErrOverrun) {
			t.Fatalf("Receive while draining: %v", err)
		}
		got += len(evs)
	}
	n.exec("conntrack", "-I", "-p", "udp", "-s", "10.7.0.1", "-d", "10.2.0.1", "--sport", "7", "--dport", "7", "-t", "50")
	ev := receiveN(t, tiny, 1, 5*time.Second)[0]
	if ev.Flow.Orig.SrcAddr() != netip.MustParseAddr("10.7.0.1") {
		t.Errorf("after the overrun got %v %v, want the CLI's flow", ev.Type, &ev.Flow)
	}
}

func TestCloseUnblocksReceive(t *testing.T) {
	n := newNS(t)
	l := n.listen(ListenOptions{})
	done := make(chan error)
	go func() {
		_, err := l.Receive(nil)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Receive after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Receive still blocked after Close")
	}
}

func TestSysctls(t *testing.T) {
	n := newNS(t)
	n.exec("sysctl", "-qw", "net.netfilter.nf_conntrack_events=2")
	if err := n.in(EnsureEvents); err != nil {
		t.Fatalf("EnsureEvents: %v", err)
	}
	if v := n.exec("sysctl", "-n", "net.netfilter.nf_conntrack_events"); v != "1\n" {
		t.Errorf("nf_conntrack_events = %q after EnsureEvents, want 1", v)
	}
	if err := n.in(EnsureEvents); err != nil {
		t.Fatalf("EnsureEvents when already 1: %v", err)
	}

	c := n.dial()
	write(t, c, Create, manyFlows(3), WriteOptions{})
	var count, max int
	if err := n.in(func() (err error) { count, max, err = TableCount(); return err }); err != nil {
		t.Fatalf("TableCount: %v", err)
	}
	if count != 3 || max < 1024 {
		t.Errorf("TableCount() = %d, %d; want 3 and a max of at least 1024", count, max)
	}
}

// manyFlows returns n distinct established TCP flows.
func manyFlows(n int) []ct.Flow {
	flows := make([]ct.Flow, n)
	for i := range flows {
		src := netip.AddrFrom4([4]byte{10, byte(1 + i>>16), byte(i >> 8), byte(i)})
		o := ct.NewTuple(ct.ProtoTCP, src, netip.MustParseAddr("10.200.0.1"), uint16(1024+i%50000), 80)
		flows[i] = ct.Flow{Orig: o, Reply: o.Reverse(), Status: stEst, Timeout: 600,
			TCP: ct.TCPInfo{State: ct.TCPEstablished, WScaleOrig: 7, WScaleRepl: 7, FlagsOrig: tcpWS, FlagsRepl: tcpWS}}
	}
	return flows
}

func TestScale(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	n := newNS(t)
	c := n.dial()
	const total = 100000
	flows := manyFlows(total)

	start := time.Now()
	write(t, c, Create, flows, WriteOptions{BatchSize: 256, Liberal: true})
	took := time.Since(start)
	t.Logf("create: %d flows in %v (%.0f flows/s, batches of 256)", total, took, total/took.Seconds())

	start = time.Now()
	var dumped int
	if err := c.Dump(context.Background(), func(ct.Flow) bool { dumped++; return true }); err != nil {
		t.Fatalf("Dump: %v", err)
	}
	t.Logf("dump: %d flows in %v", dumped, time.Since(start))
	if dumped != total {
		t.Fatalf("dumped %d flows, want %d", dumped, total)
	}

	// Replacing existing flows: Create (EEXIST, then delete + create)
	// against Update.
	part := flows[:20000]
	start = time.Now()
	res := write(t, c, Create, part, WriteOptions{})
	took = time.Since(start)
	t.Logf("replace via Create: %d flows in %v (%.0f flows/s), %d replaced", len(part), took, float64(len(part))/took.Seconds(), res.Replaced)
	if res.Replaced != len(part) {
		t.Errorf("Replaced = %d, want %d", res.Replaced, len(part))
	}
	start = time.Now()
	write(t, c, Update, part, WriteOptions{})
	took = time.Since(start)
	t.Logf("update: %d flows in %v (%.0f flows/s)", len(part), took, float64(len(part))/took.Seconds())

	// An early stop leaves the socket clean for the next dump.
	dumped = 0
	if err := c.Dump(context.Background(), func(ct.Flow) bool { dumped++; return dumped < 10 }); err != nil || dumped != 10 {
		t.Fatalf("Dump stopped early: %d flows, %v", dumped, err)
	}

	start = time.Now()
	write(t, c, Delete, flows, WriteOptions{})
	took = time.Since(start)
	t.Logf("delete: %d flows in %v (%.0f flows/s)", total, took, total/took.Seconds())
	if got := n.count(); got != 0 {
		t.Errorf("%d flows left after deleting all", got)
	}
}
