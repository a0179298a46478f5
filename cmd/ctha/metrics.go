package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/ctha/ctha/cfg"
	"github.com/ctha/ctha/ctsync"
	"github.com/ctha/ctha/internal/failover"
	"github.com/ctha/ctha/vrrp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// collector turns the engines' state into Prometheus metrics at scrape
// time: there is no second set of counters to keep in step.
type collector struct{ d *daemonState }

var (
	descGroupState    = prometheus.NewDesc("ctha_group_state", "Sync group state: 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT.", []string{"group"}, nil)
	descGroupDemoted  = prometheus.NewDesc("ctha_group_demoted", "1 while the sync group is demoted for the reason (failover: `ctha failover`; sync peer unreachable), 0 otherwise.", []string{"group", "reason"}, nil)
	descInstanceState = prometheus.NewDesc("ctha_vrrp_state", "VRRP instance state: 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT.", []string{"instance"}, nil)
	descPriority      = prometheus.NewDesc("ctha_vrrp_effective_priority", "Priority after trackers and demotions.", []string{"instance"}, nil)
	descTransitions   = prometheus.NewDesc("ctha_vrrp_transitions_total", "State transitions.", []string{"instance"}, nil)
	descAdverts       = prometheus.NewDesc("ctha_vrrp_adverts_total", "VRRP adverts by direction.", []string{"instance", "direction"}, nil)
	descVRRPDrops     = prometheus.NewDesc("ctha_vrrp_drops_total", "Received VRRP packets dropped, by reason (auth: failed VRRPv2 authentication; sequence: an AH sequence number not above the last).", []string{"instance", "reason"}, nil)
	descNotifySkipped = prometheus.NewDesc("ctha_notify_skipped_total", "Transitions (the group's and its instances') the notify commands did not run for: the group or instance had moved on before the previous command finished.", []string{"group"}, nil)
	descVIPsRestored  = prometheus.NewDesc("ctha_vrrp_vips_restored_total", "Virtual IPs removed under the master by someone else and put back.", []string{"instance"}, nil)
	descTakeover      = prometheus.NewDesc("ctha_vrrp_last_takeover_seconds", "Master_Down timer to first gratuitous ARP/NA of the last takeover.", []string{"instance"}, nil)
	descEntries       = prometheus.NewDesc("ctha_sync_cache_entries", "Entries of the internal (this node's) and external (the peer's) caches.", []string{"cache"}, nil)
	descDatagrams     = prometheus.NewDesc("ctha_sync_datagrams_total", "Sync datagrams by direction.", []string{"direction"}, nil)
	descSyncDrops     = prometheus.NewDesc("ctha_sync_drops_total", "Sync datagrams dropped, by reason (auth: failed authentication).", []string{"reason"}, nil)
	descRetransmits   = prometheus.NewDesc("ctha_sync_retransmits_total", "Reliable messages sent again.", nil, nil)
	descOverruns      = prometheus.NewDesc("ctha_sync_netlink_overruns_total", "Conntrack event overruns (ENOBUFS), each followed by a resync.", nil, nil)
	descKernelFail    = prometheus.NewDesc("ctha_sync_kernel_write_failures_total", "Conntrack writes the kernel refused.", nil, nil)
	descCommit        = prometheus.NewDesc("ctha_sync_last_commit_seconds", "Duration of the last commit of the external cache.", nil, nil)
	descCommitFailed  = prometheus.NewDesc("ctha_sync_last_commit_failed", "Entries the last commit could not write.", nil, nil)
	descLinkUp        = prometheus.NewDesc("ctha_sync_link_up", "1 while the peer is heard on the sync link and hears this node.", []string{"link"}, nil)
	descLinkActive    = prometheus.NewDesc("ctha_sync_link_active", "1 for the sync link that carries the traffic.", []string{"link"}, nil)
	descLinkSwitches  = prometheus.NewDesc("ctha_sync_link_switches_total", "Times the traffic moved to another sync link.", nil, nil)
	descBulksStale    = prometheus.NewDesc("ctha_sync_bulks_stale_total", "The peer's complete copies discarded: begun for an earlier run of this node.", nil, nil)
	descBulkRetries   = prometheus.NewDesc("ctha_sync_bulk_retries_total", "Complete copies of the peer's table asked for or begun again after one was abandoned.", nil, nil)
	descNATConflicts  = prometheus.NewDesc("ctha_sync_nat_conflicts_total", "Peers' flows not written: a local flow has the same translated tuple (snat_port_range).", nil, nil)
	descSNATOutside   = prometheus.NewDesc("ctha_sync_snat_out_of_range_total", "This node's new flows translated to a port outside its snat_port_range.", nil, nil)
	descSNATOverlap   = prometheus.NewDesc("ctha_sync_snat_overlap", "1 while a peer's SNAT port range overlaps this node's.", nil, nil)

	// defer (multiprimary), present while it is on.
	descDeferHeld     = prometheus.NewDesc("ctha_sync_defer_held_total", "Packets held until every live peer had written their state (defer).", nil, nil)
	descDeferReleased = prometheus.NewDesc("ctha_sync_defer_released_total", "Held packets released, by reason: acked (every live peer wrote the state) or timeout (defer passed).", []string{"reason"}, nil)
	descDeferNot      = prometheus.NewDesc("ctha_sync_defer_not_deferred_total", "Queued packets passed at once: no live peer, a source-NATed flow without the conntrack glue, this node's own traffic.", nil, nil)
	descDeferPending  = prometheus.NewDesc("ctha_sync_defer_pending", "Packets held now.", nil, nil)
	descDeferP99      = prometheus.NewDesc("ctha_sync_defer_hold_p99_seconds", "99th percentile of the time the latest held packets waited.", nil, nil)
	descDeferRules    = prometheus.NewDesc("ctha_sync_defer_reinstalls_total", "ctha's nftables tables found missing or changed (a flush ruleset) and put back.", nil, nil)
)

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descGroupState, descGroupDemoted, descNotifySkipped, descInstanceState, descPriority, descTransitions, descAdverts,
		descVRRPDrops, descVIPsRestored, descTakeover, descEntries, descDatagrams, descSyncDrops,
		descRetransmits, descOverruns, descKernelFail, descCommit, descCommitFailed,
		descLinkUp, descLinkActive, descLinkSwitches, descBulksStale, descBulkRetries,
		descNATConflicts, descSNATOutside, descSNATOverlap,
		descDeferHeld, descDeferReleased, descDeferNot, descDeferPending, descDeferP99, descDeferRules} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	if r := c.d.vrrp; r != nil {
		groups, instances := r.Status()
		for _, g := range groups {
			gauge(descGroupState, float64(g.State), g.Name)
		}
		collectDemoted(ch, groups)
		for name, g := range c.d.groups {
			counter(descNotifySkipped, g.NotifySkipped(), name)
		}
		for _, in := range instances {
			gauge(descInstanceState, float64(in.State), in.Name)
			gauge(descPriority, float64(in.EffectivePriority), in.Name)
			gauge(descTakeover, in.TimerToGARP.Seconds(), in.Name)
		}
		for _, s := range r.Stats() {
			counter(descTransitions, s.Transitions, s.Instance)
			counter(descVIPsRestored, s.VIPsRestored, s.Instance)
			counter(descAdverts, s.AdvertsSent, s.Instance, "sent")
			counter(descAdverts, s.AdvertsReceived, s.Instance, "received")
			for reason, n := range s.Drops {
				counter(descVRRPDrops, n, s.Instance, reason)
			}
		}
	}
	if e := c.d.sync; e != nil {
		st := e.Status()
		gauge(descEntries, float64(st.Internal), "internal")
		gauge(descEntries, float64(st.External), "external")
		gauge(descSNATOverlap, b2f(st.SNATOverlap))
		if df := st.Defer; df != nil {
			counter(descDeferHeld, df.Held)
			counter(descDeferReleased, df.ReleasedAcked, "acked")
			counter(descDeferReleased, df.ReleasedTimeout, "timeout")
			counter(descDeferNot, df.NotDeferred)
			gauge(descDeferPending, float64(df.Pending))
			gauge(descDeferP99, df.P99.Seconds())
			counter(descDeferRules, df.Reinstalls)
		}
		for _, l := range st.Links {
			gauge(descLinkUp, b2f(l.Up), l.Name)
			gauge(descLinkActive, b2f(l.Active), l.Name)
		}
		if lc := st.LastCommit; lc != nil {
			gauge(descCommit, lc.Took.Seconds())
			gauge(descCommitFailed, float64(lc.Failed))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s := e.Stats(ctx)
		cancel()
		counter(descDatagrams, s.DatagramsIn, "received")
		counter(descDatagrams, s.DatagramsOut, "sent")
		for reason, n := range s.Drops {
			counter(descSyncDrops, n, reason)
		}
		counter(descRetransmits, s.Protocol.Resent)
		counter(descOverruns, s.Overruns)
		counter(descKernelFail, s.KernelFailures)
		counter(descLinkSwitches, s.LinkSwitches)
		counter(descBulksStale, s.BulksStale)
		counter(descBulkRetries, s.BulkRetries)
		counter(descNATConflicts, s.NATConflicts)
		counter(descSNATOutside, s.SNATOutOfRange)
	}
}

