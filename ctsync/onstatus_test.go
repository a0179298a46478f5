package ctsync_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ctha/ctha/ctsync"
	"github.com/ctha/ctha/ctsync/auth"
	"github.com/ctha/ctha/internal/sim"
)

// TestOnStatus: the engine tells Options.OnStatus, on its goroutine,
// each change of a peer that `ctha events` reports: the peer heard, its
// complete copy, the peer gone.
func TestOnStatus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := sim.NewNet(1)
		var key auth.Key
		key[0] = 9
		var mu sync.Mutex
		var seen []ctsync.PeerStatus // fw1's view of fw2, at each call
		a, b := newMPNode(t, 1, 2), newMPNode(t, 2, 1)
		c := ctsync.Config{Topology: ctsync.Multiprimary, NodeName: a.name, Key: key, StartupSyncTimeout: 30 * time.Second,
			Links: []ctsync.Link{{Name: "sync0", Interface: "sync", Local: a.addr, Peers: a.peers, Port: 3780}}}
		eng, err := ctsync.New(c, ctsync.Options{Log: slog.New(slog.DiscardHandler), StateDir: a.dir,
			Kernel: a.table, Listen: nw.Listener(a.host), Host: a.host, RuntimeTimers: true,
			OnStatus: func(prev, now ctsync.Status) {
				mu.Lock()
				defer mu.Unlock()
				seen = append(seen, now.Peers[0])
			}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		a.eng, a.stop = eng, cancel
		a.wg.Go(func() { eng.Run(ctx) })
		defer a.halt()
		b.start(t, nw, key)
		last := func() ctsync.PeerStatus {
			mu.Lock()
			defer mu.Unlock()
			if len(seen) == 0 {
				return ctsync.PeerStatus{}
			}
			return seen[len(seen)-1]
		}
		waitUntil(t, "fw2 up with its copy", time.Minute, func() bool {
			p := last()
			return p.Up && p.BulkComplete && p.Copies == 1 && p.Node == "fw2"
		})
		b.halt()
		waitUntil(t, "fw2 down", time.Minute, func() bool { return !last().Up })
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		time.Sleep(30 * time.Second) // nothing changes: no call
		mu.Lock()
		defer mu.Unlock()
		if len(seen) != n {
			t.Errorf("OnStatus called %d more times while nothing changed: %+v", len(seen)-n, seen[n:])
		}
	})
}
