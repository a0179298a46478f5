package vrrp

import (
	"context"
	"sync"
	"time"
)

// run is the group's goroutine: it starts the group's timing thread and
// serves everything else (trackers, hooks, controls, the VIP checks).
// With runtime timers (a fake clock) it serves the timers too.
func (g *Group) run(ctx context.Context) {
	g.ctx = ctx
	defer close(g.doneCh)
	g.fallback = time.NewTimer(time.Hour)
	defer g.fallback.Stop()
	var tick <-chan time.Time
	if g.clock == nil {
		tick = g.fallback.C
	}
	g.locked(func() {
		if g.deferred {
			g.dispatchAll(Event{Kind: EvDefer, Defer: true})
		}
		g.dispatchAll(Event{Kind: EvStartup})
		g.reevaluate() // initial priorities; a fault found here follows the startup
	})
	if g.clock != nil {
		g.clock.start()
	}
	vipCheck := time.NewTicker(vipCheckEvery)
	defer vipCheck.Stop()
	var checker sync.WaitGroup
	defer checker.Wait()
	checker.Go(func() { g.checkRoutes(ctx) })
	for {
		select {
		case <-ctx.Done():
			if g.clock != nil {
				g.clock.shutdown()
			}
			g.locked(func() {
				if g.hookCancel != nil {
					g.hookCancel()
					g.hookCancel = nil
				}
				g.dispatchAll(Event{Kind: EvShutdown})
			})
			g.hooksWG.Wait()
			return
		case in := <-g.in:
			// Master_Down counts from when the advert arrived, not from
			// when this goroutine got to it.
			g.locked(func() {
				g.dispatchAt(in.member, Event{Kind: EvAdvert, From: in.src, Priority: in.ad.Priority, Interval: in.ad.Interval}, in.at)
			})
		case <-tick:
			g.locked(func() { g.dispatchAll(Event{Kind: EvTimer}) })
		case u := <-g.track:
			g.locked(func() { g.applyTracker(u) })
		case <-g.addrs:
			g.checkVIPs()
		case <-vipCheck.C:
			g.checkVIPs()
		case r := <-g.hookDone:
			g.locked(func() { g.hookFinished(r) })
		case f := <-g.ctl:
			g.locked(f)
		}
	}
}

// locked runs f with the group's lock held, then applies what it queued
// and arms the timer for the next deadline.
func (g *Group) locked(f func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f()
	g.drain()
	g.arm()
}

// arm sets the timer to the members' earliest deadline. The caller holds
// g.mu.
func (g *Group) arm() {
	d := g.deadline()
	switch {
	case g.clock != nil:
		g.clock.set(d)
	case g.fallback == nil: // not running
	case d.IsZero():
		g.fallback.Stop()
	default:
		g.fallback.Reset(time.Until(d))
	}
}

// checkVIPs reopens the members whose interface was created again, and
// reconciles the VIPs with the kernel. It holds the lock throughout: the
// kernel's answer must describe the state it acts on, and listing one
// link's addresses takes well under a millisecond.
func (g *Group) checkVIPs() {
	g.locked(func() {
		g.retryStale()
		g.reconcileVIPs()
	})
	g.kickRouteCheck()
}

// retryStale reopens the members whose interface was created again, and
// lets them leave FAULT once they are.
func (g *Group) retryStale() {
	if g.rebindStale() {
		g.reevaluate()
	}
}

// deadline is the earliest timer of any member.
func (g *Group) deadline() time.Time {
	var d time.Time
	for _, mb := range g.members {
		if t := mb.m.Deadline(); !t.IsZero() && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	return d
}

// done is closed when the group's goroutine has ended.
func (g *Group) done() <-chan struct{} { return g.doneCh }
