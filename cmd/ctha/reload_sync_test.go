package main

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctha/ctha/cfg"
	"github.com/ctha/ctha/ctsync"
	"github.com/ctha/ctha/internal/failover"
	"github.com/ctha/ctha/internal/sim"
)

// TestReloadSync: what a reload does with each kind of conntrack_sync
// change, on an engine over package sim's table and network: a new key
// or filter replaces the engine, timers of the choreography alone do
// not, a topology or cache change waits for a restart, and a link that
// cannot open leaves the running engine and configuration as they were.
func TestReloadSync(t *testing.T) {
	base := func() *cfg.Config {
		s := &cfg.Sync{Mode: cfg.ModeReliable, Cache: cfg.CacheDirect, Topology: cfg.TopologyPrimaryBackup,
			Links: []cfg.Link{{Name: "sync0", Interface: "sync", Local: netip.MustParseAddr("10.255.0.1"),
				Peer: netip.MustParseAddr("10.255.0.2"), Peers: []netip.Addr{netip.MustParseAddr("10.255.0.2")}, Port: 3780}},
			CommitTimeout: 5 * time.Second, PurgeDelay: time.Minute, StartupSyncTimeout: 30 * time.Second}
		s.Key[0] = 1
		return &cfg.Config{NodeName: "fw1", Sync: s}
	}
	tests := []struct {
		name        string
		change      func(c *cfg.Config)
		replaced    bool
		changes     string // in the one change reported; "": none
		restart     string // in the one restart reported; "": none
		err         string // in the error; "": none
		keepRunning bool   // the running configuration stays
	}{
		{name: "unchanged", change: func(*cfg.Config) {}},
		{name: "rotated key", change: func(c *cfg.Config) { c.Sync.Key[0] = 2 },
			replaced: true, changes: "conntrack_sync: key; sync engine replaced"},
		{name: "filter and port", change: func(c *cfg.Config) {
			c.Sync.Filter.Protocols = []string{"tcp"}
			c.Sync.Links[0].Port = 3790
		}, replaced: true, changes: "conntrack_sync: links, filter; sync engine replaced"},
		{name: "VIPs only", change: func(c *cfg.Config) {
			c.Instances = []cfg.Instance{{Name: "lan", VIPs: []netip.Prefix{netip.MustParsePrefix("10.10.1.1/24")}}}
		}, changes: "conntrack_sync: the VIPs"},
		{name: "VIPs and commit_timeout", change: func(c *cfg.Config) {
			c.Instances = []cfg.Instance{{Name: "lan", VIPs: []netip.Prefix{netip.MustParsePrefix("10.10.1.1/24")}}}
			c.Sync.CommitTimeout = time.Second
		}, changes: "conntrack_sync: timers"},
		{name: "commit_timeout only", change: func(c *cfg.Config) { c.Sync.CommitTimeout = time.Second },
			changes: "conntrack_sync: timers"},
		{name: "cache", change: func(c *cfg.Config) { c.Sync.Cache = cfg.CacheExternal },
			restart: "topology or cache changed", keepRunning: true},
		{name: "removed", change: func(c *cfg.Config) { c.Sync = nil },
			restart: "added or removed", keepRunning: true},
		{name: "missing interface", change: func(c *cfg.Config) {
			c.Sync.Key[0] = 3
			c.Sync.Links[0].Interface, c.Sync.Links[0].Port = "nosuch", 3791
		}, err: "conntrack_sync change not applied (links, key): sync link sync0", keepRunning: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := base()
			host := sim.NewHost("sync")
			h, err := ctsync.NewHandle(syncConfig(old.Sync, old.NodeName), ctsync.Options{Log: slog.New(slog.DiscardHandler),
				StateDir: t.TempDir(), Kernel: sim.NewTable(), Listen: sim.NewNet(1).Listener(host), Host: host, RuntimeTimers: true})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() { h.Run(ctx) })
			defer wg.Wait()
			defer cancel()
			d := &daemonState{log: slog.New(slog.DiscardHandler), sync: h}
			d.groups = map[string]*failover.Group{"fw": failover.NewConntrack(d.log, failover.Config{Group: "fw"}, h)}
			before := h.Stats(context.Background())

			conf := base()
			tt.change(conf)
			changes, restart, err := d.reloadSync(conf, old)
			check := func(what string, got []string, want string) {
				t.Helper()
				if want == "" && len(got) > 0 || want != "" && (len(got) != 1 || !strings.Contains(got[0], want)) {
					t.Errorf("%s: %q, want %q", what, got, want)
				}
			}
			check("changes", changes, tt.changes)
			check("restart", restart, tt.restart)
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Errorf("error %v, want %q", err, tt.err)
			}
			if tt.keepRunning && conf.Sync != old.Sync {
				t.Errorf("conf.Sync is not the running one after the reload")
			}
			want := syncConfig(old.Sync, old.NodeName)
			if tt.replaced {
				want = syncConfig(conf.Sync, conf.NodeName)
			}
			if got := h.Config(); got.Key != want.Key || !slices.Equal(got.Filter.Protocols, want.Filter.Protocols) ||
				got.Links[0].Port != want.Links[0].Port {
				t.Errorf("the engine runs %+v, want %+v", got, want)
			}
			if st := h.Stats(context.Background()); st.DatagramsOut < before.DatagramsOut {
				t.Errorf("datagrams sent went back from %d to %d", before.DatagramsOut, st.DatagramsOut)
			}
		})
	}
}

func TestSyncChanges(t *testing.T) {
	a := &cfg.Sync{Links: []cfg.Link{{Name: "sync0", Port: 1}}, CommitTimeout: time.Second}
	b := *a
	b.Links = []cfg.Link{{Name: "sync0", Port: 2}}
	b.Key[0] = 1
	b.PurgeDelay = time.Second
	b.KeyFile = "other.key"
	if got, want := syncChanges(&b, a, true), []string{"links", "key", "timers", "node_name"}; !slices.Equal(got, want) {
		t.Errorf("syncChanges = %q, want %q", got, want)
	}
	c := *a
	c.KeyFile = "same-content.key"
	if got, want := syncChanges(&c, a, false), []string{"settings"}; !slices.Equal(got, want) {
		t.Errorf("a new key path with the same key: %q, want %q", got, want)
	}
	// The migration runbook's reload: conntrackd's protocol (no key) to
	// ctha's with a key.
	d, e := *a, *a
	d.Protocol = cfg.ProtocolConntrackd
	e.Protocol, e.KeyFile, e.Key[0] = cfg.ProtocolCtha, "sync.key", 1
	if got, want := syncChanges(&e, &d, false), []string{"protocol", "key"}; !slices.Equal(got, want) {
		t.Errorf("conntrackd's protocol to ctha's: %q, want %q", got, want)
	}
	if got := syncChanges(a, a, false); len(got) != 0 {
		t.Errorf("unchanged: %q", got)
	}
}
