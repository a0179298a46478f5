package flowgen

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The rate client drives non-blocking sockets through an epoll of its own
// per worker, one worker per CPU: a goroutine and a net.Dial per
// connection (with its deadline timer) topped out near 10k connections a
// second on two CPUs, handshakes waiting tens of milliseconds for the
// client itself.

// Run opens connections for Duration and returns the report.
func (c *RateClient) Run(ctx context.Context) (RateReport, error) {
	if c.Addr == "" || c.Rate <= 0 || c.Duration <= 0 {
		return RateReport{}, errors.New("rate client: Addr, Rate and Duration are required")
	}
	dst, err := resolveTCP(c.Addr)
	if err != nil {
		return RateReport{}, fmt.Errorf("rate client: %w", err)
	}
	timeout, inflight := c.Timeout, c.Inflight
	if timeout <= 0 {
		timeout = DefaultRateTimeout
	}
	if inflight <= 0 {
		inflight = DefaultRateInflight
	}
	n := runtime.NumCPU()
	ws := make([]*rateWorker, n)
	for i := range ws {
		w, err := newRateWorker(dst, c, timeout, inflight/n+1)
		if err != nil {
			for _, w := range ws[:i] {
				w.close()
			}
			return RateReport{}, fmt.Errorf("rate client: %w", err)
		}
		ws[i] = w
	}
	var udp *udpLoad
	if c.UDPRate > 0 {
		if udp, err = newUDPLoad(c, dst); err != nil {
			for _, w := range ws {
				w.close()
			}
			return RateReport{}, fmt.Errorf("rate client: %w", err)
		}
		defer udp.close()
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Go(func() { w.run(ctx, start, i, n) })
	}
	if udp != nil {
		wg.Go(func() { udp.run(ctx, start) })
	}
	wg.Wait()
	end := start.Add(c.Duration)
	rep := RateReport{Target: c.Addr, Rate: c.Rate, DurationMs: ms(c.Duration)}
	if udp != nil {
		rep.UDPSent, rep.UDPErrors = udp.sent, udp.errors
	}
	var times []float64
	for _, w := range ws {
		w.close()
		times = append(times, w.times...)
		rep.Failed += w.failed
		rep.Skipped += w.skipped
		if rep.FirstError == "" {
			rep.FirstError = w.firstErr
		}
	}
	rep.Connected = len(times)
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

// rateWorker makes attempts i, i+n, i+2n, ... of a run.
type rateWorker struct {
	c        *RateClient
	dst      unix.Sockaddr
	family   int
	timeout  time.Duration
	max      int // handshakes under way at most
	ep       int
	pending  map[int32]time.Time // fd -> connect called
	times    []float64
	failed   int
	skipped  int
	firstErr string
}

func newRateWorker(dst unix.Sockaddr, c *RateClient, timeout time.Duration, max int) (*rateWorker, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	// A copy of its own: connect(2) writes the raw form into it.
	fam := unix.AF_INET
	switch d := dst.(type) {
	case *unix.SockaddrInet4:
		dst = &unix.SockaddrInet4{Addr: d.Addr, Port: d.Port}
	case *unix.SockaddrInet6:
		fam, dst = unix.AF_INET6, &unix.SockaddrInet6{Addr: d.Addr, Port: d.Port}
	}
	return &rateWorker{c: c, dst: dst, family: fam, timeout: timeout, max: max, ep: ep, pending: map[int32]time.Time{}}, nil
}

func (w *rateWorker) close() {
	for fd := range w.pending {
		unix.Close(int(fd))
	}
	clear(w.pending)
	unix.Close(w.ep)
}

func (w *rateWorker) fail(err error) {
	w.failed++
	if w.firstErr == "" {
		w.firstErr = err.Error()
	}
}

// run makes this worker's attempts as they fall due (every n-th from
// first), and completes them, until the run's end and its last handshake.
func (w *rateWorker) run(ctx context.Context, start time.Time, first, n int) {
	events := make([]unix.EpollEvent, 256)
	next := first // the next attempt's number
	lastSweep := start
	for {
		now := time.Now()
		elapsed := now.Sub(start)
		if elapsed < w.c.Duration && ctx.Err() == nil {
			due := int(float64(w.c.Rate) * elapsed.Seconds())
			for ; next < due; next += n {
				if len(w.pending) >= w.max {
					w.skipped++
					continue
				}
				w.dial(next, now)
			}
		} else if len(w.pending) == 0 {
			return
		}
		if now.Sub(lastSweep) >= 50*time.Millisecond {
			lastSweep = now
			for fd, at := range w.pending {
				if now.Sub(at) >= w.timeout {
					unix.Close(int(fd))
					delete(w.pending, fd)
					w.fail(fmt.Errorf("handshake timeout (%v)", w.timeout))
				}
			}
		}
		k, err := unix.EpollWait(w.ep, events, 1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			w.fail(fmt.Errorf("epoll_wait: %w", err))
			return
		}
		now = time.Now()
		for _, ev := range events[:max(k, 0)] {
			at, ok := w.pending[ev.Fd]
			if !ok {
				continue
			}
			delete(w.pending, ev.Fd)
			fd := int(ev.Fd)
			if errno, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || errno != 0 {
				if err == nil {
					err = unix.Errno(errno)
				}
				w.fail(fmt.Errorf("connect: %w", err))
			} else {
				w.times = append(w.times, float64(now.Sub(at).Microseconds()))
			}
			unix.Close(fd) // a reset: SO_LINGER 0
		}
	}
}

// dial starts attempt i: a non-blocking connect from the next source.
func (w *rateWorker) dial(i int, now time.Time) {
	fd, err := unix.Socket(w.family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		w.fail(fmt.Errorf("socket: %w", err))
		return
	}
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	if srcs := w.c.Sources; len(srcs) > 0 {
		// The port is chosen at connect(2), for the whole 4-tuple: many
		// more connections than ephemeral ports per address.
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		src := srcs[i%len(srcs)]
		var sa unix.Sockaddr = &unix.SockaddrInet4{Addr: src.As4()}
		if w.family == unix.AF_INET6 {
			sa = &unix.SockaddrInet6{Addr: src.As16()}
		}
		if err := unix.Bind(fd, sa); err != nil {
			unix.Close(fd)
			w.fail(fmt.Errorf("bind %v: %w", src, err))
			return
		}
	}
	if err := unix.Connect(fd, w.dst); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		unix.Close(fd)
		w.fail(fmt.Errorf("connect: %w", err))
		return
	}
	if err := unix.EpollCtl(w.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLOUT | unix.EPOLLONESHOT, Fd: int32(fd)}); err != nil {
		unix.Close(fd)
		w.fail(fmt.Errorf("epoll_ctl: %w", err))
		return
	}
	w.pending[int32(fd)] = now
}

