package lab

import (
	"errors"
	"fmt"
	"runtime"
	"time"
)

// CPULoad is a set of busy loops saturating the machine's CPUs.
type CPULoad struct {
	procs []*Proc
}

// StartCPULoad starts perCPU busy loops per CPU of the machine
// (`sh -c 'while :; do :; done'`, default scheduling, no fork per turn) in
// role's namespace: a namespace only hosts them, CPUs are shared by all.
// They are stopped by Stop, by the test's cleanup and by the lab's
// Close, by the pids the lab started, whatever happens to the test.
func (l *Lab) StartCPULoad(t TB, role string, perCPU int) *CPULoad {
	t.Helper()
	c := &CPULoad{}
	for i := range perCPU * runtime.NumCPU() {
		c.procs = append(c.procs, l.Start(t, role, fmt.Sprintf("busy-%d", i), "sh", "-c", "while :; do :; done"))
	}
	return c
}

// N is the number of busy loops.
func (c *CPULoad) N() int { return len(c.procs) }

// Pids returns the busy loops' pids.
func (c *CPULoad) Pids() []int {
	var pids []int
	for _, p := range c.procs {
		pids = append(pids, p.Pid())
	}
	return pids
}

// Running reports whether every busy loop is still running.
func (c *CPULoad) Running() bool {
	for _, p := range c.procs {
		if p.Exited() {
			return false
		}
	}
	return true
}

// Stop stops every busy loop (SIGTERM, then SIGKILL to its group) and
// waits for them. It is idempotent.
func (c *CPULoad) Stop() error {
	var errs []error
	for _, p := range c.procs {
		_ = p.Stop(2 * time.Second) // dying of our signal is no error
		if !p.Exited() {
			errs = append(errs, fmt.Errorf("busy loop pid %d still running", p.Pid()))
		}
	}
	return errors.Join(errs...)
}
