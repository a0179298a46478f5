package flowgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of the Client fields left zero.
const (
	DefaultInterval       = 20 * time.Millisecond
	DefaultConnectTimeout = 10 * time.Second
	DefaultAliveWindow    = 2 * time.Second
	DefaultProgressEvery  = time.Second
	minGapThreshold       = 150 * time.Millisecond
	// SlowConnect: a flow's setup (dial to first echo) this long or
	// longer lost a packet of its handshake (TCP's first retransmission
	// comes after 1 s) or waited for a state; counted in Report.SlowConnects.
	SlowConnect     = 500 * time.Millisecond
	maxGapsPerFlow  = 64
	dialConcurrency = 64
)

// Client opens Flows TCP connections to Addr and measures, per flow,
// whether it survives and the longest gap between two echoes. Fill in the
// fields and call Run; zero fields take the documented defaults.
type Client struct {
	// Addr is the server, "host:port". Required.
	Addr string
	// Flows is the number of TCP connections (default 1).
	Flows int
	// Interval is the time between two messages on one flow (default
	// 20 ms).
	Interval time.Duration
	// Duration is how long traffic runs once every flow is up; 0 runs
	// until ctx is done.
	Duration time.Duration
	// ConnectTimeout bounds the whole setup: every connection dialled and
	// its first echo (message 0) received (default 10 s).
	ConnectTimeout time.Duration
	// UserTimeout is set as TCP_USER_TIMEOUT on every connection, before
	// connecting. 0 means DefaultUserTimeout; negative leaves the kernel's
	// default (about 15 min of retransmissions).
	UserTimeout time.Duration
	// AliveWindow: a flow survived only if its last echo came at most this
	// long before the end (default 2 s).
	AliveWindow time.Duration
	// GapThreshold: inter-echo gaps longer than this are listed per flow
	// and count for FirstGapStart, LastGapEnd and FlowsWithGap (default
	// max(5*Interval, 150 ms): TCP's first retransmission comes after at
	// least 200 ms).
	GapThreshold time.Duration

	// Ready, if set, is called once, when every flow is up and has
	// exchanged its first echo, just before traffic starts.
	Ready func()
	// Progress, if set, is called every ProgressEvery (default 1 s) while
	// traffic runs, from a goroutine of Run.
	Progress      func(Progress)
	ProgressEvery time.Duration
}

// Progress is a live snapshot of a run.
type Progress struct {
	Elapsed time.Duration // since traffic started
	Flows   int
	// Alive counts flows without an error and with an echo within
	// AliveWindow (what would count as survived if the run ended now).
	Alive int
	// Stalled counts error-free flows whose last echo is older than
	// GapThreshold.
	Stalled int
	// EchoesPerSec is the rate of echoes since the previous snapshot.
	EchoesPerSec float64
	// CurrentGap is the longest time since the last echo among error-free
	// flows: an outage in progress.
	CurrentGap time.Duration
	// LongestGap is the longest completed gap so far, over all flows.
	LongestGap time.Duration
}

// String formats p on one compact line.
func (p Progress) String() string {
	return fmt.Sprintf("t=%.1fs alive=%d/%d stalled=%d echo/s=%.0f cur_gap=%.0fms longest_gap=%.0fms",
		p.Elapsed.Seconds(), p.Alive, p.Flows, p.Stalled, p.EchoesPerSec, ms(p.CurrentGap), ms(p.LongestGap))
}

// flow is one connection and what was measured on it.
type flow struct {
	id    int
	conn  *net.TCPConn
	local string
	setup time.Duration // dial to the first echo

	mu           sync.Mutex
	sent         uint64
	echoes       uint64
	seq          uint64    // last sequence number echoed
	last         time.Time // last echo, or the start of traffic
	longest      time.Duration
	longestStart time.Time
	gaps         []Gap
	gapsDropped  int
	maxRTT       time.Duration
	err          error
	errAt        time.Time
}

// run is the state shared by a Client's goroutines during Run.
type run struct {
	c         *Client
	threshold time.Duration
	stopping  atomic.Bool
	done      chan struct{}
	wg        sync.WaitGroup
}

