package main

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/cfg"
	"github.com/ctha/ctha/ctsync"
	"github.com/ctha/ctha/internal/control"
	"github.com/ctha/ctha/vrrp"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// engineStatus is an engine's status as the status document and the
// metrics read it: one peer, heard 250 ms before now.
func engineStatus(now time.Time, topology ctsync.Topology) ctsync.Status {
	return ctsync.Status{
		Topology: topology, PeerUp: true, BulkComplete: true, PeerRole: ctsync.RoleBackup,
		BulkReceived: 1200, Internal: 1234, External: 1200,
		Peers: []ctsync.PeerStatus{{Node: "fw2", Address: "10.10.3.2", Up: true, BulkComplete: true,
			Entries: 1200, BulkReceived: 1200, LastSeen: now.Add(-250 * time.Millisecond), Role: ctsync.RoleBackup}},
	}
}

// syncJSON is the sync part of the status document made from es, as
// `ctha status --json` prints it, decoded into a map.
func syncJSON(t *testing.T, topology string, es ctsync.Status, now time.Time) map[string]any {
	t.Helper()
	ss := &control.SyncStatus{Mode: cfg.ModeReliable, Cache: cfg.CacheDirect, Topology: topology,
		Links: []control.LinkStatus{}, Peers: []control.PeerStatus{}}
	syncStatus(ss, es, now)
	b, err := json.Marshal(control.Status{Sync: ss})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Sync map[string]any `json:"sync"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Sync
}

// TestStatusTopologies: the sync part of the status document in both
// topologies: topology and peers in both; peer_role a string in
// primary-backup (as before), null in multiprimary; last_seen_ms null for
// a peer never heard, bulk_expected omitted when unknown.
func TestStatusTopologies(t *testing.T) {
	now := time.Now()
	pb := syncJSON(t, cfg.TopologyPrimaryBackup, engineStatus(now, ctsync.PrimaryBackup), now)
	// What primary-backup had before topologies, unchanged, and what is new.
	before := []string{"mode", "cache", "running", "peer_up", "peer_role", "bulk_complete", "bulk_received",
		"internal_entries", "external_entries", "links", "last_commit", "split_brain", "key_fingerprint"}
	added := []string{"topology", "protocol", "peers", "snat_port_range", "snat_overlap", "defer"}
	var keys []string
	for k := range pb {
		keys = append(keys, k)
	}
	if diff := cmp.Diff(slices.Sorted(slices.Values(append(before, added...))), slices.Sorted(slices.Values(keys))); diff != "" {
		t.Errorf("primary-backup sync fields (-want +got):\n%s", diff)
	}
	if pb["peer_role"] != "BACKUP" || pb["topology"] != "primary-backup" || pb["peer_up"] != true {
		t.Errorf("primary-backup: peer_role %v, topology %v, peer_up %v", pb["peer_role"], pb["topology"], pb["peer_up"])
	}
	wantPeer := map[string]any{"node": "fw2", "address": "10.10.3.2", "up": true, "bulk_complete": true,
		"entries": 1200.0, "last_seen_ms": 250.0, "bulk_received": 1200.0, "snat_port_range": ""}
	if diff := cmp.Diff([]any{wantPeer}, pb["peers"]); diff != "" {
		t.Errorf("primary-backup peers (-want +got):\n%s", diff)
	}

	es := engineStatus(now, ctsync.Multiprimary)
	es.PeerRole, es.PeerUp, es.SplitGroups = ctsync.RoleUnknown, false, []string{"b"}
	es.Peers[0] = ctsync.PeerStatus{Address: "10.10.3.2", BulkReceived: 10, BulkExpected: 500}
	mp := syncJSON(t, cfg.TopologyMultiprimary, es, now)
	if v, ok := mp["peer_role"]; !ok || v != nil {
		t.Errorf("multiprimary: peer_role %v (present %v), want null", v, ok)
	}
	if mp["topology"] != "multiprimary" || mp["peer_up"] != false || mp["split_brain"] != true {
		t.Errorf("multiprimary: topology %v, peer_up %v, split_brain %v (group b split)", mp["topology"], mp["peer_up"], mp["split_brain"])
	}
	wantPeer = map[string]any{"node": "", "address": "10.10.3.2", "up": false, "bulk_complete": false,
		"entries": 0.0, "last_seen_ms": nil, "bulk_received": 10.0, "bulk_expected": 500.0, "snat_port_range": ""}
	if diff := cmp.Diff([]any{wantPeer}, mp["peers"]); diff != "" {
		t.Errorf("multiprimary peers (-want +got):\n%s", diff)
	}
	// The client reads null as no role.
	var back control.SyncStatus
	b, _ := json.Marshal(mp)
	if err := json.Unmarshal(b, &back); err != nil || back.PeerRole != "" || back.Topology != "multiprimary" {
		t.Errorf("decoded: %+v, %v", back, err)
	}
}

// TestGroupSplit: groups[].split_brain, from the engine's status.
func TestGroupSplit(t *testing.T) {
	fw := cfg.SyncGroup{Name: "fw", Conntrack: true}
	a, b := cfg.SyncGroup{Name: "a"}, cfg.SyncGroup{Name: "b"}
	for _, tc := range []struct {
		name  string
		multi bool
		es    ctsync.Status
		group cfg.SyncGroup
		want  bool
	}{
		{"primary-backup split: the conntrack group", false, ctsync.Status{SplitBrain: true}, fw, true},
		{"primary-backup split: another group", false, ctsync.Status{SplitBrain: true}, a, false},
		{"primary-backup, no split", false, ctsync.Status{}, fw, false},
		{"multiprimary: the split group", true, ctsync.Status{SplitGroups: []string{"b"}}, b, true},
		{"multiprimary: another group", true, ctsync.Status{SplitGroups: []string{"b"}}, a, false},
	} {
		if got := groupSplit(tc.multi, tc.es, tc.group); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	// Without an engine, status says no split, and the sync part says the
	// topology and no peer.
	d := &daemonState{started: time.Now()}
	conf := cfg.Config{NodeName: "fw1", SyncGroups: []cfg.SyncGroup{a, b},
		Sync: &cfg.Sync{Mode: cfg.ModeReliable, Cache: cfg.CacheDirect, Topology: cfg.TopologyMultiprimary}}
	d.conf.Store(&conf)
	st := d.status()
	if len(st.Groups) != 2 || st.Groups[0].SplitBrain || st.Groups[1].SplitBrain {
		t.Errorf("groups %+v", st.Groups)
	}
	if st.Sync == nil || st.Sync.Topology != "multiprimary" || st.Sync.Peers == nil || len(st.Sync.Peers) != 0 {
		t.Errorf("sync %+v, want topology multiprimary and an empty list of peers", st.Sync)
	}
}

// TestPrintStatusMultiprimary: plain status shows the topology, one line
// per peer, and a group's split brain.
func TestPrintStatusMultiprimary(t *testing.T) {
	seen := 250.0
	st := control.Status{Node: "fw1",
		Groups: []control.GroupStatus{{Name: "a", State: "MASTER", SplitBrain: true}, {Name: "b", State: "BACKUP"}},
		Sync: &control.SyncStatus{Mode: "reliable", Cache: "direct", Topology: "multiprimary", Running: true, PeerUp: true, SplitBrain: true,
			Peers: []control.PeerStatus{{Node: "fw2", Address: "10.10.3.2", Up: true, BulkComplete: true, Entries: 1200, LastSeenMS: &seen}}}}
	var b bytes.Buffer
	printStatus(&b, st, time.Now())
	for _, want := range []string{"sync multiprimary reliable/direct: sync peer up",
		"peer fw2 (10.10.3.2): up, 1200 flows, copy held, heard 250ms ago",
		"SPLIT BRAIN: another node is master too"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Count(b.String(), "SPLIT BRAIN") != 1 {
		t.Errorf("want one SPLIT BRAIN (group a's):\n%s", b.String())
	}
	st.Sync.Peers[0] = control.PeerStatus{Address: "10.10.3.2"}
	b.Reset()
	printStatus(&b, st, time.Now())
	if !strings.Contains(b.String(), "peer - (10.10.3.2): down, 0 flows, copy awaited, never heard") {
		t.Errorf("a peer never heard:\n%s", b.String())
	}
}

// healthOf is the sync health collector on a fixed engine status.
type healthOf struct {
	st   ctsync.Status
	conf *cfg.Config
}

func (healthOf) Describe(chan<- *prometheus.Desc) {}
func (h healthOf) Collect(ch chan<- prometheus.Metric) {
	collectSyncHealth(ch, h.st, h.conf)
}

// scrape registers the collectors as serveMetrics does and returns the
// /metrics page.
func scrape(t *testing.T, cs ...prometheus.Collector) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(cs...)
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// TestMetricsSyncHealth: ctha_sync_peer_up, ctha_sync_split_brain and the
// bulk copy's ctha_sync_bulk_* keep their series without labels in
// primary-backup; in multiprimary they have one per peer and per sync
// group instead.
func TestMetricsSyncHealth(t *testing.T) {
	now := time.Now()
	pb := &cfg.Config{SyncGroups: []cfg.SyncGroup{{Name: "fw", Conntrack: true}, {Name: "mgmt"}},
		Sync: &cfg.Sync{Topology: cfg.TopologyPrimaryBackup}}
	es := engineStatus(now, ctsync.PrimaryBackup)
	es.SplitBrain = true
	mp := &cfg.Config{SyncGroups: []cfg.SyncGroup{{Name: "a"}, {Name: "b"}},
		Sync: &cfg.Sync{Topology: cfg.TopologyMultiprimary}}
	esMP := engineStatus(now, ctsync.Multiprimary)
	esMP.PeerUp, esMP.SplitGroups = false, []string{"b"}
	esMP.Peers[0] = ctsync.PeerStatus{Address: "10.10.3.2", BulkReceived: 10}
	esMP.Peers = append(esMP.Peers, ctsync.PeerStatus{Node: "fw3", Address: "10.10.3.3", Up: true, BulkComplete: true,
		BulkReceived: 7, BulkExpected: 7})
	for _, tc := range []struct {
		name string
		h    healthOf
		want []string
	}{
		{"primary-backup", healthOf{es, pb}, []string{
			"ctha_sync_peer_up 1", "ctha_sync_split_brain 1",
			"ctha_sync_bulk_complete 1", "ctha_sync_bulk_received_entries 1200", "ctha_sync_bulk_expected_entries 0"}},
		{"multiprimary", healthOf{esMP, mp}, []string{
			`ctha_sync_peer_up{peer="10.10.3.2"} 0`, `ctha_sync_peer_up{peer="fw3"} 1`,
			`ctha_sync_split_brain{group="a"} 0`, `ctha_sync_split_brain{group="b"} 1`,
			`ctha_sync_bulk_complete{peer="10.10.3.2"} 0`, `ctha_sync_bulk_complete{peer="fw3"} 1`,
			`ctha_sync_bulk_received_entries{peer="10.10.3.2"} 10`, `ctha_sync_bulk_received_entries{peer="fw3"} 7`,
			`ctha_sync_bulk_expected_entries{peer="10.10.3.2"} 0`, `ctha_sync_bulk_expected_entries{peer="fw3"} 7`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// With the daemon's other collector, as served.
			page := scrape(t, collector{&daemonState{}}, tc.h)
			var got []string
			for _, l := range strings.Split(page, "\n") {
				if strings.HasPrefix(l, "ctha_sync_peer_up") || strings.HasPrefix(l, "ctha_sync_split_brain") ||
					strings.HasPrefix(l, "ctha_sync_bulk_") && !strings.HasPrefix(l, "ctha_sync_bulk_retries") {
					got = append(got, l)
				}
			}
			if diff := cmp.Diff(slices.Sorted(slices.Values(tc.want)), slices.Sorted(slices.Values(got))); diff != "" {
				t.Errorf("series (-want +got):\n%s\npage:\n%s", diff, page)
			}
			for _, name := range []string{"ctha_sync_peer_up", "ctha_sync_bulk_complete"} {
				if n := strings.Count(page, "# TYPE "+name+" gauge"); n != 1 {
					t.Errorf("%s is %d families, want 1:\n%s", name, n, page)
				}
			}
		})
	}
}

// demotedOf collects ctha_group_demoted of fixed group statuses.
type demotedOf []vrrp.GroupStatus

func (demotedOf) Describe(chan<- *prometheus.Desc) {}
func (g demotedOf) Collect(ch chan<- prometheus.Metric) {
	collectDemoted(ch, g)
}

// TestMetricsDemoted: ctha_group_demoted has a series per group and known
// reason, 1 for the reasons in force, and one for a reason it does not
// know yet.
func TestMetricsDemoted(t *testing.T) {
	page := scrape(t, demotedOf{
		{Name: "fw"},
		{Name: "dmz", Demoted: "failover, sync peer unreachable"},
		{Name: "mgmt", Demoted: "new reason"},
	})
	var got []string
	for _, l := range strings.Split(page, "\n") {
		if strings.HasPrefix(l, "ctha_group_demoted{") {
			got = append(got, l)
		}
	}
	want := []string{
		`ctha_group_demoted{group="dmz",reason="failover"} 1`,
		`ctha_group_demoted{group="dmz",reason="sync peer unreachable"} 1`,
		`ctha_group_demoted{group="fw",reason="failover"} 0`,
		`ctha_group_demoted{group="fw",reason="sync peer unreachable"} 0`,
		`ctha_group_demoted{group="mgmt",reason="failover"} 0`,
		`ctha_group_demoted{group="mgmt",reason="new reason"} 1`,
		`ctha_group_demoted{group="mgmt",reason="sync peer unreachable"} 0`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("series (-want +got):\n%s\npage:\n%s", diff, page)
	}
}
