package flowgen

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startServer serves on a loopback port until the test ends.
func startServer(t *testing.T) *EchoServer {
	t.Helper()
	s, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return 5 s after cancel")
		}
	})
	return s
}

// runClient runs c against s, calling atReady (in its own goroutine) when
// the flows are up.
func runClient(t *testing.T, c Client, atReady func()) Report {
	t.Helper()
	ready := make(chan struct{})
	c.Ready = func() { close(ready) }
	done := make(chan struct{})
	defer close(done)
	if atReady != nil {
		go func() {
			select {
			case <-ready:
				atReady()
			case <-done:
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := c.Run(ctx)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	select {
	case <-ready:
	default:
		t.Error("Ready was not called")
	}
	// The report must marshal and keep its documented keys.
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"flows", "survived", "failed", "longest_gap_ms", "gaps_ms", "per_flow"} {
		if _, ok := m[k]; !ok {
			t.Errorf("report JSON lacks %q", k)
		}
	}
	if len(rep.PerFlow) != rep.Flows || rep.Survived+rep.Failed != rep.Flows {
		t.Errorf("inconsistent report: flows %d, per_flow %d, survived %d, failed %d",
			rep.Flows, len(rep.PerFlow), rep.Survived, rep.Failed)
	}
	return rep
}

func TestAllSurvive(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	var progress []Progress
	rep := runClient(t, Client{
		Addr: s.Addr().String(), Flows: 20, Interval: 10 * time.Millisecond, Duration: time.Second,
		Progress: func(p Progress) { progress = append(progress, p) }, ProgressEvery: 200 * time.Millisecond,
	}, nil)
	if rep.Flows != 20 || rep.Survived != 20 || rep.Failed != 0 || rep.Errored != 0 {
		t.Errorf("flows %d survived %d failed %d errored %d, want 20/20/0/0", rep.Flows, rep.Survived, rep.Failed, rep.Errored)
	}
	if rep.ConnectMs.Min <= 0 || rep.ConnectMs.Max >= 500 || rep.SlowConnects != 0 || rep.PerFlow[0].ConnectMs <= 0 {
		t.Errorf("setup times %+v (flow 0: %v ms), %d slow: want every one measured, none slow on loopback",
			rep.ConnectMs, rep.PerFlow[0].ConnectMs, rep.SlowConnects)
	}
	if rep.LongestGapMs <= 0 || rep.LongestGapMs > 500 {
		t.Errorf("longest gap %v ms, want in (0, 500]", rep.LongestGapMs)
	}
	if rep.StopReason != "duration" {
		t.Errorf("stop reason %q, want duration", rep.StopReason)
	}
	if rep.DurationMs < 1000 || rep.DurationMs > 3000 {
		t.Errorf("duration %v ms, want about 1000", rep.DurationMs)
	}
	for _, f := range rep.PerFlow {
		// 100 messages at 10 ms in 1 s; be generous with a loaded machine.
		if !f.Survived || f.Error != "" || f.Echoes < 20 || f.Echoes > f.Sent || f.Local == "" {
			t.Errorf("flow %+v", f)
		}
	}
	if len(progress) < 2 {
		t.Errorf("%d progress reports in 1 s at 200 ms, want at least 2", len(progress))
	} else if p := progress[len(progress)-1]; p.Flows != 20 || p.Alive != 20 || p.EchoesPerSec <= 0 {
		t.Errorf("last progress %+v", p)
	} else if !strings.Contains(p.String(), "alive=20/20") {
		t.Errorf("progress line %q", p)
	}
	if s.Accepted() != 20 {
		t.Errorf("server accepted %d connections, want 20 (no reconnection)", s.Accepted())
	}
}

func TestServerDies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		stop func(*EchoServer)
		want string // in every flow's error, one of |-separated
	}{
		// A write after the reset was taken in fails with EPIPE instead.
		{"reset", (*EchoServer).Kill, "reset|broken pipe"},
		// A close with unread data in the socket sends a reset too.
		{"close", (*EchoServer).Close, "EOF|reset|broken pipe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t)
			killed := make(chan time.Time, 1)
			rep := runClient(t, Client{
				Addr: s.Addr().String(), Flows: 20, Interval: 10 * time.Millisecond, Duration: 1500 * time.Millisecond,
			}, func() {
				time.Sleep(300 * time.Millisecond)
				killed <- time.Now()
				tc.stop(s)
			})
			kill := <-killed
			if rep.Survived != 0 || rep.Failed != 20 || rep.Errored != 20 {
				t.Errorf("survived %d failed %d errored %d, want 0/20/20", rep.Survived, rep.Failed, rep.Errored)
			}
			// From the kill to the end is about 1.2 s.
			if rep.LongestGapMs < 800 {
				t.Errorf("longest gap %v ms, want >= 800", rep.LongestGapMs)
			}
			for _, f := range rep.PerFlow {
				if f.Survived || !containsAny(f.Error, tc.want) || f.ErrorAt.IsZero() {
					t.Errorf("flow %d: survived %v, error %q at %v; want an error with %q", f.ID, f.Survived, f.Error, f.ErrorAt, tc.want)
				}
				if f.ErrorAt.Before(kill) {
					t.Errorf("flow %d failed at %v, before the kill at %v", f.ID, f.ErrorAt, kill)
				}
			}
			if rep.FirstGapStart.IsZero() || rep.FirstGapStart.After(kill.Add(100*time.Millisecond)) {
				t.Errorf("first gap start %v, kill at %v", rep.FirstGapStart, kill)
			}
			if s.Accepted() != 20 {
				t.Errorf("server accepted %d connections, want 20 (no reconnection)", s.Accepted())
			}
		})
	}
}

