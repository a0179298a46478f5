package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Request is what a command sends.
type Request struct {
	Op   string          `json:"op"`
	Args json.RawMessage `json:"args,omitempty"`
}

// Response is what the daemon answers.
type Response struct {
	Error  string          `json:"error,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// Handler answers requests. The error's text reaches the user as the one-line
// reason the command failed.
type Handler func(ctx context.Context, req Request) (any, error)

// Errors a client may see.
var (
	ErrNoDaemon = errors.New("ctha is not running")
	ErrUnknown  = errors.New("unknown operation")
	// ErrStreamEnded: the daemon closed a stream (CallStream).
	ErrStreamEnded = errors.New("the daemon closed the stream")
)

// Stream is a Handler's result that is a sequence of values rather than
// one (`ctha events`). The server answers the request with an empty
// Response, then writes each value Next returns as one line of JSON, until
// Next returns an error (io.EOF: the end), the client hangs up or a write
// fails; then it calls Close. Next's ctx ends when the client hangs up or
// the server stops.
type Stream interface {
	Next(ctx context.Context) (any, error)
	Close()
}

// Time limits of one exchange.
const (
	readLimit   = 1 << 20
	ioTimeout   = 10 * time.Second
	callTimeout = 60 * time.Second // commits of large tables take seconds
)

// Listen opens the control socket at path with mode 0600, creating its
// directory (0700) if needed. A socket file left by a dead daemon is
// replaced; one that a running daemon answers on is an error.
func Listen(path string) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another ctha is running on it", path)
	}
	// Only a stale socket is removed: a path that is anything else (the
	// configuration file, given to -s by a slip) is never deleted.
	switch fi, err := os.Lstat(path); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("control socket: %w", err)
	case fi.Mode().Type() != fs.ModeSocket:
		return nil, fmt.Errorf("control socket %s: exists and is not a socket (%s); not removing it", path, fi.Mode().Type())
	default:
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("control socket: %w", err)
		}
	}
	// The umask makes the socket 0600 from its creation: no window in
	// which another user could connect.
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

// Server serves control requests on a listener.
type Server struct {
	ln      *net.UnixListener
	handler Handler
	log     *slog.Logger
	wg      sync.WaitGroup
}

// NewServer returns a server for ln; Serve starts it.
func NewServer(ln *net.UnixListener, h Handler, log *slog.Logger) *Server {
	return &Server{ln: ln, handler: h, log: log}
}

// Serve accepts connections until ctx is done, then closes the listener
// (removing the socket file) and waits for the exchanges under way.
func (s *Server) Serve(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() { s.ln.Close() })
	defer stop()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("control socket accept failed", "err", err)
				s.ln.Close()
			}
			break
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(ctx, c)
		}()
	}
	s.wg.Wait()
}

func (s *Server) serveConn(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	var req Request
	if err := json.NewDecoder(io.LimitReader(c, readLimit)).Decode(&req); err != nil {
		writeResponse(c, Response{Error: fmt.Sprintf("bad request: %v", err)})
		return
	}
	c.SetDeadline(time.Time{}) // the operation may take long (a commit)
	var resp Response
	result, err := s.handler(ctx, req)
	if st, ok := result.(Stream); ok && err == nil {
		s.serveStream(ctx, c, req.Op, st)
		return
	}
	if err != nil {
		resp.Error = err.Error()
	} else if result != nil {
		if resp.Result, err = json.Marshal(result); err != nil {
			resp = Response{Error: fmt.Sprintf("encode result: %v", err)}
		}
	}
	c.SetDeadline(time.Now().Add(ioTimeout))
	if err := writeResponse(c, resp); err != nil {
		s.log.Debug("control response not delivered", "op", req.Op, "err", err)
	}
}

// streamGrace bounds a stream's writes once the server is stopping.
const streamGrace = time.Second

// serveStream writes a Stream's values on c, one JSON line each.
func (s *Server) serveStream(ctx context.Context, c *net.UnixConn, op string, st Stream) {
	defer st.Close()
	sctx, hangUp := context.WithCancel(ctx)
	defer hangUp()
	var wg sync.WaitGroup
	defer wg.Wait() // after c.Close below, which ends the reader
	defer c.Close()
	// The client sends nothing after its request: a read that ends means
	// it hung up (or c was closed).
	wg.Go(func() {
		io.Copy(io.Discard, c)
		hangUp()
	})
	// A write blocked on a client that reads nothing is cut short once
	// the server stops.
	stop := context.AfterFunc(ctx, func() { c.SetWriteDeadline(time.Now().Add(streamGrace)) })
	defer stop()
	enc := json.NewEncoder(c)
	write := func(v any) error {
		limit := ioTimeout
		if ctx.Err() != nil {
			limit = streamGrace
		}
		c.SetWriteDeadline(time.Now().Add(limit))
		return enc.Encode(v)
	}
	if err := write(Response{}); err != nil {
		s.log.Debug("control stream not started", "op", op, "err", err)
		return
	}
	for {
		v, err := st.Next(sctx)
		if err != nil {
			return // the end, the client gone, or the server stopping
		}
		if err := write(v); err != nil {
			s.log.Debug("control stream ended", "op", op, "err", err)
			return
		}
	}
}

func writeResponse(w io.Writer, r Response) error {
	return json.NewEncoder(w).Encode(r)
}

// newRequest is the request for op with args (nil: none).
func newRequest(op string, args any) (Request, error) {
	req := Request{Op: op}
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			return req, fmt.Errorf("encode %s request: %w", op, err)
		}
		req.Args = b
	}
	return req, nil
}

// Call sends one request to the daemon on socket and decodes its result
// into out (which may be nil). The error is one line, fit to show a user.
func Call(ctx context.Context, socket, op string, args, out any) error {
	req, err := newRequest(op, args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	c, err := dial(ctx, socket)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return fmt.Errorf("send %s request: %w", op, err)
	}
	var resp Response
	if err := json.NewDecoder(io.LimitReader(c, 64<<20)).Decode(&resp); err != nil {
		return fmt.Errorf("read %s response: %w", op, err)
	}
	if resp.Error != "" {
		return errors.New(resp.Error)
	}
	if out != nil && resp.Result != nil {
		if err := json.Unmarshal(resp.Result, out); err != nil {
			return fmt.Errorf("decode %s response: %w", op, err)
		}
	}
	return nil
}

// dial connects to the daemon's socket; the error is one line, fit to
// show a user.
func dial(ctx context.Context, socket string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		if fi, serr := os.Stat(socket); serr == nil && fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s is not a control socket (%s); give the daemon's socket with -s", socket, describeMode(fi.Mode()))
		}
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w (no daemon answers on %s)", ErrNoDaemon, socket)
		}
		return nil, fmt.Errorf("connect to %s: %w", socket, err)
	}
	return c, nil
}

// CallStream sends a request the daemon answers with a stream (Stream)
// and hands each of its lines to fn, in order (the line is valid only
// until fn returns). It returns ctx's error when
// ctx ended the stream, ErrStreamEnded when the daemon closed it, fn's
// error when fn returned one, or else the one-line reason it failed.
func CallStream(ctx context.Context, socket, op string, args any, fn func(line json.RawMessage) error) error {
	req, err := newRequest(op, args)
	if err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, ioTimeout)
	c, err := dial(dctx, socket)
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() }) // unblocks the read
	defer stop()
	c.SetDeadline(time.Now().Add(ioTimeout))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return streamErr(ctx, fmt.Errorf("send %s request: %w", op, err))
	}
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 0, 4096), readLimit)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return streamErr(ctx, fmt.Errorf("read %s response: %w", op, err))
		}
		return streamErr(ctx, fmt.Errorf("read %s response: %w", op, io.ErrUnexpectedEOF))
	}
	var resp Response
	if err := json.Unmarshal(sc.Bytes(), &resp); err != nil {
		return fmt.Errorf("read %s response: %w", op, err)
	}
	if resp.Error != "" {
		return errors.New(resp.Error)
	}
	c.SetDeadline(time.Time{}) // the stream waits as long as nothing happens
	for sc.Scan() {
		if err := fn(json.RawMessage(sc.Bytes())); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return streamErr(ctx, fmt.Errorf("read %s stream: %w", op, err))
	}
	return streamErr(ctx, ErrStreamEnded)
}

// streamErr is ctx's error if ctx ended the stream (closing the
// connection), else err.
func streamErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// describeMode names what a path is, for a message.
func describeMode(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	}
	return "a " + m.Type().String() + " file"
}
