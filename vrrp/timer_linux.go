package vrrp

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// preciseTimer fires at a deadline with the kernel's hrtimer precision.
//
// Go's runtime sleeps in epoll_wait with millisecond granularity, so a
// time.Timer may fire up to a millisecond late; that millisecond would be
// added to every takeover. A timerfd in the netpoller wakes the runtime
// when it expires, as keepalived's scheduler does with its own timerfd.
type preciseTimer struct {
	f *os.File
	C chan struct{}
}

func newPreciseTimer() (*preciseTimer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	t := &preciseTimer{f: os.NewFile(uintptr(fd), "vrrp-timer"), C: make(chan struct{}, 1)}
	go t.wait()
	return t, nil
}

// wait turns expirations into sends on C until the timer is closed.
func (t *preciseTimer) wait() {
	var buf [8]byte
	for {
		if _, err := t.f.Read(buf[:]); err != nil {
			return // closed
		}
		select {
		case t.C <- struct{}{}:
		default: // one pending tick is enough: the loop checks every deadline
		}
	}
}

// Reset arms the timer to fire once at deadline (at once if it has
// passed); a zero deadline disarms it.
func (t *preciseTimer) Reset(deadline time.Time) error {
	var spec unix.ItimerSpec
	if !deadline.IsZero() {
		d := time.Until(deadline)
		if d <= 0 {
			d = time.Nanosecond // a zero value would disarm
		}
		spec.Value = unix.NsecToTimespec(d.Nanoseconds())
	}
	return unix.TimerfdSettime(int(t.f.Fd()), 0, &spec, nil)
}

// Close stops the timer and its goroutine.
func (t *preciseTimer) Close() error { return t.f.Close() }
