package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/lab"
	"github.com/ctha/ctha/internal/control"
	"github.com/ctha/ctha/internal/events"
)

// notifySocket stands in for systemd: it collects what the daemon sends
// to $NOTIFY_SOCKET.
type notifySocket struct {
	path string
	conn *net.UnixConn
	msgs chan string
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifySocket{path: path, conn: conn, msgs: make(chan string, 100)}
	go func() {
		defer close(n.msgs)
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.msgs <- string(buf[:k])
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return n
}

// waitFor returns the first message holding want, failing after a timeout.
func (n *notifySocket) waitFor(t *testing.T, want string) string {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m, ok := <-n.msgs:
			if !ok {
				t.Fatalf("notify socket closed before %q", want)
			}
			if strings.Contains(m, want) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %q from the daemon within 5s", want)
		}
	}
}

type daemonProc struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer // written by exec's copier while the test reads it
	done   chan error
}

// startDaemon runs `ctha run` as a separate process (this test binary),
// inside network namespace ns unless ns is "" (only for runs that never
// reach the network: the host's must not be touched).
func startDaemon(t *testing.T, ns string, env []string, args ...string) *daemonProc {
	t.Helper()
	argv := append([]string{os.Args[0], "run"}, args...)
	if ns != "" {
		argv = append([]string{"ip", "netns", "exec", ns}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), "CTHA_TEST_MAIN=1"), env...)
	d := &daemonProc{cmd: cmd, stderr: &lockedBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-d.done
		if t.Failed() {
			t.Logf("daemon stderr:\n%s", d.stderr)
		}
	})
	return d
}

func (d *daemonProc) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-d.done:
		d.done <- err // keep it for Cleanup
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("daemon did not exit within 10s")
		return nil
	}
}