func (c *Client) withDefaults() (Client, error) {
	cc := *c
	if cc.Addr == "" {
		return cc, errors.New("no server address")
	}
	if cc.Flows == 0 {
		cc.Flows = 1
	}
	if cc.Flows < 0 {
		return cc, fmt.Errorf("flows %d: must be positive", cc.Flows)
	}
	if cc.Interval == 0 {
		cc.Interval = DefaultInterval
	}
	if cc.Interval < time.Millisecond {
		return cc, fmt.Errorf("interval %v: must be at least 1ms", cc.Interval)
	}
	if cc.Duration < 0 {
		return cc, fmt.Errorf("duration %v: must not be negative", cc.Duration)
	}
	if cc.ConnectTimeout <= 0 {
		cc.ConnectTimeout = DefaultConnectTimeout
	}
	if cc.UserTimeout == 0 {
		cc.UserTimeout = DefaultUserTimeout
	}
	if cc.AliveWindow <= 0 {
		cc.AliveWindow = DefaultAliveWindow
	}
	if cc.GapThreshold <= 0 {
		cc.GapThreshold = max(5*cc.Interval, minGapThreshold)
	}
	if cc.ProgressEvery <= 0 {
		cc.ProgressEvery = DefaultProgressEvery
	}
	return cc, nil
}

// Run connects every flow, runs traffic for Duration (or until ctx is
// done) and returns the report. It returns an error, and no report, only
// if the configuration is wrong or not every flow could be set up (all
// connections are then closed). A flow that dies later is not an error: it
// is reported as not survived. Connections are never re-established.
func (c *Client) Run(ctx context.Context) (Report, error) {
	cfg, err := c.withDefaults()
	if err != nil {
		return Report{}, err
	}
	r := &run{c: &cfg, threshold: cfg.GapThreshold, done: make(chan struct{})}

	flows, err := r.connectAll(ctx)
	if err != nil {
		return Report{}, err
	}
	if cfg.Ready != nil {
		cfg.Ready()
	}

	start := time.Now()
	for _, f := range flows {
		f.last = start
		r.wg.Add(2)
		go r.reader(f)
		go r.writer(f)
	}
	if cfg.Progress != nil {
		r.wg.Add(1)
		go r.progress(flows, start)
	}

	var timeout <-chan time.Time
	if cfg.Duration > 0 {
		t := time.NewTimer(cfg.Duration)
		defer t.Stop()
		timeout = t.C
	}
	reason := "duration"
	select {
	case <-timeout:
	case <-ctx.Done():
		reason = "stopped: " + context.Cause(ctx).Error()
	}

	// Stop: nothing recorded after end counts, errors caused by our own
	// closing are ignored.
	r.stopping.Store(true)
	end := time.Now()
	close(r.done)
	for _, f := range flows {
		f.conn.Close()
	}
	r.wg.Wait()
	return r.report(flows, start, end, reason), nil
}

// connectAll dials every flow and exchanges message 0 on each.
func (r *run) connectAll(ctx context.Context) ([]*flow, error) {
	ctx, cancel := context.WithTimeout(ctx, r.c.ConnectTimeout)
	defer cancel()
	d := net.Dialer{KeepAliveConfig: keepAlive}
	if r.c.UserTimeout > 0 {
		d.Control = dialControl(r.c.UserTimeout)
	}
	flows := make([]*flow, r.c.Flows)
	errs := make([]error, r.c.Flows)
	sem := make(chan struct{}, dialConcurrency)
	var wg sync.WaitGroup
	for i := range flows {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			flows[i], errs[i] = r.connect(ctx, &d, i)
			if errs[i] != nil {
				cancel() // no point going on
			}
		}()
	}
	wg.Wait()
	var first error
	up := 0
	for i, err := range errs {
		if err == nil {
			up++
		} else if first == nil || (errors.Is(first, context.Canceled) && !errors.Is(err, context.Canceled)) {
			first = fmt.Errorf("flow %d: %w", i, err)
		}
	}
	if first != nil {
		for _, f := range flows {
			if f != nil {
				f.conn.Close()
			}
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			first = fmt.Errorf("%w (connect timeout %v)", first, r.c.ConnectTimeout)
		}
		return nil, fmt.Errorf("setting up flows to %s: %d of %d up: %w", r.c.Addr, up, r.c.Flows, first)
	}
	return flows, nil
}

