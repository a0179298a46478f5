package ctsync

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// fineTimer wakes the engine's loop when its deadline passes, within tens
// of microseconds. A time.Timer is not that precise for the coalescing of
// new records (coalesce, 500 us): when the process is idle, Go waits for
// its timers in epoll_wait, whose timeout is in whole milliseconds, so a
// timer due in 500 us fired after 1.1 ms, and the records held for a
// datagram at the end of every burst waited that long. A timerfd is a
// file the same netpoller waits on: epoll_wait returns when it expires.
//
// The loop owns it: Reset and C are for the loop alone; run, started by
// Run, reads the expirations until close.
type fineTimer struct {
	f  *os.File
	rc syscall.RawConn
	c  chan struct{} // signalled when the deadline passes
}

func newFineTimer() (*fineTimer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "timerfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	return &fineTimer{f: f, rc: rc, c: make(chan struct{}, 1)}, nil
}

// Reset makes the timer fire once, d from now (at once if d <= 0). A
// signal of an earlier deadline may still be pending in C: the loop
// takes it as a spurious wake-up.
func (t *fineTimer) Reset(d time.Duration) error {
	its := unix.ItimerSpec{Value: unix.NsecToTimespec(max(int64(d), 1))} // 0 would disarm it
	var err error
	if cerr := t.rc.Control(func(fd uintptr) { err = unix.TimerfdSettime(int(fd), 0, &its, nil) }); cerr != nil {
		return cerr
	}
	return err
}

// C is signalled when the deadline passes.
func (t *fineTimer) C() <-chan struct{} { return t.c }

// run signals C at each expiration until the timer is closed.
func (t *fineTimer) run() {
	var b [8]byte // the number of expirations
	for {
		err := t.rc.Read(func(fd uintptr) bool {
			_, err := unix.Read(int(fd), b[:])
			return err != unix.EAGAIN
		})
		if err != nil {
			return // closed
		}
		select {
		case t.c <- struct{}{}:
		default:
		}
	}
}

// Close stops the timer and ends run.
func (t *fineTimer) Close() error { return t.f.Close() }
