package failover

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ctha/ctha/internal/sim"
	"github.com/ctha/ctha/vrrp"
)

// startPair starts both nodes and waits for fw1 (the higher priority) to
// be master with fw2's copy of its flows complete.
func startPair(t *testing.T, o simOptions, flows int) *simPair {
	p := newSimPair(t, o)
	fw1, fw2 := p.nodes[0], p.nodes[1]
	fw1.start()
	fw2.start()
	p.waitFor("fw1 master, fw2 backup", 40*time.Second, func() bool {
		return fw1.state() == vrrp.Master && fw2.state() == vrrp.Backup
	})
	p.traffic(fw1, flows)
	p.settle(simSettle)
	p.checkOneHolder("fw1")
	return p
}

// TestPairCrash: the master dies; the backup takes over with every flow,
// in both cache modes.
func TestPairCrash(t *testing.T) {
	for _, external := range []bool{false, true} {
		name := "direct"
		if external {
			name = "external"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := startPair(t, simOptions{external: external}, 500)
				defer p.stopAll()
				fw1, fw2 := p.nodes[0], p.nodes[1]
				fw1.crash()
				p.waitFor("fw2 master", 5*time.Second, func() bool { return fw2.state() == vrrp.Master })
				p.settle(simSettle)
				p.checkOneHolder("fw2")
				p.checkTakeovers("fw1", "fw2")
				if got := fw2.table.Len(); got != 500 {
					t.Errorf("fw2's table holds %d flows, want 500", got)
				}
			})
		})
	}
}

// groupStatus is the node's group as status shows it.
func (n *simNode) groupStatus() vrrp.GroupStatus {
	gs, _ := n.runner.Status()
	for _, g := range gs {
		if g.Name == simGroup {
			return g
		}
	}
	return vrrp.GroupStatus{}
}

// TestPairPlannedFailover: `ctha failover` hands the VIPs to the peer
// with every flow; `--cancel` lets the node take them back, again with
// every flow, those started on the peer meanwhile included.
func TestPairPlannedFailover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := startPair(t, simOptions{}, 300)
		defer p.stopAll()
		fw1, fw2 := p.nodes[0], p.nodes[1]
		ctx := context.Background()

		msg, err := fw1.group.Failover(ctx, fw1.runner, false)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(msg, "resigned") {
			t.Errorf("failover said %q", msg)
		}
		p.waitFor("fw2 master", 2*time.Second, func() bool { return fw2.state() == vrrp.Master })
		p.traffic(fw2, 200)
		p.settle(simSettle)
		p.checkOneHolder("fw2")
		if d := fw1.groupStatus().Demoted; d == "" {
			t.Error("fw1 is not shown demoted after the failover")
		}

		if _, err := fw1.group.Failover(ctx, fw1.runner, true); err != nil {
			t.Fatal(err)
		}
		p.waitFor("fw1 master again", 5*time.Second, func() bool { return fw1.state() == vrrp.Master })
		p.settle(simSettle)
		p.checkOneHolder("fw1")
		p.checkTakeovers("fw1", "fw2", "fw1")
		p.checkRoles()
	})
}

// TestPairRejoin: the primary reboots (its table empty) while the backup
// holds the VIPs and new flows start; it comes back over a slow sync
// link, and takes the VIPs back only with a complete copy. A restart in
// the middle of the copy leaves a stale copy in flight, which is
// discarded; the node still ends with one complete, current copy.
func TestPairRejoin(t *testing.T) {
	for _, restartMidCopy := range []bool{false, true} {
		name := "slow"
		if restartMidCopy {
			name = "stale"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := startPair(t, simOptions{}, 2000)
				defer p.stopAll()
				fw1, fw2 := p.nodes[0], p.nodes[1]
				fw1.crash()
				fw1.table.Clear()
				p.waitFor("fw2 master", 5*time.Second, func() bool { return fw2.state() == vrrp.Master })
				p.traffic(fw2, 1000)
				p.settle(simSettle)

				// A copy of 3000 flows (about 80 kB) over 20 kB/s takes
				// about 4 s.
				p.net.SetBoth(fw1.syncAddr, fw2.syncAddr, sim.Cond{Rate: 20_000, Delay: 5 * time.Millisecond, Queue: 10 * time.Second})
				fw1.start()
				if restartMidCopy {
					// The copy is under way (its retransmissions wait
					// behind it in the slow link's queue, so fw1 cannot
					// tell yet); fw1 restarts, and what is in flight of
					// that copy reaches its next run.
					p.settle(1500 * time.Millisecond)
					if fw1.eng.Status().BulkComplete {
						t.Fatal("the copy was complete within 1.5 s: the link is not slow enough for this test")
					}
					fw1.crash()
					fw1.start()
				}
				p.waitFor("fw1 master again", 60*time.Second, func() bool { return fw1.state() == vrrp.Master })
				p.settle(simSettle)
				p.checkOneHolder("fw1")
				p.checkTakeovers("fw1", "fw2", "fw1")
				st := fw1.eng.Status()
				if !st.BulkComplete || st.BulkReceived != 3000 {
					t.Errorf("fw1's copy: complete %v, %d entries, want 3000", st.BulkComplete, st.BulkReceived)
				}
				if got := fw1.table.Len(); got != 3000 {
					t.Errorf("fw1's table holds %d flows, want 3000", got)
				}
				if restartMidCopy {
					if s := fw1.eng.Stats(context.Background()); s.BulksStale == 0 {
						t.Errorf("the copy begun for fw1's previous run was not discarded as stale: %+v", s)
					}
				}
				// fw1's role reaches fw2 behind fw1's copy to fw2 in the
				// slow link's queue: the link back to normal, both agree.
				p.net.SetBoth(fw1.syncAddr, fw2.syncAddr, sim.Cond{})
				p.settle(5 * time.Second)
				p.checkRoles()
			})
		})
	}
}