func TestPausedEchoes(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	const pause = 650 * time.Millisecond
	rep := runClient(t, Client{
		Addr: s.Addr().String(), Flows: 20, Interval: 10 * time.Millisecond, Duration: 1500 * time.Millisecond,
	}, func() {
		time.Sleep(300 * time.Millisecond)
		s.PauseEchoes(pause)
	})
	if rep.Survived != 20 || rep.Errored != 0 {
		t.Errorf("survived %d errored %d, want 20/0: a pause is not a death", rep.Survived, rep.Errored)
	}
	if rep.LongestGapMs < 600 || rep.LongestGapMs > 3000 {
		t.Errorf("longest gap %v ms, want in [600, 3000]", rep.LongestGapMs)
	}
	if rep.FlowsWithGap != 20 || rep.FirstGapStart.IsZero() || !rep.LastGapEnd.After(rep.FirstGapStart) {
		t.Errorf("flows with gap %d, first gap start %v, last gap end %v", rep.FlowsWithGap, rep.FirstGapStart, rep.LastGapEnd)
	}
	for _, f := range rep.PerFlow {
		if f.LongestGapMs < 500 || len(f.Gaps) == 0 {
			t.Errorf("flow %d: longest gap %v ms, gaps %v", f.ID, f.LongestGapMs, f.Gaps)
		}
	}
}

// A flow whose packets vanish (a new master without its state drops them)
// has no error within the run, but no echo either: not survived.
func TestSilentDeath(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	rep := runClient(t, Client{
		Addr: s.Addr().String(), Flows: 5, Interval: 10 * time.Millisecond, Duration: 1500 * time.Millisecond,
		AliveWindow: 500 * time.Millisecond,
	}, func() {
		time.Sleep(200 * time.Millisecond)
		s.PauseEchoes(time.Minute)
	})
	if rep.Survived != 0 || rep.Errored != 0 {
		t.Errorf("survived %d errored %d, want 0/0", rep.Survived, rep.Errored)
	}
	if rep.LongestGapMs < 1000 {
		t.Errorf("longest gap %v ms, want >= 1000", rep.LongestGapMs)
	}
	for _, f := range rep.PerFlow {
		if n := len(f.Gaps); n == 0 || !f.Gaps[n-1].Ongoing {
			t.Errorf("flow %d: gaps %+v, want an ongoing one last", f.ID, f.Gaps)
		}
	}
}