// demotionReasons are the reasons a group is demoted for, each a series
// of ctha_group_demoted even while not in force, so that alerts and
// dashboards find them in every scrape.
var demotionReasons = []string{failover.ReasonFailover, failover.ReasonSyncDown}

// collectDemoted sends ctha_group_demoted for the sync groups: 1 for each
// reason in force (GroupStatus.Demoted lists them, comma-separated), 0
// for the known reasons that are not.
func collectDemoted(ch chan<- prometheus.Metric, groups []vrrp.GroupStatus) {
	for _, g := range groups {
		in := map[string]bool{}
		if g.Demoted != "" {
			for _, r := range strings.Split(g.Demoted, ", ") {
				in[r] = true
			}
		}
		for _, r := range demotionReasons {
			ch <- prometheus.MustNewConstMetric(descGroupDemoted, prometheus.GaugeValue, b2f(in[r]), g.Name, r)
			delete(in, r)
		}
		for r := range in { // a reason this list does not know yet
			ch <- prometheus.MustNewConstMetric(descGroupDemoted, prometheus.GaugeValue, 1, g.Name, r)
		}
	}
}

// The sync health metrics: in primary-backup one series each, without
// labels (as always: dashboards and alerts read them); in multiprimary one
// per peer and one per sync group, labelled, and no unlabelled one, so
// that sum() and count() over a scrape mean what they say. The client's
// registry refuses two descriptions of one name with different labels,
// so these come from a collector that describes nothing (an unchecked
// one): the registry then only checks that each series is unique.
var (
	descPeerUp = prometheus.NewDesc("ctha_sync_peer_up",
		"1 while the sync peer answers (multiprimary: labelled by peer).", nil, nil)
	descPeerUpBy = prometheus.NewDesc("ctha_sync_peer_up",
		"1 while the sync peer answers (multiprimary: labelled by peer).", []string{"peer"}, nil)
	descSplitBrain = prometheus.NewDesc("ctha_sync_split_brain",
		"1 while another node claims MASTER too (primary-backup: the pair; multiprimary: labelled by sync group).", nil, nil)
	descSplitBrainBy = prometheus.NewDesc("ctha_sync_split_brain",
		"1 while another node claims MASTER too (primary-backup: the pair; multiprimary: labelled by sync group).", []string{"group"}, nil)

	// The peer's complete copy (its bulk), as the status document's
	// bulk_complete, bulk_received and bulk_expected.
	bulkComplete = peerDescs("ctha_sync_bulk_complete",
		"1 while this node holds a complete copy of the peer's table (multiprimary: labelled by peer).")
	bulkReceived = peerDescs("ctha_sync_bulk_received_entries",
		"Entries of the peer's complete copy under way, or else of the last one (multiprimary: labelled by peer).")
	bulkExpected = peerDescs("ctha_sync_bulk_expected_entries",
		"Entries the peer's complete copy holds, as the peer announced them; 0 when it does not say (multiprimary: labelled by peer).")
)

