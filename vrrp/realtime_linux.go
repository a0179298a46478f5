package vrrp

import (
	"errors"
	"log/slog"
	"sync"

	"golang.org/x/sys/unix"
)

// RealtimeStatus says what scheduling the timing threads run with.
type RealtimeStatus struct {
	// Priority is the configured SCHED_FIFO priority; 0: none asked.
	Priority int
	// State is "off" (none asked), "on" (every timing thread has it) or
	// "refused" (the kernel said no; the threads run at normal priority).
	State string
	// Err is the kernel's answer when refused.
	Err string
}

// realtime is the scheduling the timing threads ask for: SCHED_FIFO at
// the configured priority, or the normal class. Only those threads ask:
// the rest of the daemon (the sync engine, the control socket, the
// scripts it runs) stays at normal priority.
type realtime struct {
	log    *slog.Logger
	mu     sync.Mutex
	want   int
	status RealtimeStatus
	logged string // the refusal last logged: each is logged once
}

func newRealtime(prio int, log *slog.Logger) *realtime {
	rt := &realtime{log: log}
	rt.set(prio)
	return rt
}

// set changes the priority asked for; the threads apply it at their next
// wake-up.
func (rt *realtime) set(prio int) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.want = prio
	if prio == 0 {
		rt.status = RealtimeStatus{State: "off"}
	} else if rt.status.Priority != prio {
		rt.status = RealtimeStatus{Priority: prio, State: "on"} // until a thread is refused
	}
}

// Status returns what the threads run with.
func (rt *realtime) Status() RealtimeStatus {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.status
}

// apply gives the calling thread the wanted scheduling if it does not
// have it yet (applied is what it asked for last, -1 at first) and
// returns what it asked for now. A refusal is not retried until the
// wanted priority changes.
func (rt *realtime) apply(applied int) int {
	rt.mu.Lock()
	want := rt.want
	rt.mu.Unlock()
	if want == applied || want == 0 && applied == -1 {
		return want
	}
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL}
	if want > 0 {
		// Reset on fork: a thread or process started from this one
		// (the runtime starts its threads from a template thread
		// anyway) never inherits the priority.
		attr.Policy, attr.Priority, attr.Flags = unix.SCHED_FIFO, uint32(want), unix.SCHED_FLAG_RESET_ON_FORK
	}
	err := unix.SchedSetAttr(0, &attr, 0)
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.want != want {
		return applied // changed meanwhile: try again at the next wake-up
	}
	switch {
	case err == nil:
	case want == 0:
		rt.log.Warn("returning the vrrp timing thread to normal priority failed", "err", err)
	default:
		rt.status = RealtimeStatus{Priority: want, State: "refused", Err: err.Error()}
		if rt.logged != err.Error() {
			rt.logged = err.Error()
			msg := "realtime priority refused: the VRRP timing thread runs at normal priority"
			if errors.Is(err, unix.EPERM) {
				msg += " (allow it with LimitRTPRIO= and RestrictRealtime=no in the unit, and a realtime budget in the cgroup when the kernel has CONFIG_RT_GROUP_SCHED)"
			}
			rt.log.Warn(msg, "priority", want, "err", err)
		}
	}
	return want
}