// TestPairSyncLoss: the sync link is cut. Both nodes are demoted alike,
// so the master stays master (no failover for a sync cut); the demotion
// is lifted when the link is back.
func TestPairSyncLoss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := startPair(t, simOptions{}, 100)
		defer p.stopAll()
		fw1, fw2 := p.nodes[0], p.nodes[1]
		p.net.SetBoth(fw1.syncAddr, fw2.syncAddr, sim.Cond{Cut: true})
		p.waitFor("both demoted", 10*time.Second, func() bool {
			return fw1.groupStatus().Demoted != "" && fw2.groupStatus().Demoted != ""
		})
		p.settle(simSettle)
		p.checkOneHolder("fw1")
		if fw1.state() != vrrp.Master || fw2.state() != vrrp.Backup {
			t.Fatalf("a sync cut moved the VIPs: fw1 %v, fw2 %v", fw1.state(), fw2.state())
		}
		p.net.SetBoth(fw1.syncAddr, fw2.syncAddr, sim.Cond{})
		p.waitFor("the demotions lifted", 10*time.Second, func() bool {
			return fw1.groupStatus().Demoted == "" && fw2.groupStatus().Demoted == ""
		})
		p.traffic(fw1, 100)
		p.settle(simSettle)
		// The flows started during the cut reach fw2 too: it would take
		// over with all of them.
		fw1.crash()
		p.waitFor("fw2 master", 5*time.Second, func() bool { return fw2.state() == vrrp.Master })
		p.checkTakeovers("fw1", "fw2")
		p.checkOneHolder("fw2")
	})
}

// TestPairHangingNotify: notify commands that hang (timeout 60 s) across
// 12 `ctha failover` / `--cancel` cycles. The VIPs and the tables follow
// every cycle at once; the notify commands run for the state each node is
// in when the hanging one ends; afterwards both nodes' elections and
// engines agree, and no split brain is reported.
func TestPairHangingNotify(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var hang [2]*hangingExec
		p := newSimPair(t, simOptions{})
		for i, n := range p.nodes {
			hang[i] = &hangingExec{release: make(chan struct{})}
			n.opts.exec = hang[i].exec
			n.opts.notify = Notify{Master: [][]string{{"/m"}}, Backup: [][]string{{"/b"}}, Fault: [][]string{{"/f"}}, Timeout: time.Minute}
		}
		defer p.stopAll()
		fw1, fw2 := p.nodes[0], p.nodes[1]
		fw1.start()
		fw2.start()
		p.waitFor("fw1 master", 40*time.Second, func() bool { return fw1.state() == vrrp.Master && fw2.state() == vrrp.Backup })
		p.traffic(fw1, 100)
		p.settle(simSettle)
		ctx := context.Background()
		want := []string{"fw1"}
		for cycle := range 12 {
			if _, err := fw1.group.Failover(ctx, fw1.runner, false); err != nil {
				t.Fatal(err)
			}
			p.waitFor(fmt.Sprintf("cycle %d: fw2 master", cycle), 2*time.Second, func() bool { return fw2.state() == vrrp.Master })
			p.traffic(fw2, 10)
			p.settle(500 * time.Millisecond)
			p.checkOneHolder("fw2")
			if _, err := fw1.group.Failover(ctx, fw1.runner, true); err != nil {
				t.Fatal(err)
			}
			p.waitFor(fmt.Sprintf("cycle %d: fw1 master", cycle), 5*time.Second, func() bool { return fw1.state() == vrrp.Master })
			p.traffic(fw1, 10)
			p.settle(500 * time.Millisecond)
			p.checkOneHolder("fw1")
			want = append(want, "fw2", "fw1")
		}
		p.checkTakeovers(want...)
		p.checkRoles()
		for i, n := range p.nodes {
			if got := hang[i].ran(); len(got) != 1 {
				t.Errorf("%s: notify commands started for %v while the first hung, want only the first", n.name, got)
			}
		}
		// The hung commands end: each node's notify runs once more, for
		// the state it is in now, and counts what it skipped.
		for i := range hang {
			close(hang[i].release)
		}
		p.settle(time.Second)
		if got := hang[0].ran(); !slices.Equal(got, []string{"BACKUP", "MASTER"}) {
			t.Errorf("fw1's notify ran for %v, want [BACKUP MASTER]", got)
		}
		if got := hang[1].ran(); !slices.Equal(got, []string{"BACKUP"}) {
			t.Errorf("fw2's notify ran for %v, want [BACKUP] (it is back where it was notified)", got)
		}
		if fw1.group.NotifySkipped() == 0 {
			t.Error("fw1 skipped no notify state across 12 cycles")
		}
		t.Logf("figure: 12 failover/cancel cycles with hanging notify commands: %d takeovers, each with every flow; notify ran fw1 %v, fw2 %v; skipped fw1 %d, fw2 %d",
			len(want), hang[0].ran(), hang[1].ran(), fw1.group.NotifySkipped(), fw2.group.NotifySkipped())
	})
}

