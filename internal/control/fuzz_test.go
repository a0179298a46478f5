package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// connPair returns the two ends of a connected Unix stream socket, as the
// server's Accept and a client's Dial would give them.
func connPair(t *testing.T) (server, client *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]*net.UnixConn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "control")
		c, err := net.FileConn(f) // a copy of the descriptor
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c.(*net.UnixConn)
	}
	return conns[0], conns[1]
}

// FuzzServeRequest sends arbitrary bytes to the control server as one
// client would: the server decodes the first JSON value as the request,
// hands the handler exactly what encoding/json decodes, and always answers
// with one line of JSON: the handler's result, or an error saying why the
// request was bad.
func FuzzServeRequest(f *testing.F) {
	for _, s := range []string{
		`{"op":"status"}` + "\n",
		`{"op":"dump","args":"external"}`,
		`{"op":"commit","args":{"timeout":"5s","flows":[1,2,3]}}`,
		`{"op":"fail"}`,
		`{"op":"status","args":null} trailing garbage`,
		`{"op":"a"}{"op":"b"}`,
		`{not json`, ``, `{"op":`, `{"op":1}`, `[]`, `null`, `"status"`,
		`{"op":"\u00e9\ud800","ARGS":{"x":"<&>"}}`,
		`{"op":"x","args":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got *Request
		s := &Server{log: slog.New(slog.DiscardHandler), handler: func(_ context.Context, req Request) (any, error) {
			got = &req
			if req.Op == "fail" {
				return nil, errors.New("it failed")
			}
			return req, nil // the request itself, as the result
		}}
		srv, cl := connPair(t)
		defer cl.Close()
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			cl.Write(data) // fails once the server has answered and closed
			cl.CloseWrite()
		}()
		s.serveConn(context.Background(), srv)
		out, err := io.ReadAll(cl)
		<-wrote
		// The server reads one JSON value; closing with more of the
		// client's bytes unread resets the connection after the answer.
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("%v after %q", err, out)
		}

		if !bytes.HasSuffix(out, []byte("\n")) || bytes.Count(out, []byte("\n")) != 1 {
			t.Fatalf("response %q is not one line", out)
		}
		var resp Response
		if err := json.Unmarshal(out, &resp); err != nil {
			t.Fatalf("response %q: %v", out, err)
		}
		var want Request
		if err := json.NewDecoder(bytes.NewReader(data)).Decode(&want); err != nil {
			if got != nil || !strings.HasPrefix(resp.Error, "bad request: ") {
				t.Fatalf("bad request (%v) answered %+v, handler called with %+v", err, resp, got)
			}
			return
		}
		if got == nil {
			t.Fatalf("valid request %q answered %+v without calling the handler", data, resp)
		}
		if diff := cmp.Diff(want, *got); diff != "" {
			t.Fatalf("handler got (-want +got):\n%s", diff)
		}
		if want.Op == "fail" {
			if resp.Error != "it failed" || resp.Result != nil {
				t.Fatalf("failed op answered %+v", resp)
			}
			return
		}
		var echo Request
		if resp.Error != "" || json.Unmarshal(resp.Result, &echo) != nil {
			t.Fatalf("answer %+v does not carry the result", resp)
		}
		if echo.Op != want.Op || !sameJSON(echo.Args, want.Args) {
			t.Fatalf("result %+v, want %+v", echo, want)
		}
	})
}

// sameJSON reports whether a and b are the same JSON text but for
// insignificant space and the escapes json.Marshal adds (<, >, &).
func sameJSON(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	norm := func(m json.RawMessage) []byte {
		var c, e bytes.Buffer
		if json.Compact(&c, m) != nil {
			return nil
		}
		json.HTMLEscape(&e, c.Bytes())
		return e.Bytes()
	}
	na, nb := norm(a), norm(b)
	return na != nil && bytes.Equal(na, nb)
}
