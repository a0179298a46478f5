package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrTimeout is wrapped by the errors of WaitFor and Proc.Kill (so also
// Proc.Stop) when time ran out.
var ErrTimeout = errors.New("timed out")

// logTailLines is how many lines of a process's log a failed test shows.
const logTailLines = 40

// Proc is a process started in a lab namespace. `ip netns exec` execs the
// program, so Pid is the program's own pid. It runs in a process group of
// its own (pgid = pid), so Kill also reaches the children it forked.
type Proc struct {
	Name    string    // for messages, e.g. "keepalived-fw1"
	Role    string    // the namespace role it runs in
	Cmd     *exec.Cmd // started; do not Wait on it (the reaper does)
	Dir     string    // directory of its files (log, config, pid files)
	LogPath string    // stdout and stderr

	done chan struct{} // closed by the reaper once Cmd.Wait returned
	err  error         // Cmd.Wait's result, written before done is closed

	mu       sync.Mutex // guards signaled
	signaled bool       // Stop or Kill signalled it
}

// Start runs argv inside role's namespace with stdout and stderr going to a
// log file in a new t.TempDir(). It registers a cleanup that stops the
// process and, if the test failed, logs the tail of its log. The lab's own
// cleanup also stops it before deleting the namespaces.
func (l *Lab) Start(t TB, role, name string, argv ...string) *Proc {
	t.Helper()
	return l.startIn(t, t.TempDir(), role, name, argv...)
}

// startIn is Start with the process's directory given.
func (l *Lab) startIn(t TB, dir, role, name string, argv ...string) *Proc {
	t.Helper()
	p, err := l.start(dir, role, name, argv)
	if err != nil {
		t.Fatalf("lab: %v", err)
		return nil
	}
	t.Cleanup(func() {
		_ = p.Stop(5 * time.Second)
		if f, ok := t.(interface{ Failed() bool }); ok && f.Failed() {
			p.logTail(t)
		}
	})
	return p
}

func (l *Lab) start(dir, role, name string, argv []string) (*Proc, error) {
	if err := checkRole(role); err != nil {
		return nil, err
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("start %s in %s: no command", name, role)
	}
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: open log: %w", name, err)
	}
	argv = nsArgv(l.NS(role), argv...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// If the test binary dies, its daemons die with it. The signal
		// follows the starting OS thread: do not Start from a goroutine
		// that locked its thread and exits without unlocking.
		Pdeathsig: syscall.SIGKILL,
	}
	p := &Proc{Name: name, Role: role, Cmd: cmd, Dir: dir, LogPath: logPath, done: make(chan struct{})}

	// Start under the lab's lock: Close either sees the process or has
	// already refused it.
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		logFile.Close()
		return nil, fmt.Errorf("start %s: lab %s is closed", name, l.Prefix)
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s in %s: %w", name, role, err)
	}
	l.procs = append(l.procs, p)
	go func() {
		err := cmd.Wait()
		logFile.Close()
		p.err = err
		close(p.done)
	}()
	return p, nil
}

// Pid returns the process id.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Done returns a channel closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports, without blocking, whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait blocks until the process exits and returns its exit error, which is
// nil when it exited 0 or died of a signal sent by Stop or Kill.
func (p *Proc) Wait() error {
	<-p.done
	return p.exitErr()
}

// Signal sends sig to the process (not its group). It returns
// os.ErrProcessDone if the process has exited.
func (p *Proc) Signal(sig os.Signal) error {
	if err := p.Cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s (pid %d) %v: %w", p.Name, p.Pid(), sig, err)
	}
	return nil
}

// Stop sends SIGTERM to the process and waits up to timeout for it to exit,
// then sends SIGKILL to its process group. It is idempotent and returns the
// exit error, if any (dying of our signal is not an error).
func (p *Proc) Stop(timeout time.Duration) error {
	if p.Exited() {
		return p.exitErr()
	}
	p.markSignaled()
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.exitErr()
	case <-time.After(timeout):
	}
	return p.Kill()
}

// Kill sends SIGKILL to the process's group (the process and any children
// it forked, as in a crash) and waits for the process to exit.
func (p *Proc) Kill() error {
	if p.Exited() {
		return p.exitErr()
	}
	p.markSignaled()
	// The group cannot be reused while the leader is not reaped, and
	// the reaper closes done only after reaping.
	if err := syscall.Kill(-p.Pid(), syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s (pgid %d): %w", p.Name, p.Pid(), err)
	}
	select {
	case <-p.done:
		return p.exitErr()
	case <-time.After(10 * time.Second):
		return fmt.Errorf("kill %s (pid %d): %w: still running 10s after SIGKILL", p.Name, p.Pid(), ErrTimeout)
	}
}

func (p *Proc) markSignaled() {
	p.mu.Lock()
	p.signaled = true
	p.mu.Unlock()
}

// exitErr returns the exit error once the process has exited; nil if it is
// running, exited 0, or died of a signal sent by Stop or Kill.
func (p *Proc) exitErr() error {
	if !p.Exited() || p.err == nil {
		return nil
	}
	p.mu.Lock()
	signaled := p.signaled
	p.mu.Unlock()
	var ee *exec.ExitError
	if signaled && errors.As(p.err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return nil
		}
	}
	return fmt.Errorf("%s (pid %d): %w", p.Name, p.Pid(), p.err)
}

// Log returns the content of the process's log so far.
func (p *Proc) Log() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(read log %s: %v)", p.LogPath, err)
	}
	return string(b)
}

// logTail logs the end of the process's log, for a failed test.
func (p *Proc) logTail(t TB) {
	status := "stopped"
	if err := p.exitErr(); err != nil {
		status = err.Error()
	}
	tail := p.Tail(logTailLines)
	if tail == "" {
		tail = "(empty)"
	}
	t.Logf("%s (pid %d, %s), last %d lines of %s:\n%s", p.Name, p.Pid(), status, logTailLines, p.LogPath, tail)
}

// Tail returns the last n lines of the process's log.
func (p *Proc) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WaitFor polls cond every interval until it returns true or timeout
// passes. A cond error does not stop the polling; on timeout the returned
// error wraps ErrTimeout and the last cond error.
func WaitFor(timeout, interval time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("condition not met: %w after %v: %w", ErrTimeout, timeout, err)
			}
			return fmt.Errorf("condition not met: %w after %v", ErrTimeout, timeout)
		}
		time.Sleep(interval)
	}
}