// peerDesc is a sync health metric's two descriptions: without labels
// (primary-backup) and by peer (multiprimary).
type peerDesc struct{ plain, byPeer *prometheus.Desc }

func peerDescs(name, help string) peerDesc {
	return peerDesc{prometheus.NewDesc(name, help, nil, nil), prometheus.NewDesc(name, help, []string{"peer"}, nil)}
}

// syncHealth collects the sync health metrics (unchecked: see above).
type syncHealth struct{ d *daemonState }

func (syncHealth) Describe(chan<- *prometheus.Desc) {}

func (h syncHealth) Collect(ch chan<- prometheus.Metric) {
	if st, ok := h.d.engineStatus(); ok {
		collectSyncHealth(ch, st, h.d.conf.Load())
	}
}

// collectSyncHealth sends the sync health metrics of the engine's status
// st on a node configured by conf.
func collectSyncHealth(ch chan<- prometheus.Metric, st ctsync.Status, conf *cfg.Config) {
	gauge := func(d *prometheus.Desc, v bool, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, b2f(v), labels...)
	}
	value := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	if !conf.Multiprimary() {
		gauge(descPeerUp, st.PeerUp)
		gauge(descSplitBrain, st.SplitBrain)
		gauge(bulkComplete.plain, st.BulkComplete)
		value(bulkReceived.plain, st.BulkReceived)
		value(bulkExpected.plain, st.BulkExpected)
		return
	}
	for _, p := range st.Peers {
		name := p.Node
		if name == "" { // not heard yet
			name = p.Address
		}
		if name != "" {
			gauge(descPeerUpBy, p.Up, name)
			gauge(bulkComplete.byPeer, p.BulkComplete, name)
			value(bulkReceived.byPeer, p.BulkReceived, name)
			value(bulkExpected.byPeer, p.BulkExpected, name)
		}
	}
	for _, g := range conf.SyncGroups {
		gauge(descSplitBrainBy, groupSplit(conf.Multiprimary(), st, g), g.Name)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// serveMetrics serves /metrics on addr until ctx is done.
func (d *daemonState) serveMetrics(ctx context.Context, addr string) error {
	reg := prometheus.NewRegistry()
	// The runtime's and the process's own figures too (go_goroutines,
	// process_resident_memory_bytes, ...), as any Go exporter has them.
	reg.MustRegister(collector{d}, syncHealth{d}, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
