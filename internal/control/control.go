package control

import (
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
)

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

func writeResponse(w io.Writer, r Response) error {
	return json.NewEncoder(w).Encode(r)
}

// Call sends one request to the daemon on socket and decodes its result
// into out (which may be nil). The error is one line, fit to show a user.
func Call(ctx context.Context, socket, op string, args, out any) error {
	req := Request{Op: op}
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			return fmt.Errorf("encode %s request: %w", op, err)
		}
		req.Args = b
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		if fi, serr := os.Stat(socket); serr == nil && fi.Mode().Type() != fs.ModeSocket {
			return fmt.Errorf("%s is not a control socket (%s); give the daemon's socket with -s", socket, describeMode(fi.Mode()))
		}
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%w (no daemon answers on %s)", ErrNoDaemon, socket)
		}
		return fmt.Errorf("connect to %s: %w", socket, err)
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
