package vrrp

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The timing path. A group's VRRP timers, the adverts its masters send
// and those its backups receive are served by one OS thread, locked to the
// group's clock goroutine, that blocks in the kernel: ppoll on a timerfd,
// the members' raw sockets and a wake-up eventfd. Nothing on that path
// waits for Go's netpoller or for another goroutine to be scheduled: when
// the timerfd expires or an advert arrives, the kernel wakes that thread,
// which reads the socket, steps the machines and sends the prepared advert
// itself. keepalived serves its timers the same way, from its own thread.
//
// The thread still needs a Go P to run once woken; on a saturated machine
// that is what realtime priority buys (the thread preempts the busy
// processes) and what the benchmarks' jitter figures show, with and
// without it.
//
// The group's goroutine does the rest (trackers, hooks, reloads, the VIP
// checks); both hold the group's mutex while they touch its state.

// clock is a group's timing thread and its descriptors.
type clock struct {
	g     *Group
	timer int // timerfd, CLOCK_MONOTONIC
	wake  int // eventfd: the sockets changed, or stop
	rt    *realtime
	armed time.Time // the deadline the timerfd holds (zero: disarmed)
	stop  bool      // under g.mu
	done  chan struct{}

	fdMu   sync.RWMutex // poke (any goroutine) against close
	closed bool
}

func newClock(g *Group, rt *realtime) (*clock, error) {
	timer, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("vrrp timer: timerfd: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(timer)
		return nil, fmt.Errorf("vrrp timer: eventfd: %w", err)
	}
	return &clock{g: g, timer: timer, wake: wake, rt: rt, done: make(chan struct{})}, nil
}

// start runs the timing thread until shutdown.
func (c *clock) start() { go c.run() }

// run is the timing thread.
func (c *clock) run() {
	defer close(c.done)
	// Never unlocked: the thread ends with this goroutine, so a realtime
	// priority never reaches a thread the runtime would reuse.
	runtime.LockOSThread()
	applied := c.rt.apply(-1)
	g := c.g
	var fds []unix.PollFd
	var polled []int // member index of fds[2:]
	buf := make([]byte, maxPacket)
	for {
		g.mu.Lock()
		if c.stop {
			g.mu.Unlock()
			return
		}
		fds = append(fds[:0], unix.PollFd{Fd: int32(c.timer), Events: unix.POLLIN}, unix.PollFd{Fd: int32(c.wake), Events: unix.POLLIN})
		polled = polled[:0]
		var resume time.Time // the earliest end of a paused socket's pause
		now := time.Now()
		for i, mb := range g.members {
			pc, ok := mb.conn.(pollConn)
			switch {
			case !ok:
			case now.Before(mb.readPause):
				if resume.IsZero() || mb.readPause.Before(resume) {
					resume = mb.readPause
				}
			default:
				fds = append(fds, unix.PollFd{Fd: int32(pc.pollFD()), Events: unix.POLLIN})
				polled = append(polled, i)
			}
		}
		g.mu.Unlock()

		var timeout *unix.Timespec
		if !resume.IsZero() {
			ts := unix.NsecToTimespec(max(time.Until(resume), 0).Nanoseconds())
			timeout = &ts
		}
		if _, err := unix.Ppoll(fds, timeout, nil); err != nil && !errors.Is(err, unix.EINTR) {
			g.log.Error("vrrp timing thread: ppoll failed", "err", err)
			time.Sleep(10 * time.Millisecond) // must not spin
			continue
		}
		at := time.Now()
		applied = c.rt.apply(applied)

		g.mu.Lock()
		if fds[1].Revents != 0 {
			drainFD(c.wake)
		}
		for j, i := range polled {
			if fds[2+j].Revents != 0 && i < len(g.members) {
				g.receive(i, buf, at)
			}
		}
		if fds[0].Revents != 0 {
			drainFD(c.timer)
			g.dispatchAll(Event{Kind: EvTimer})
		}
		g.drain()
		g.arm()
		g.mu.Unlock()
	}
}

// drainFD empties a timerfd's or eventfd's counter.
func drainFD(fd int) {
	var b [8]byte
	_, _ = unix.Read(fd, b[:])
}

// poke wakes the thread: a member's socket changed, the realtime priority
// did, or it is to stop. It does nothing once the clock is closed.
func (c *clock) poke() {
	c.fdMu.RLock()
	defer c.fdMu.RUnlock()
	if c.closed {
		return
	}
	one := [8]byte{1}
	if _, err := unix.Write(c.wake, one[:]); err != nil && !errors.Is(err, unix.EAGAIN) {
		c.g.log.Error("waking the vrrp timing thread failed", "err", err)
	}
}

// set arms the timerfd for deadline (at once if it has passed; disarmed
// if zero). The caller holds g.mu.
func (c *clock) set(deadline time.Time) {
	if c.stop || deadline.Equal(c.armed) {
		return
	}
	var spec unix.ItimerSpec
	if !deadline.IsZero() {
		spec.Value = unix.NsecToTimespec(max(time.Until(deadline), time.Nanosecond).Nanoseconds()) // 0 would disarm
	}
	if err := unix.TimerfdSettime(c.timer, 0, &spec, nil); err != nil {
		c.g.log.Error("arming the VRRP timer failed", "err", err)
		return
	}
	c.armed = deadline
}

// shutdown stops the thread, waits for it and closes the descriptors.
// The caller does not hold g.mu.
func (c *clock) shutdown() {
	c.g.mu.Lock()
	c.stop = true
	c.g.mu.Unlock()
	c.poke()
	<-c.done
	c.close()
}

// close releases the descriptors of a clock whose thread never started
// or has ended. It is idempotent.
func (c *clock) close() {
	c.fdMu.Lock()
	defer c.fdMu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	unix.Close(c.timer)
	unix.Close(c.wake)
}

// pollConn is a Conn the timing thread reads itself: a raw socket whose
// descriptor it polls, read without waiting.
type pollConn interface {
	Conn
	pollFD() int
	// readNow returns the next queued packet, or an error wrapping
	// unix.EAGAIN when there is none.
	readNow(buf []byte) (PacketIn, error)
}

// receive reads every advert queued on member i's socket and applies it
// as received at at. The caller holds g.mu.
func (g *Group) receive(i int, buf []byte, at time.Time) {
	mb := g.members[i]
	pc, ok := mb.conn.(pollConn)
	if !ok {
		return
	}
	for range maxReadsPerWake {
		p, err := pc.readNow(buf)
		if errors.Is(err, unix.EAGAIN) {
			return
		}
		if err != nil {
			if mb.readBackoff == 0 {
				mb.log.Warn("vrrp read failed; retrying", "err", err)
			}
			mb.readBackoff = min(max(2*mb.readBackoff, time.Millisecond), maxReadBackoff)
			mb.readPause = at.Add(mb.readBackoff)
			return
		}
		mb.readBackoff = 0
		if in, ok := g.accept(i, p, at); ok {
			g.dispatchAt(i, Event{Kind: EvAdvert, From: in.src, Priority: in.ad.Priority, Interval: in.ad.Interval}, at)
		}
	}
}

// maxReadsPerWake bounds the packets one wake-up reads from a socket, so
// a flood cannot hold the timer back; the rest wake the thread again.
const maxReadsPerWake = 64

// maxReadBackoff bounds the pause of a socket whose reads keep failing:
// adverts wait in its queue meanwhile, far less than a Master_Down
// interval.
const maxReadBackoff = 50 * time.Millisecond