// TestPairLongCommit: external cache, a commit (2000 flows at 2 ms each:
// 4 s) longer than the role it was for. The backup takes over at
// commit_timeout with the commit still writing; the primary, back
// meanwhile, preempts. The old backup's takeover is abandoned: its tables
// follow BACKUP, and the primary ends the only holder with every flow.
func TestPairLongCommit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := startPair(t, simOptions{external: true, commitTimeout: time.Second}, 2000)
		defer p.stopAll()
		fw1, fw2 := p.nodes[0], p.nodes[1]
		fw2.table.WriteDelay = 2 * time.Millisecond
		fw1.crash()
		p.waitFor("fw2 master", 5*time.Second, func() bool { return fw2.state() == vrrp.Master })
		if n := fw2.table.Len(); n == 2000 {
			t.Fatal("fw2's commit was over when it took over: the test needs a longer one")
		}
		fw1.start()
		p.waitFor("fw1 master again", 40*time.Second, func() bool { return fw1.state() == vrrp.Master })
		p.settle(10 * time.Second) // the commit long over
		p.checkOneHolder("fw1")
		if fw2.state() != vrrp.Backup {
			t.Errorf("fw2 is %v", fw2.state())
		}
		p.checkRoles()
		p.mu.Lock()
		takeovers := slices.Clone(p.takeovers)
		p.mu.Unlock()
		// fw2 took the VIPs at commit_timeout, before its commit was
		// done: the one takeover allowed to find a table incomplete.
		if len(takeovers) != 3 || takeovers[1].node != "fw2" || takeovers[2].node != "fw1" || takeovers[2].missing != 0 {
			t.Errorf("takeovers %+v: want fw1, fw2 (at commit_timeout), then fw1 with a complete table", takeovers)
		}
	})
}

// TestPairReloadDuringTransition: the master dies; a reload that raises
// the backup above it is applied while the backup is committing its
// takeover (external cache, a slow commit), and the old master comes
// back. The reload is applied without a restart; the node that now
// outranks the other ends master, the only holder, with every flow.
func TestPairReloadDuringTransition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := startPair(t, simOptions{external: true}, 1000)
		defer p.stopAll()
		fw1, fw2 := p.nodes[0], p.nodes[1]
		fw2.table.WriteDelay = time.Millisecond // a 1 s commit
		fw1.crash()
		// fw2 is taking over: reload it with a priority above fw1's in
		// the middle of its commit, and fw1 restarts.
		p.waitFor("fw2 committing", 5*time.Second, func() bool {
			n := fw2.table.Len()
			return n > 0 && n < 1000
		})
		fw2.prio = 200
		changed, err := fw2.runner.Reload(context.Background(), fw2.vrrpConfig())
		if err != nil {
			t.Fatalf("reload: %v (%v)", err, changed)
		}
		if len(changed) != 1 || !strings.Contains(changed[0], "priority 100 -> 200") {
			t.Errorf("reload applied %v", changed)
		}
		fw1.start()
		p.waitFor("fw2 master", 10*time.Second, func() bool { return fw2.state() == vrrp.Master })
		p.settle(10 * time.Second)
		p.checkOneHolder("fw2")
		if fw1.state() != vrrp.Backup {
			t.Errorf("fw1 is %v", fw1.state())
		}
		p.checkRoles()
		p.mu.Lock()
		last := p.takeovers[len(p.takeovers)-1]
		p.mu.Unlock()
		if last.node != "fw2" || last.missing != 0 {
			t.Errorf("last takeover %+v, want fw2 with a complete table", last)
		}
	})
}

