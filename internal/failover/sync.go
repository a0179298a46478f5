package failover

import (
	"context"
	"fmt"
	"time"

	"github.com/ctha/ctha/vrrp"
)

// Timers of the bridge between the tables and the election.
const (
	// peerGrace: at start, the peer's absence counts only after this
	// long (it may simply not have been heard yet).
	peerGrace = 3 * time.Second
	// retryElection: a call to the election that failed is made again
	// after this long (the group's goroutine was busy or stopping).
	retryElection = time.Second
)

// Demotion reasons, as status shows them.
const (
	ReasonSyncDown = "sync peer unreachable"
	ReasonFailover = "failover"
)

// watchSync lifts the startup deferral once the peer's copy is complete
// (or startup_sync_timeout has passed), and demotes the group while the
// peer cannot be reached. It is told of changes by the tables (Changed),
// and keeps the election in step with what they say: a call that fails
// is made again, and the state it was to set is never assumed.
func (g *Group) watchSync(ctx context.Context, el Election, w peerWatch) {
	start := g.now()
	startup := time.NewTimer(g.cfg.StartupSyncTimeout)
	defer startup.Stop()
	grace := time.NewTimer(g.grace)
	defer grace.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	deferred, demoted := true, false // as the election has them
	startupOver, graceOver := false, false
	for {
		st := w.Status()
		failed := false
		if deferred && (st.BulkComplete || startupOver) {
			reason := "bulk copy complete"
			if !st.BulkComplete {
				reason = "startup_sync_timeout"
			}
			if err := el.SetDeferred(ctx, g.cfg.Group, false); err != nil {
				failed = true
				check(g.log, "allowing preemption", err)
			} else {
				deferred = false
				g.log.Info("preemption allowed", "reason", reason, "took", g.now().Sub(start),
					"copy_received", st.BulkReceived, "copy_expected", st.BulkExpected)
			}
		}
		if down := graceOver && !st.PeerUp; down != demoted {
			adjust := 0
			if down {
				adjust = vrrp.DemoteSyncDown
			}
			if err := el.Demote(ctx, g.cfg.Group, ReasonSyncDown, adjust); err != nil {
				failed = true
				check(g.log, "changing the demotion", err)
			} else if demoted = down; down {
				g.log.Warn("sync peer unreachable: demoted, not FAULT", "priority_adjust", adjust)
			} else {
				g.log.Info("sync peer back: demotion lifted")
			}
		}
		if failed {
			retry.Reset(g.retryElection)
		}
		select {
		case <-ctx.Done():
			return
		case <-w.Changed():
		case <-startup.C:
			startupOver = true
		case <-grace.C:
			graceOver = true
		case <-retry.C:
		}
	}
}

// Failover is `ctha failover`: the peer is given everything owed (at
// most 5 s), then a master resigns; the group stays demoted to the
// lowest priority until Failover with cancel.
func (g *Group) Failover(ctx context.Context, el Election, cancel bool) (string, error) {
	if cancel {
		return "demotion lifted", el.Demote(ctx, g.cfg.Group, ReasonFailover, 0)
	}
	drained := true
	if d := g.engine(); d != nil {
		dctx, stop := context.WithTimeout(ctx, 5*time.Second)
		drained = d.Drain(dctx)
		stop()
	}
	if err := el.Demote(ctx, g.cfg.Group, ReasonFailover, vrrp.DemoteFailover); err != nil {
		return "", err
	}
	was, err := el.Resign(ctx, g.cfg.Group)
	if err != nil {
		return "", err
	}
	msg := fmt.Sprintf("group %s resigned; demoted until `ctha failover --cancel`", g.cfg.Group)
	if !was {
		msg = fmt.Sprintf("group %s was not master; demoted until `ctha failover --cancel`", g.cfg.Group)
	}
	if !drained {
		msg += " (the peer had not acknowledged every state within 5s)"
	}
	return msg, nil
}

// DrainBeforeStop: a master about to stop gives the peer everything it
// owes (at most 5 s) before its priority-0 advert, so the peer takes over
// with a complete table.
func (g *Group) DrainBeforeStop(el Election) {
	d := g.engine()
	if d == nil {
		return
	}
	if st, _ := el.GroupState(g.cfg.Group); st != vrrp.Master {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	drained := d.Drain(ctx)
	g.log.Info("sync queue drained before resigning", "complete", drained, "took", time.Since(start))
}
