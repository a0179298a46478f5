package integration

import (
	"bufio"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ctha/ctha/internal/events"
)

// eventsReader is `ctha events --json` running against a node's socket,
// as an administrator's monitoring would run it.
type eventsReader struct {
	cmd    *exec.Cmd
	stderr strings.Builder
	mu     sync.Mutex
	events []events.Event
	bad    []string // lines that are not an event
	done   chan error
}

func startEvents(t *testing.T, n *node) *eventsReader {
	t.Helper()
	r := &eventsReader{cmd: exec.Command(cthaBin, "events", "--json", "-s", n.socket), done: make(chan error, 1)}
	r.cmd.Stderr = &r.stderr
	out, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var e events.Event
			err := json.Unmarshal(sc.Bytes(), &e)
			r.mu.Lock()
			if err != nil {
				r.bad = append(r.bad, sc.Text())
			} else {
				r.events = append(r.events, e)
			}
			r.mu.Unlock()
		}
		r.done <- r.cmd.Wait()
	}()
	t.Cleanup(func() {
		if r.cmd.ProcessState == nil {
			r.cmd.Process.Kill()
		}
	})
	// Connected once the daemon has it subscribed: it answers at once.
	time.Sleep(100 * time.Millisecond)
	return r
}

// stop interrupts the reader, as Ctrl-C would, and returns what it read;
// it must exit 0.
func (r *eventsReader) stop(t *testing.T) []events.Event {
	t.Helper()
	r.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-r.done:
		var exit *exec.ExitError
		if errors.As(err, &exit) || err != nil {
			t.Errorf("ctha events after SIGINT: %v, stderr %q; want exit 0", err, r.stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ctha events did not stop within 5s of SIGINT")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bad) > 0 {
		t.Errorf("ctha events --json printed lines that are not events: %q", r.bad)
	}
	return r.events
}

// findEvent returns the first event of typ for which match holds.
func findEvent(evs []events.Event, typ string, match func(events.Event) bool) (events.Event, bool) {
	for _, e := range evs {
		if e.Type == typ && (match == nil || match(e)) {
			return e, true
		}
	}
	return events.Event{}, false
}
