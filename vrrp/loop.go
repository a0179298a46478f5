package vrrp

import (
	"context"
	"time"
)

// run is the group's goroutine: it owns the members' machines.
func (g *Group) run(ctx context.Context) {
	g.ctx = ctx
	defer close(g.doneCh)
	var timer *preciseTimer
	if !g.runtimeTimers {
		var err error
		if timer, err = newPreciseTimer(); err != nil {
			// Without a timerfd, a runtime timer is late by up to a
			// millisecond; VRRP still works.
			g.log.Warn("falling back to runtime timers", "err", err)
			timer = nil
		}
	}
	fallback := time.NewTimer(time.Hour)
	defer fallback.Stop()
	var tick <-chan struct{}
	if timer != nil {
		defer timer.Close()
		tick = timer.C
	}

	if g.deferred {
		g.dispatchAll(Event{Kind: EvDefer, Defer: true})
	}
	g.dispatchAll(Event{Kind: EvStartup})
	g.reevaluate() // initial priorities; a fault found here follows the startup
	vipCheck := time.NewTicker(vipCheckEvery)
	defer vipCheck.Stop()
	for {
		g.drain()
		d := g.deadline()
		switch {
		case timer != nil:
			if err := timer.Reset(d); err != nil {
				g.log.Error("arming the VRRP timer failed", "err", err)
			}
		case d.IsZero():
			fallback.Stop()
		default:
			fallback.Reset(time.Until(d))
		}
		select {
		case <-ctx.Done():
			if g.hookCancel != nil {
				g.hookCancel()
				g.hookCancel = nil
			}
			g.dispatchAll(Event{Kind: EvShutdown})
			g.drain()
			g.hooksWG.Wait()
			return
		case in := <-g.in:
			// Master_Down counts from when the advert arrived, not from
			// when this goroutine got to it.
			g.dispatchAt(in.member, Event{Kind: EvAdvert, From: in.src, Priority: in.ad.Priority, Interval: in.ad.Interval}, in.at)
		case <-tick:
			g.dispatchAll(Event{Kind: EvTimer})
		case <-fallback.C:
			g.dispatchAll(Event{Kind: EvTimer})
		case u := <-g.track:
			g.applyTracker(u)
		case <-g.addrs:
			g.retryStale()
			g.reconcileVIPs()
		case <-vipCheck.C:
			g.retryStale()
			g.reconcileVIPs()
		case r := <-g.hookDone:
			g.hookFinished(r)
		case f := <-g.ctl:
			f()
		}
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

// retryStale reopens the members whose interface was created again, and
// lets them leave FAULT once they are.
func (g *Group) retryStale() {
	if g.rebindStale() {
		g.reevaluate()
	}
}
