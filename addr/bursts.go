package addr

import (
	"slices"
	"time"
)

// bursts is the goroutine that sends the announcements nobody waits for:
// the rest of a burst after its first message, the delayed second burst and
// the periodic refresh. Up starts it; Down and Close stop it. It owns its
// schedule; the runner reaches it only through the kick channel.
type bursts struct {
	stop chan struct{}  // closed to stop the goroutine
	kick chan time.Time // a burst whose first message was sent at this time
	done chan struct{}  // closed when the goroutine has returned
	g    GARP           // immutable
	send func()         // sends one message; called only from the goroutine
}

// startBursts starts the goroutine for a first burst whose first message
// went out at start.
func startBursts(g GARP, start time.Time, send func()) *bursts {
	b := &bursts{
		stop: make(chan struct{}),
		kick: make(chan time.Time),
		done: make(chan struct{}),
		g:    g,
		send: send,
	}
	go b.run(start)
	return b
}

// announce schedules the rest of a burst whose first message went out at t.
func (b *bursts) announce(t time.Time) {
	select {
	case b.kick <- t:
	case <-b.done:
	}
}

// halt stops the goroutine and waits for it: once halt returns, nothing
// more is sent.
func (b *bursts) halt() {
	close(b.stop)
	<-b.done
}

func (b *bursts) run(start time.Time) {
	defer close(b.done)
	g := b.g
	due := schedule(nil, g, start, 1)
	if g.Delay > 0 {
		due = schedule(due, g, start.Add(g.Delay), 0)
	}
	var refresh time.Time // next periodic burst; zero when off
	if g.Refresh > 0 {
		refresh = start.Add(g.Refresh)
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		timer.Stop()
		if next, ok := earliest(due, refresh); ok {
			timer.Reset(time.Until(next))
		}
		select {
		case <-b.stop:
			return
		case t := <-b.kick:
			due = schedule(due, g, t, 1)
		case now := <-timer.C:
			if !refresh.IsZero() && !now.Before(refresh) {
				due = schedule(due, g, refresh, 0)
				for !refresh.After(now) {
					refresh = refresh.Add(g.Refresh)
				}
			}
			for len(due) > 0 && !due[0].After(now) {
				select {
				case <-b.stop:
					return
				default:
				}
				due = due[1:]
				b.send()
			}
		}
	}
}

// schedule adds to due the messages from..Repeat-1 of a burst that starts
// at t, and keeps due sorted.
func schedule(due []time.Time, g GARP, t time.Time, from int) []time.Time {
	for i := from; i < g.Repeat; i++ {
		due = append(due, t.Add(time.Duration(i)*g.Interval))
	}
	slices.SortFunc(due, time.Time.Compare)
	return due
}

// earliest returns the first of due and refresh (zero = none).
func earliest(due []time.Time, refresh time.Time) (time.Time, bool) {
	switch {
	case len(due) == 0 && refresh.IsZero():
		return time.Time{}, false
	case len(due) == 0:
		return refresh, true
	case refresh.IsZero() || due[0].Before(refresh):
		return due[0], true
	default:
		return refresh, true
	}
}