// TestPairInterfaceRecreated: the master's VRRP interface is deleted,
// and created again a second later (a new index, its addresses gone). The node is FAULT
// while it is gone (the backup takes over with every flow), reopens its
// socket and addresses on the new interface, and takes the VIPs back.
// Never do two nodes hold the VIPs for longer than a preemption takes.
func TestPairInterfaceRecreated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := startPair(t, simOptions{}, 200)
		defer p.stopAll()
		fw1 := p.nodes[0]
		fw1.host.Delete("lan")
		run, longest := 0, 0 // samples in a row with two holders
		sawFW2 := false
		for i := range 500 { // 5 s
			if i == 100 {
				fw1.host.Create("lan")
			}
			time.Sleep(10 * time.Millisecond)
			h := p.holders()
			if len(h) > 1 {
				run++
				longest = max(longest, run)
			} else {
				run = 0
			}
			sawFW2 = sawFW2 || slices.Equal(h, []string{"fw2"})
		}
		if longest > 1 {
			t.Errorf("both nodes held the VIPs for %d ms", longest*10)
		}
		if !sawFW2 {
			t.Error("fw2 never held the VIPs alone while fw1's interface was gone")
		}
		p.checkOneHolder("fw1")
		p.checkTakeovers("fw1", "fw2", "fw1")
		p.checkRoles()
	})
}

// TestPairSyncInterfaceRecreated: the backup's sync interface is deleted
// and created again. Its sync socket is reopened on the new interface,
// so the flows started afterwards reach it too: it takes over with every
// one of them when the master dies.
func TestPairSyncInterfaceRecreated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := startPair(t, simOptions{}, 200)
		defer p.stopAll()
		fw1, fw2 := p.nodes[0], p.nodes[1]
		fw2.host.Delete("sync")
		p.settle(time.Second)
		fw2.host.Create("sync")
		p.settle(simSettle)
		p.traffic(fw1, 300)
		p.settle(simSettle)
		if n := fw2.table.Len(); n != 500 {
			t.Errorf("fw2 holds %d of the 500 flows after its sync interface came back", n)
		}
		fw1.crash()
		p.waitFor("fw2 master", 5*time.Second, func() bool { return fw2.state() == vrrp.Master })
		p.settle(simSettle)
		p.checkOneHolder("fw2")
		p.checkTakeovers("fw1", "fw2")
	})
}

// TestPairSyncReload: conntrack_sync reloaded on both nodes with live
// traffic (a rotated key, the backup first; cmd/ctha's reload replaces
// each engine), at once or with the keys apart for 3 s (both nodes then
// see the peer unreachable and are demoted alike): no transition, the
// master the only holder throughout, and the backup, whose engine was
// replaced, takes over with every flow when the master then dies, those
// started after the reloads included. Both cache modes.
func TestPairSyncReload(t *testing.T) {
	for _, tc := range []struct {
		name     string
		external bool
		apart    time.Duration
	}{{"direct", false, 0}, {"external", true, 0}, {"direct/keys-apart", false, 3 * time.Second}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := startPair(t, simOptions{external: tc.external}, 300)
				defer p.stopAll()
				fw1, fw2 := p.nodes[0], p.nodes[1]
				p.key[0] ^= 0xff
				for _, n := range []*simNode{fw2, fw1} {
					if ok, err := n.eng.Replace(n.syncConfig(), []netip.Addr{simVIP.Addr()}); !ok || err != nil {
						t.Fatalf("%s: replaced %v, err %v", n.name, ok, err)
					}
					for end := time.Now().Add(tc.apart); time.Now().Before(end); {
						p.forward()
						p.checkOneHolder("fw1")
						time.Sleep(10 * time.Millisecond)
					}
				}
				p.traffic(fw1, 100)
				for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
					p.forward()
					p.checkOneHolder("fw1")
					time.Sleep(10 * time.Millisecond)
				}
				p.waitFor("fw2 complete again", 10*time.Second, func() bool {
					st := fw2.eng.Status()
					return st.PeerUp && st.BulkComplete && st.External == 400
				})
				p.checkRoles()
				if fw1.state() != vrrp.Master || fw2.state() != vrrp.Backup {
					t.Fatalf("after the reloads fw1 %v, fw2 %v", fw1.state(), fw2.state())
				}
				if d := fw2.groupStatus().Demoted; d != "" {
					t.Errorf("fw2 still demoted (%s) after the keys match", d)
				}
				fw1.crash()
				p.waitFor("fw2 master", 5*time.Second, func() bool { return fw2.state() == vrrp.Master })
				p.settle(simSettle)
				p.checkOneHolder("fw2")
				p.checkTakeovers("fw1", "fw2")
			})
		})
	}
}