func statusOf(t *testing.T, socket string) control.Status {
	t.Helper()
	var st control.Status
	if err := control.Call(context.Background(), socket, "status", nil, &st); err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

// daemonConfig runs conntrack sync alone, in a lab namespace.
const daemonConfig = `node_name = "NODE"
state_dir = "STATE"
conntrack_sync {
  link "sync0" {
    interface = "sync"
    local     = "10.10.3.1"
    peer      = "10.10.3.2"
  }
  auth_key_file = "sync.key"
}
`

// labNS builds the namespace lab and returns fw1's namespace, whose sync
// link has the address the test configurations use.
func labNS(t *testing.T) string {
	t.Helper()
	lab.RequireNetns(t)
	return lab.New(t, lab.Options{NoIPv6: true, NoRuleset: true}).NS(lab.RoleFW1)
}

func TestDaemonLifecycle(t *testing.T) {
	ns := labNS(t)
	dir := t.TempDir()
	conf := writeConfig(t, dir, "ctha.hcl", strings.NewReplacer("NODE", "fw1", "STATE", dir).Replace(daemonConfig))
	socket := filepath.Join(dir, "run", "ctha.sock")
	n := newNotifySocket(t)
	d := startDaemon(t, ns, []string{"NOTIFY_SOCKET=" + n.path, "WATCHDOG_USEC=200000"}, "-c", conf, "-s", socket)

	ready := n.waitFor(t, "READY=1")
	if want := "STATUS=sync peer down, 0 local / 0 peer states"; !strings.Contains(ready, want) {
		t.Errorf("ready message %q lacks %q", ready, want)
	}
	st := statusOf(t, socket)
	if st.Node != "fw1" || len(st.Groups) != 0 || st.Sync == nil || st.Sync.Mode != "reliable" {
		t.Errorf("status = %+v", st)
	}
	if fi, err := os.Stat(socket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	n.waitFor(t, "WATCHDOG=1")
	evs, evsDone := watchEvents(socket)

	// A second daemon of the same state directory refuses to start, on
	// the same socket or another one, with a one-line reason, and
	// changes nothing: the first still answers on its socket.
	for _, sock := range []string{socket, filepath.Join(dir, "other.sock")} {
		second := startDaemon(t, ns, nil, "-c", conf, "-s", sock)
		var exit *exec.ExitError
		err := second.wait(t)
		lines := strings.Split(strings.TrimSpace(second.stderr.String()), "\n")
		if !errors.As(err, &exit) || exit.ExitCode() != exitFail || len(lines) != 1 ||
			!strings.HasPrefix(lines[0], "ctha: ") || !strings.Contains(lines[0], "already runs with state directory "+dir) {
			t.Errorf("second daemon on %s: %v, stderr %q; want exit %d and one line naming the state directory", sock, err, second.stderr, exitFail)
		}
		if _, err := os.Stat(filepath.Join(dir, "other.sock")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the refused daemon created its socket: %v", err)
		}
	}
	if st := statusOf(t, socket); st.Node != "fw1" {
		t.Errorf("after the second daemons the first answers node %q", st.Node)
	}

	// An invalid file on reload is refused and the running config kept.
	if err := os.WriteFile(conf, []byte(`vrrp_instance "lan" { vrid = 0 }`), 0o644); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	n.waitFor(t, "RELOADING=1")
	n.waitFor(t, "READY=1")
	if st := statusOf(t, socket); st.Node != "fw1" {
		t.Errorf("after a bad reload node = %q, want the old config kept", st.Node)
	}
	if !strings.Contains(d.stderr.String(), "reload refused") {
		t.Errorf("bad reload not logged")
	}

	// A valid file is applied.
	writeConfig(t, dir, "ctha.hcl", strings.NewReplacer("NODE", "fw9", "STATE", dir).Replace(daemonConfig))
	d.cmd.Process.Signal(syscall.SIGHUP)
	n.waitFor(t, "RELOADING=1")
	n.waitFor(t, "READY=1")
	if st := statusOf(t, socket); st.Node != "fw9" {
		t.Errorf("after a good reload node = %q, want fw9", st.Node)
	}

	d.cmd.Process.Signal(syscall.SIGTERM)
	n.waitFor(t, "STOPPING=1")
	if err := d.wait(t); err != nil {
		t.Errorf("daemon exit after SIGTERM: %v, want status 0", err)
	}
	if _, err := os.Stat(socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket left behind: %v", err)
	}
	// `ctha events` saw both reloads and the stop, then the end.
	select {
	case err := <-evsDone:
		if !errors.Is(err, control.ErrStreamEnded) {
			t.Errorf("the events stream ended with %v, want ErrStreamEnded", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the events stream outlived the daemon")
	}
	var types []string
	for _, e := range *evs {
		types = append(types, e.Type)
	}
	if want := []string{events.ReloadFailed, events.ReloadApplied, events.Stopping}; !slices.Equal(types, want) {
		t.Errorf("events %q, want %q", types, want)
	}
	if e := (*evs)[0]; !strings.Contains(e.Error, "is invalid (3 errors)") || !strings.Contains(e.Error, `vrrp_instance "lan": interface is required`) {
		t.Errorf("reload_failed says %q, want the count and the first error", e.Error)
	}
}

// watchEvents reads the daemon's events on socket until the stream
// ends; done gets why it ended, after which evs holds what was read.
func watchEvents(socket string) (evs *[]events.Event, done chan error) {
	evs, done = new([]events.Event), make(chan error, 1)
	go func() {
		done <- control.CallStream(context.Background(), socket, "events", nil, func(line json.RawMessage) error {
			var e events.Event
			if err := json.Unmarshal(line, &e); err != nil {
				return err
			}
			*evs = append(*evs, e)
			return nil
		})
	}()
	return evs, done
}

func TestDaemonRefusesInvalidConfig(t *testing.T) {
	dir := t.TempDir()
	conf := writeConfig(t, dir, "ctha.hcl", `vrrp_instance "lan" {
  interface = "lan"
  vrid      = 0
}`)
	socket := filepath.Join(dir, "ctha.sock")
	d := startDaemon(t, "", nil, "-c", conf, "-s", socket)
	err := d.wait(t)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitFail {
		t.Fatalf("exit = %v, want status %d", err, exitFail)
	}
	errs := d.stderr.String()
	for _, want := range []string{conf + ":3,15: vrid must be from 1 to 255, got 0", "not starting"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if _, err := os.Stat(socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused daemon created its socket")
	}
}

// TestDaemonMissingInterface: an instance on an interface that does not
// exist stops the daemon at start with a clear reason.
func TestDaemonMissingInterface(t *testing.T) {
	ns := labNS(t)
	dir := t.TempDir()
	conf := writeConfig(t, dir, "ctha.hcl", `state_dir = "`+dir+`"
vrrp_instance "lan" {
  interface   = "ctha-nosuch0"
  vrid        = 51
  virtual_ips = ["10.10.1.1/24"]
}`)
	d := startDaemon(t, ns, nil, "-c", conf, "-s", filepath.Join(dir, "ctha.sock"))
	var exit *exec.ExitError
	if err := d.wait(t); !errors.As(err, &exit) || exit.ExitCode() != exitFail {
		t.Fatalf("exit = %v, want status %d", err, exitFail)
	}
	if want := "ctha: instance lan: interface ctha-nosuch0: "; !strings.Contains(d.stderr.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, d.stderr)
	}
}