func (r *run) connect(ctx context.Context, d *net.Dialer, id int) (*flow, error) {
	begin := time.Now()
	c, err := d.DialContext(ctx, "tcp", r.c.Addr)
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("not a TCP connection: %T", c)
	}
	tc.SetNoDelay(true)
	f := &flow{id: id, conn: tc, local: tc.LocalAddr().String()}
	// Message 0 proves the path works both ways (and, through a stateful
	// firewall, that the connection is established in its table).
	stop := context.AfterFunc(ctx, func() { tc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var buf [MsgSize]byte
	message{flow: uint32(id), seq: 0, sent: time.Now().UnixNano()}.encode(buf[:])
	if _, err := tc.Write(buf[:]); err != nil {
		tc.Close()
		return nil, err
	}
	if _, err := io.ReadFull(tc, buf[:]); err != nil {
		tc.Close()
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, fmt.Errorf("first echo: %w", err)
	}
	if m, err := decode(buf[:]); err != nil || m.flow != uint32(id) || m.seq != 0 {
		tc.Close()
		if err == nil {
			err = fmt.Errorf("first echo: got flow %d seq %d, want flow %d seq 0", m.flow, m.seq, id)
		}
		return nil, err
	}
	if !stop() { // the deadline may have been set
		tc.Close()
		return nil, context.Cause(ctx)
	}
	f.setup = time.Since(begin)
	return f, nil
}

// fail records the first error of f and closes its connection, unless the
// run is stopping (then the error is ours).
func (r *run) fail(f *flow, err error) {
	if r.stopping.Load() {
		return
	}
	now := time.Now()
	f.mu.Lock()
	if f.err == nil {
		f.err, f.errAt = err, now
	}
	f.mu.Unlock()
	f.conn.Close()
}

func (r *run) writer(f *flow) {
	defer r.wg.Done()
	t := time.NewTicker(r.c.Interval)
	defer t.Stop()
	var buf [MsgSize]byte
	for seq := uint64(1); ; seq++ {
		message{flow: uint32(f.id), seq: seq, sent: time.Now().UnixNano()}.encode(buf[:])
		if _, err := f.conn.Write(buf[:]); err != nil {
			r.fail(f, fmt.Errorf("write: %w", err))
			return
		}
		f.mu.Lock()
		f.sent++
		f.mu.Unlock()
		select {
		case <-t.C:
		case <-r.done:
			return
		}
	}
}

func (r *run) reader(f *flow) {
	defer r.wg.Done()
	br := bufio.NewReaderSize(f.conn, 64*MsgSize)
	var buf [MsgSize]byte
	for {
		if _, err := io.ReadFull(br, buf[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				err = errors.New("connection closed by the server (EOF)")
			}
			r.fail(f, fmt.Errorf("read: %w", err))
			return
		}
		now := time.Now()
		if r.stopping.Load() {
			return
		}
		m, err := decode(buf[:])
		if err == nil && m.flow != uint32(f.id) {
			err = fmt.Errorf("echo of flow %d on flow %d", m.flow, f.id)
		}
		f.mu.Lock()
		if err == nil && m.seq != f.seq+1 {
			err = fmt.Errorf("echo seq %d, want %d", m.seq, f.seq+1)
		}
		if err != nil {
			f.mu.Unlock()
			r.fail(f, err)
			return
		}
		f.seq = m.seq
		f.echoes++
		f.gap(f.last, now, r.threshold, false)
		f.last = now
		if rtt := time.Duration(now.UnixNano() - m.sent); rtt > f.maxRTT {
			f.maxRTT = rtt
		}
		f.mu.Unlock()
	}
}

// gap accounts for the time from one echo (or the start) to the next (or
// the end). f.mu must be held.
func (f *flow) gap(from, to time.Time, threshold time.Duration, ongoing bool) {
	d := to.Sub(from)
	if d < 0 {
		d = 0
	}
	if d > f.longest {
		f.longest, f.longestStart = d, from
	}
	if d > threshold {
		if len(f.gaps) < maxGapsPerFlow {
			f.gaps = append(f.gaps, Gap{Start: from, End: to, Ms: ms(d), Ongoing: ongoing})
		} else {
			f.gapsDropped++
		}
	}
}

func (r *run) progress(flows []*flow, start time.Time) {
	defer r.wg.Done()
	t := time.NewTicker(r.c.ProgressEvery)
	defer t.Stop()
	var prevEchoes uint64
	prev := start
	for {
		select {
		case <-t.C:
		case <-r.done:
			return
		}
		now := time.Now()
		p := Progress{Elapsed: now.Sub(start), Flows: len(flows)}
		var echoes uint64
		for _, f := range flows {
			f.mu.Lock()
			echoes += f.echoes
			if f.longest > p.LongestGap {
				p.LongestGap = f.longest
			}
			if f.err == nil {
				cur := now.Sub(f.last)
				p.CurrentGap = max(p.CurrentGap, cur)
				if cur > r.threshold {
					p.Stalled++
				}
				if cur <= r.c.AliveWindow && f.echoes > 0 {
					p.Alive++
				}
			}
			f.mu.Unlock()
		}
		if dt := now.Sub(prev).Seconds(); dt > 0 {
			p.EchoesPerSec = float64(echoes-prevEchoes) / dt
		}
		prevEchoes, prev = echoes, now
		if r.stopping.Load() {
			return
		}
		r.c.Progress(p)
	}
}
