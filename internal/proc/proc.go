// Package proc runs the administrator's commands (notify commands, track
// scripts) the one way ctha runs them: no shell, a timeout after which
// the command's whole process group is killed, and its output kept up to
// MaxOutput, the rest counted, never held in memory.
package proc

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// MaxOutput bounds the output of a command that is kept.
const MaxOutput = 64 << 10

// Run runs argv (argv[0] an absolute path) with env (nil: the daemon's
// environment) for at most timeout. It returns the command's output,
// stdout and stderr together, cut at MaxOutput with a note saying how much
// more there was.
func Run(ctx context.Context, argv, env []string, timeout time.Duration) (string, error) {
	if len(argv) == 0 {
		return "", errors.New("no command")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var out capped
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("killed after its timeout of %v: %w", timeout, err)
	}
	return out.String(), err
}

// capped keeps the first MaxOutput bytes written to it and counts the
// rest.
type capped struct {
	mu      sync.Mutex
	b       []byte
	dropped int64
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	keep := min(len(p), MaxOutput-len(c.b))
	c.b = append(c.b, p[:keep]...)
	c.dropped += int64(len(p) - keep)
	return len(p), nil
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := strings.TrimSpace(string(c.b))
	if c.dropped > 0 {
		s += fmt.Sprintf(" [output truncated: %d more bytes]", c.dropped)
	}
	return s
}