func TestStopByContext(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	ctx, cancel := context.WithCancelCause(context.Background())
	c := Client{Addr: s.Addr().String(), Flows: 3, Interval: 10 * time.Millisecond,
		Ready: func() { time.AfterFunc(200*time.Millisecond, func() { cancel(errors.New("told to")) }) }}
	rep, err := c.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.StopReason != "stopped: told to" || rep.Survived != 3 {
		t.Errorf("stop reason %q, survived %d", rep.StopReason, rep.Survived)
	}
}

func TestSetupErrors(t *testing.T) {
	t.Parallel()
	// A port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	silent := startServer(t)
	silent.PauseEchoes(time.Minute)

	for _, tc := range []struct {
		name string
		c    Client
		want string
	}{
		{"no address", Client{}, "no server address"},
		{"negative flows", Client{Addr: closed, Flows: -1}, "flows"},
		{"tiny interval", Client{Addr: closed, Interval: time.Microsecond}, "interval"},
		{"negative duration", Client{Addr: closed, Duration: -time.Second}, "duration"},
		{"refused", Client{Addr: closed, Flows: 3}, "refused"},
		{"no first echo", Client{Addr: silent.Addr().String(), Flows: 3, ConnectTimeout: 300 * time.Millisecond}, "connect timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := tc.c.Run(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run: %v, want an error with %q", err, tc.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Run took %v", d)
			}
		})
	}
}

func TestMessage(t *testing.T) {
	var b [MsgSize]byte
	m := message{flow: 7, seq: 1 << 40, sent: time.Now().UnixNano()}
	m.encode(b[:])
	got, err := decode(b[:])
	if err != nil || got != m {
		t.Errorf("decode(encode(%+v)) = %+v, %v", m, got, err)
	}
	b[0] = 'X'
	if _, err := decode(b[:]); err == nil {
		t.Error("bad magic accepted")
	}
	if _, err := decode(b[:10]); err == nil {
		t.Error("short message accepted")
	}
}

func TestGapStats(t *testing.T) {
	if got := gapStats(nil); got != (GapStats{}) {
		t.Errorf("gapStats(nil) = %+v", got)
	}
	v := make([]float64, 100)
	for i := range v {
		v[i] = float64(100 - i) // 100 .. 1, unsorted
	}
	want := GapStats{Min: 1, P50: 50, P90: 90, P99: 99, Max: 100}
	if got := gapStats(v); got != want {
		t.Errorf("gapStats = %+v, want %+v", got, want)
	}
	if v[0] != 100 {
		t.Error("gapStats sorted its argument")
	}
	if got := gapStats([]float64{3}); got != (GapStats{3, 3, 3, 3, 3}) {
		t.Errorf("gapStats([3]) = %+v", got)
	}
}

func containsAny(s, alternatives string) bool {
	for _, a := range strings.Split(alternatives, "|") {
		if strings.Contains(s, a) {
			return true
		}
	}
	return false
}

// TestRateClient: on loopback every connection of a short run at a
// modest rate is made, from the sources in turn, and timed.
func TestRateClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	from := map[string]int{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			mu.Lock()
			from[host]++
			mu.Unlock()
			c.Close()
		}
	}()
	rc := RateClient{Addr: ln.Addr().String(), Rate: 1000, Duration: 300 * time.Millisecond,
		Sources: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")}}
	rep, err := rc.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Attempted < 250 || rep.Attempted > 310 || rep.Failed != 0 || rep.Connected != rep.Attempted || rep.Skipped != 0 {
		t.Errorf("report %+v: want about 300 attempts, all connected", rep)
	}
	if rep.HandshakeUs.P50 <= 0 || rep.HandshakeUs.Max < rep.HandshakeUs.P50 || rep.Slow != 0 {
		t.Errorf("handshake times %+v, %d slow", rep.HandshakeUs, rep.Slow)
	}
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if from["127.0.0.1"] < 100 || from["127.0.0.2"] < 100 {
		t.Errorf("connections by source %v: want both sources in turn", from)
	}
}
