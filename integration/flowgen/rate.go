package flowgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// RateClient opens short TCP connections at a fixed rate (open loop: a
// slow answer does not slow the next attempt) and times each handshake:
// the new-flow load of a firewall, and what each new flow waits in it.
// Each connection is closed with a reset (SO_LINGER 0) once established,
// so that neither end keeps a TIME_WAIT socket.
type RateClient struct {
	// Addr is the server, "host:port". Required.
	Addr string
	// Sources are the local addresses connections are made from, in turn
	// (more addresses, more tuples: each has its ephemeral ports); none:
	// the kernel's choice.
	Sources []netip.Addr
	// Rate is the new connections per second. Required.
	Rate int
	// Duration is how long connections are opened. Required.
	Duration time.Duration
	// Timeout bounds each handshake (default 3 s): longer is a failure.
	Timeout time.Duration
	// Inflight bounds the handshakes under way (default 4096); an attempt
	// due while it is reached is counted in Skipped, not made.
	Inflight int
}

// RateReport is what a RateClient measured.
type RateReport struct {
	Target     string  `json:"target"`
	Rate       int     `json:"rate"`
	DurationMs float64 `json:"duration_ms"`
	// Attempted connections were dialled; Connected completed their
	// handshake in time; Failed did not (an error or the timeout);
	// Skipped were due while Inflight handshakes were under way.
	Attempted int `json:"attempted"`
	Connected int `json:"connected"`
	Failed    int `json:"failed"`
	Skipped   int `json:"skipped"`
	// AchievedPerSec is Connected over the run's duration.
	AchievedPerSec float64 `json:"achieved_per_sec"`
	// HandshakeUs: order statistics of the connected flows' handshake
	// times (connect(2) called to established), in microseconds.
	HandshakeUs GapStats `json:"handshake_us"`
	// Slow counts handshakes of SlowConnect or longer (a retransmission).
	Slow int `json:"slow"`
	// FirstError is the first failure's error, if any.
	FirstError string `json:"first_error,omitempty"`
}

// Run opens connections for Duration and returns the report.
func (c *RateClient) Run(ctx context.Context) (RateReport, error) {
	if c.Addr == "" || c.Rate <= 0 || c.Duration <= 0 {
		return RateReport{}, errors.New("rate client: Addr, Rate and Duration are required")
	}
	timeout, inflight := c.Timeout, c.Inflight
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	if inflight <= 0 {
		inflight = 4096
	}
	var (
		mu       sync.Mutex
		times    = make([]float64, 0, int(float64(c.Rate)*c.Duration.Seconds())+1)
		failed   int
		firstErr string
		wg       sync.WaitGroup
		sem      = make(chan struct{}, inflight)
		skipped  atomic.Int64
	)
	attempt := func(i int) {
		defer wg.Done()
		defer func() { <-sem }()
		d := net.Dialer{Timeout: timeout}
		if len(c.Sources) > 0 {
			d.LocalAddr = &net.TCPAddr{IP: c.Sources[i%len(c.Sources)].AsSlice()}
		}
		begin := time.Now()
		conn, err := d.DialContext(ctx, "tcp", c.Addr)
		took := time.Since(begin)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed++
			if firstErr == "" {
				firstErr = err.Error()
			}
			return
		}
		times = append(times, float64(took.Microseconds()))
		conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
	}
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	n := 0
	for now := start; now.Sub(start) < c.Duration && ctx.Err() == nil; now = <-tick.C {
		due := int(float64(c.Rate) * now.Sub(start).Seconds())
		for ; n < due; n++ {
			select {
			case sem <- struct{}{}:
				wg.Add(1)
				go attempt(n)
			default:
				skipped.Add(1)
			}
		}
	}
	end := time.Now()
	wg.Wait()
	rep := RateReport{Target: c.Addr, Rate: c.Rate, DurationMs: ms(end.Sub(start)),
		Connected: len(times), Failed: failed, Skipped: int(skipped.Load()), FirstError: firstErr}
	rep.Attempted = rep.Connected + rep.Failed
	rep.AchievedPerSec = float64(rep.Connected) / end.Sub(start).Seconds()
	rep.HandshakeUs = gapStats(times)
	for _, us := range times {
		if us >= float64(SlowConnect.Microseconds()) {
			rep.Slow++
		}
	}
	if ctx.Err() != nil {
		return rep, fmt.Errorf("rate client: %w", context.Cause(ctx))
	}
	return rep, nil
}
