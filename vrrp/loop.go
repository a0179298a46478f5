package vrrp

import (
	"context"
	"time"
)

// run is the group's goroutine: it owns the members' machines.
func (g *Group) run(ctx context.Context) {
	g.ctx = ctx
	defer close(g.doneCh)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()

	g.dispatchAll(Event{Kind: EvStartup})
	g.reevaluate() // initial priorities; a fault found here follows the startup
	for {
		g.drain()
		if d := g.deadline(); d.IsZero() {
			timer.Stop()
		} else {
			timer.Reset(time.Until(d))
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
			g.dispatch(in.member, Event{Kind: EvAdvert, From: in.src, Priority: in.ad.Priority, Interval: in.ad.Interval})
		case <-timer.C:
			g.dispatchAll(Event{Kind: EvTimer})
		case u := <-g.track:
			g.applyTracker(u)
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
