package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// chanStream is a Stream of the values sent on c; it ends when c is
// closed, and closes closed when the server is done with it.
type chanStream struct {
	c      chan any
	closed chan struct{}
}

func newChanStream() *chanStream {
	return &chanStream{c: make(chan any, 16), closed: make(chan struct{})}
}

func (s *chanStream) Next(ctx context.Context) (any, error) {
	select {
	case v, ok := <-s.c:
		if !ok {
			return nil, io.EOF
		}
		return v, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *chanStream) Close() { close(s.closed) }

type line struct {
	N int `json:"n"`
}

// streamServer serves "watch" with st and fails anything else.
func streamServer(t *testing.T, st *chanStream) (path string, stop func()) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "ctha.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	srv := NewServer(ln, func(_ context.Context, req Request) (any, error) {
		if req.Op == "watch" {
			return st, nil
		}
		return nil, fmt.Errorf("%w %q", ErrUnknown, req.Op)
	}, slog.New(slog.DiscardHandler))
	go func() { srv.Serve(ctx); close(done) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return path, stop
}

// watch runs CallStream in the background; lines gets each line, and
// result its error.
func watch(ctx context.Context, path, op string) (lines chan line, result chan error) {
	lines, result = make(chan line, 16), make(chan error, 1)
	go func() {
		result <- CallStream(ctx, path, op, nil, func(b json.RawMessage) error {
			var l line
			if err := json.Unmarshal(b, &l); err != nil {
				return err
			}
			lines <- l
			return nil
		})
	}()
	return lines, result
}

func wait[T any](t *testing.T, c chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s within 5s", what)
	}
	panic("unreachable")
}

// TestStreamLines: every value reaches the client, in order; the stream's
// end is ErrStreamEnded for the client, and the server closes the stream.
func TestStreamLines(t *testing.T) {
	st := newChanStream()
	path, _ := streamServer(t, st)
	lines, result := watch(context.Background(), path, "watch")
	var got []line
	for i := range 3 {
		st.c <- line{N: i}
		got = append(got, wait(t, lines, "line"))
	}
	if diff := cmp.Diff([]line{{0}, {1}, {2}}, got); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
	close(st.c)
	if err := wait(t, result, "end"); !errors.Is(err, ErrStreamEnded) {
		t.Errorf("CallStream = %v, want ErrStreamEnded", err)
	}
	wait(t, st.closed, "Close of the stream")
}

// TestStreamClientHangsUp: a client that goes away (SIGINT) ends the
// stream on the server at once, even while nothing happens.
func TestStreamClientHangsUp(t *testing.T) {
	st := newChanStream()
	path, _ := streamServer(t, st)
	ctx, cancel := context.WithCancel(context.Background())
	lines, result := watch(ctx, path, "watch")
	st.c <- line{N: 7}
	wait(t, lines, "line")
	cancel()
	if err := wait(t, result, "end"); !errors.Is(err, context.Canceled) {
		t.Errorf("CallStream after cancel = %v, want context.Canceled", err)
	}
	wait(t, st.closed, "Close of the stream after the client hung up")
}

// TestStreamServerStops: the daemon stopping ends its streams.
func TestStreamServerStops(t *testing.T) {
	st := newChanStream()
	path, stop := streamServer(t, st)
	lines, result := watch(context.Background(), path, "watch")
	st.c <- line{N: 1}
	wait(t, lines, "line")
	stop()
	if err := wait(t, result, "end"); !errors.Is(err, ErrStreamEnded) {
		t.Errorf("CallStream after the server stopped = %v, want ErrStreamEnded", err)
	}
}

// TestStreamRefused: an operation the daemon does not know (an older
// daemon) is the one-line error, not a stream.
func TestStreamRefused(t *testing.T) {
	path, _ := streamServer(t, newChanStream())
	_, result := watch(context.Background(), path, "nope")
	if err := wait(t, result, "answer"); err == nil || err.Error() != `unknown operation "nope"` {
		t.Errorf("CallStream of an unknown op = %v", err)
	}
	_, result = watch(context.Background(), filepath.Join(t.TempDir(), "none.sock"), "watch")
	if err := wait(t, result, "answer"); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("CallStream without a daemon = %v, want ErrNoDaemon", err)
	}
}
