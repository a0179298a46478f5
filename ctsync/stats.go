package ctsync

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/ctha/ctha/ctsync/auth"
	"github.com/ctha/ctha/ctsync/proto"
)

// counters are the engine's statistics.
type counters struct {
	datagramsIn, datagramsOut, sendErrors atomic.Uint64
	records, events, overruns, resyncs    atomic.Uint64
	kernelWrites, kernelFailures, commits atomic.Uint64
	bulksSent, bulksReceived, splitBrains atomic.Uint64
	bulkRetries                           atomic.Uint64
	staleUpdates, adopted, refreshed      atomic.Uint64 // multiprimary
	snatOverlaps, snatOutOfRange          atomic.Uint64 // multiprimary
	natConflicts                          atomic.Uint64
	expired                               atomic.Uint64 // alarm mode
	mu                                    sync.Mutex
	drops                                 map[string]uint64
}

func (c *counters) drop(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.drops == nil {
		c.drops = map[string]uint64{}
	}
	c.drops[reason]++
}

// dropErr counts a datagram rejected by the envelope or the replay guard.
func (c *counters) dropErr(err error) {
	for _, m := range []struct {
		err    error
		reason string
	}{
		{auth.ErrMAC, "auth"}, {auth.ErrReplay, "replay"}, {auth.ErrReflected, "reflected"},
		{auth.ErrShort, "short"}, {auth.ErrVersion, "version"},
	} {
		if errors.Is(err, m.err) {
			c.drop(m.reason)
			return
		}
	}
	c.drop("other")
}

// Stats are the engine's counters, for `ctha stats`.
type Stats struct {
	DatagramsIn    uint64 `json:"datagrams_in"`
	DatagramsOut   uint64 `json:"datagrams_out"`
	SendErrors     uint64 `json:"send_errors"`
	Records        uint64 `json:"records_applied"`
	Events         uint64 `json:"kernel_events"`
	Overruns       uint64 `json:"netlink_overruns"`
	Resyncs        uint64 `json:"resyncs"`
	KernelWrites   uint64 `json:"kernel_writes"`
	KernelFailures uint64 `json:"kernel_write_failures"`
	Commits        uint64 `json:"commits"`
	BulksSent      uint64 `json:"bulks_sent"`
	BulksReceived  uint64 `json:"bulks_received"`
	BulksStale     uint64 `json:"bulks_stale"`  // the peer's copies begun for an earlier run of this node, discarded
	BulkRetries    uint64 `json:"bulk_retries"` // copies asked for or begun again after one was abandoned
	SplitBrains    uint64 `json:"split_brains"`
	LinkSwitches   uint64 `json:"link_switches"`
	Expired        uint64 `json:"expired"` // alarm mode: peer states not refreshed in time
	// Multiprimary: the peer's updates behind this node's own state of a
	// flow (not written), the peer's flows adopted (this node's traffic
	// refreshed them), and mirrors written again to keep them alive.
	StaleUpdates uint64 `json:"stale_updates"`
	Adopted      uint64 `json:"adopted"`
	Refreshed    uint64 `json:"refreshed"`
	// SNATOverlaps counts the peers found announcing an SNAT port range
	// that overlaps this node's; SNATOutOfRange, this node's new flows
	// translated to a port outside its range; NATConflicts, the peers'
	// flows not written because a flow of this node's has the same
	// translated tuple (the live local flow is kept).
	SNATOverlaps   uint64            `json:"snat_overlaps"`
	SNATOutOfRange uint64            `json:"snat_out_of_range"`
	NATConflicts   uint64            `json:"nat_conflicts"`
	Drops          map[string]uint64 `json:"drops"`
	// Filtered counts the flow events not replicated, by reason; the
	// kernel drops most before they are read (see filter.kernelFilter).
	Filtered map[string]uint64 `json:"filtered"`
	Protocol ProtocolStats     `json:"protocol"`
}

// ProtocolStats are the reliable protocol's counters (proto.Stats).
type ProtocolStats struct {
	DataSent       uint64 `json:"messages_sent"` // data and bulk messages, first sends
	Resent         uint64 `json:"resent"`        // messages sent again (NACKed or timed out)
	AcksSent       uint64 `json:"acks_sent"`
	NacksSent      uint64 `json:"nacks_sent"` // rounds of NACKs
	KeepalivesSent uint64 `json:"keepalives_sent"`
	Delivered      uint64 `json:"delivered"`     // messages delivered in order
	Duplicates     uint64 `json:"duplicates"`    // messages received twice
	OutOfWindow    uint64 `json:"out_of_window"` // messages too far ahead to buffer
	Jumps          uint64 `json:"jumps"`         // the peer gave up resending: a bulk copy follows
	GaveUp         uint64 `json:"gave_up"`       // this node gave up on what it owed the peer
	Malformed      uint64 `json:"malformed"`     // payloads that did not parse
}

func protocolStats(p proto.Stats) ProtocolStats {
	return ProtocolStats{DataSent: p.DataSent, Resent: p.Resent, AcksSent: p.AcksSent, NacksSent: p.NacksSent,
		KeepalivesSent: p.KeepalivesSent, Delivered: p.Delivered, Duplicates: p.Duplicates,
		OutOfWindow: p.OutOfWindow, Jumps: p.Jumps, GaveUp: p.GaveUp, Malformed: p.Malformed}
}

// Stats returns the counters.
func (e *Engine) Stats(ctx context.Context) Stats {
	c := &e.stats
	s := Stats{
		DatagramsIn: c.datagramsIn.Load(), DatagramsOut: c.datagramsOut.Load(), SendErrors: c.sendErrors.Load(),
		Records: c.records.Load(), Events: c.events.Load(), Overruns: c.overruns.Load(), Resyncs: c.resyncs.Load(),
		KernelWrites: c.kernelWrites.Load(), KernelFailures: c.kernelFailures.Load(), Commits: c.commits.Load(),
		BulksSent: c.bulksSent.Load(), BulksReceived: c.bulksReceived.Load(), SplitBrains: c.splitBrains.Load(),
		BulkRetries:  c.bulkRetries.Load(),
		LinkSwitches: e.ls.switches.Load(), Expired: c.expired.Load(),
		StaleUpdates: c.staleUpdates.Load(), Adopted: c.adopted.Load(), Refreshed: c.refreshed.Load(),
		SNATOverlaps: c.snatOverlaps.Load(), SNATOutOfRange: c.snatOutOfRange.Load(), NATConflicts: c.natConflicts.Load(),
		Drops: map[string]uint64{}, Filtered: e.flt.counts(),
	}
	c.mu.Lock()
	for k, v := range c.drops {
		s.Drops[k] = v
	}
	c.mu.Unlock()
	for _, r := range []string{"auth", "replay", "reflected", "short", "version", "oversize", "unknown_source", "malformed", "bad_record"} {
		s.Drops[r] += 0
	}
	var p proto.Stats // every peer's
	e.do(ctx, func() {
		for _, pr := range e.peers {
			if pr.ctd != nil {
				p.Add(ctdStats(pr.ctd.ep.Stats())) // ctdpeer.go
				continue
			}
			p.Add(pr.ep.Stats())
		}
	})
	s.Protocol, s.BulksStale = protocolStats(p), p.BulksStale
	return s
}