// resolveTCP parses "host:port" with a literal address.
func resolveTCP(addr string) (unix.Sockaddr, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}, nil
	}
	return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}, nil
}

// udpLoad sends the background load of new UDP flows (RateClient.UDPRate).
type udpLoad struct {
	c      *RateClient
	fds    []int // one socket per source (or one, unbound)
	dst    unix.Sockaddr
	sent   int
	errors int
}

func newUDPLoad(c *RateClient, dst unix.Sockaddr) (*udpLoad, error) {
	if c.UDPPorts[0] == 0 || c.UDPPorts[1] < c.UDPPorts[0] {
		return nil, fmt.Errorf("UDP ports %v: want LO-HI, LO > 0", c.UDPPorts)
	}
	u := &udpLoad{c: c}
	fam := unix.AF_INET
	switch d := dst.(type) {
	case *unix.SockaddrInet4:
		u.dst = &unix.SockaddrInet4{Addr: d.Addr}
	case *unix.SockaddrInet6:
		fam, u.dst = unix.AF_INET6, &unix.SockaddrInet6{Addr: d.Addr}
	}
	srcs := c.Sources
	if len(srcs) == 0 {
		srcs = []netip.Addr{{}}
	}
	for _, src := range srcs {
		fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			u.close()
			return nil, fmt.Errorf("udp socket: %w", err)
		}
		u.fds = append(u.fds, fd)
		if !src.IsValid() {
			continue
		}
		var sa unix.Sockaddr = &unix.SockaddrInet4{Addr: src.As4()}
		if fam == unix.AF_INET6 {
			sa = &unix.SockaddrInet6{Addr: src.As16()}
		}
		if err := unix.Bind(fd, sa); err != nil {
			u.close()
			return nil, fmt.Errorf("udp bind %v: %w", src, err)
		}
	}
	return u, nil
}

func (u *udpLoad) close() {
	for _, fd := range u.fds {
		unix.Close(fd)
	}
	u.fds = nil
}

// run sends the datagrams as they fall due, every millisecond, until the
// run's end.
func (u *udpLoad) run(ctx context.Context, start time.Time) {
	lo, span := int(u.c.UDPPorts[0]), int(u.c.UDPPorts[1]-u.c.UDPPorts[0])+1
	payload := []byte("ctha flowgen udp load")
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	n := 0
	for ctx.Err() == nil {
		elapsed := time.Since(start)
		if elapsed >= u.c.Duration {
			return
		}
		for due := int(float64(u.c.UDPRate) * elapsed.Seconds()); n < due; n++ {
			// Source first, then port: every source sends to every port.
			fd := u.fds[n%len(u.fds)]
			port := lo + (n/len(u.fds))%span
			switch d := u.dst.(type) {
			case *unix.SockaddrInet4:
				d.Port = port
			case *unix.SockaddrInet6:
				d.Port = port
			}
			if err := unix.Sendto(fd, payload, 0, u.dst); err != nil {
				u.errors++
				continue
			}
			u.sent++
		}
		<-tick.C
	}
}
