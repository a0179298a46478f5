package flowgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultUserTimeout is the TCP_USER_TIMEOUT set on every connection, by
// the client and the server, unless told otherwise: longer than the longest
// outage a failover may cause and a flow still survive (TCP retransmits at
// about 6.2-6.6 s, then 12.6-13.4 s after the first loss), short enough that
// a dead flow errors out within a 30 s test.
const DefaultUserTimeout = 15 * time.Second

// keepAlive is set on every connection. The flows carry data every
// interval, so keepalive only matters for a connection that sits idle (a
// client that stopped sending); TCP_USER_TIMEOUT then also bounds it.
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: 5 * time.Second, Interval: time.Second, Count: 5}

// EchoServer accepts flowgen connections and echoes every byte back as
// soon as it is read. Set its exported fields before Serve.
type EchoServer struct {
	// UserTimeout is set as TCP_USER_TIMEOUT on every accepted connection
	// (0: leave the kernel's default). NewServer sets DefaultUserTimeout.
	UserTimeout time.Duration
	// Logf, if set, receives one line per unexpected event (accept
	// errors, failing socket options). Connection ends are not logged.
	Logf func(format string, args ...any)

	ln   net.Listener
	done chan struct{} // closed by shutdown

	mu     sync.Mutex
	conns  map[*net.TCPConn]struct{}
	closed bool
	killed bool // Kill: every connection ends with a reset

	wg       sync.WaitGroup
	accepted atomic.Int64
	base     time.Time    // monotonic reference for pause
	pause    atomic.Int64 // echoes are held until base+pause; 0: no pause
}

// Server listens on addr ("host:port") and echoes every connection until
// ctx is done. It returns nil after a clean stop, an error if it cannot
// listen.
func Server(ctx context.Context, addr string) error {
	s, err := Listen(addr)
	if err != nil {
		return err
	}
	return s.Serve(ctx)
}

// Listen opens a TCP listener on addr and returns a server for it, not yet
// serving.
func Listen(addr string) (*EchoServer, error) {
	lc := net.ListenConfig{KeepAliveConfig: keepAlive}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return NewServer(ln), nil
}

// NewServer returns a server that will accept on ln. The server owns ln
// from then on.
func NewServer(ln net.Listener) *EchoServer {
	return &EchoServer{
		UserTimeout: DefaultUserTimeout,
		ln:          ln,
		done:        make(chan struct{}),
		base:        time.Now(),
		conns:       make(map[*net.TCPConn]struct{}),
	}
}

// Addr is the address the server listens on (useful with port 0).
func (s *EchoServer) Addr() net.Addr { return s.ln.Addr() }

// Accepted is the number of connections accepted so far.
func (s *EchoServer) Accepted() int64 { return s.accepted.Load() }

// Conns is the number of connections open now.
func (s *EchoServer) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// PauseEchoes holds every echo, on every connection, for d from now: the
// server keeps reading (the kernel buffers what it cannot read) and echoes
// the backlog when the pause ends. For tests: the clients see a gap of at
// least d on every flow, without any error.
func (s *EchoServer) PauseEchoes(d time.Duration) {
	s.pause.Store(int64(time.Since(s.base) + d))
}

// Kill stops the server abruptly: it closes the listener and resets every
// connection (RST, as a crashed peer's kernel would answer), then waits for
// the connection goroutines. Serve returns nil.
func (s *EchoServer) Kill() { s.shutdown(true) }

// Close stops the server: it closes the listener and every connection
// (FIN), then waits for the connection goroutines. Serve returns nil.
func (s *EchoServer) Close() { s.shutdown(false) }

func (s *EchoServer) shutdown(reset bool) {
	s.mu.Lock()
	if reset {
		// Before done: a connection's goroutine that sees done closes
		// its connection, which must reset too, not end with a FIN; so
		// must one accepted from now on (track).
		s.killed = true
		for c := range s.conns {
			c.SetLinger(0)
		}
	}
	if !s.closed {
		s.closed = true
		close(s.done)
		s.ln.Close()
	}
	for c := range s.conns {
		c.Close()
		delete(s.conns, c)
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Serve accepts and echoes until ctx is done or the server is closed or
// killed, then closes every connection and returns nil. It returns an
// error only if the listener fails for good.
func (s *EchoServer) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, s.Close)
	defer stop()
	backoff := 5 * time.Millisecond
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				s.wg.Wait()
				return nil
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				s.Close()
				return fmt.Errorf("accept: %w", err)
			}
			// Transient (EMFILE, ECONNABORTED...): retry after a pause, as
			// net/http does.
			s.logf("accept: %v (retrying in %v)", err, backoff)
			select {
			case <-time.After(backoff):
			case <-s.done:
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		tc, ok := c.(*net.TCPConn)
		if !ok {
			c.Close()
			continue
		}
		s.accepted.Add(1)
		if !s.track(tc) {
			tc.Close()
			continue
		}
		go s.echo(tc)
	}
}

func (s *EchoServer) track(c *net.TCPConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		if s.killed {
			c.SetLinger(0)
		}
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *EchoServer) untrack(c *net.TCPConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
	s.wg.Done()
}

func (s *EchoServer) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// echo copies everything c sends back to it, holding it during a pause.
func (s *EchoServer) echo(c *net.TCPConn) {
	defer s.untrack(c)
	c.SetNoDelay(true)
	if rc, err := c.SyscallConn(); err == nil {
		if err := setUserTimeout(rc, s.UserTimeout); err != nil {
			s.logf("%v: TCP_USER_TIMEOUT: %v", c.RemoteAddr(), err)
		}
	}
	buf := make([]byte, 64*MsgSize)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if !s.waitPause() {
				return
			}
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// waitPause blocks while echoes are paused. It returns false if the server
// shuts down meanwhile.
func (s *EchoServer) waitPause() bool {
	until := s.pause.Load()
	if until == 0 {
		return true
	}
	d := time.Duration(until) - time.Since(s.base)
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.done:
		return false
	}
}

// dialControl sets the socket options of a client connection before it
// connects, so TCP_USER_TIMEOUT also bounds the handshake.
func dialControl(userTimeout time.Duration) func(network, address string, rc syscall.RawConn) error {
	return func(_, _ string, rc syscall.RawConn) error {
		return setUserTimeout(rc, userTimeout)
	}
}
