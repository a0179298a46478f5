package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/lab"
)

// TestVRRPFailover: two ctha nodes elect the higher priority; killing the
// master (a crash: SIGKILL, its links down) moves the VIPs to the backup
// within Master_Down_Interval + 50 ms, and the client's neighbour entry
// follows to the new master's MAC. Repeated at advert 100 ms and 1 s.
//
// The takeover itself (Master_Down -> first GARP, measured by the daemon)
// has a goal of 5 ms, which the better of two rounds must meet; a single
// round may lose a few milliseconds to the scheduler when the machine is
// busy (the other packages' tests run alongside), but never more than
// takeoverCeiling, which a takeover that waited on anything would exceed.
func TestVRRPFailover(t *testing.T) {
	lab.RequireNetns(t)
	const goal, takeoverCeiling = 5.0, 25.0 // ms
	for _, advert := range []time.Duration{100 * time.Millisecond, time.Second} {
		for _, v6 := range []bool{false, true} {
			t.Run(fmt.Sprintf("advert=%v/ipv6=%v", advert, v6), func(t *testing.T) {
				best := map[string]float64{}
				for round := range 2 {
					for name, ms := range failoverRound(t, advert, v6, round) {
						if ms <= 0 || ms > takeoverCeiling {
							t.Errorf("round %d: fw2 %s: timer -> GARP %.3f ms, more than %.0f ms", round, name, ms, takeoverCeiling)
						}
						if b, ok := best[name]; !ok || ms < b {
							best[name] = ms
						}
					}
				}
				for name, ms := range best {
					if ms > goal {
						t.Errorf("fw2 %s: timer -> GARP %.3f ms in the better round, goal under %.0f ms", name, ms, goal)
					}
				}
			})
		}
	}
}

// failoverRound runs one crash in a fresh lab and returns each of fw2's
// instances' takeover time (Master_Down -> first GARP) in milliseconds.
func failoverRound(t *testing.T, advert time.Duration, v6 bool, round int) map[string]float64 {
	l := lab.New(t, lab.Options{NoIPv6: !v6})
	fw1 := startNode(t, l, lab.RoleFW1, pairOpts{node: "fw1", priority: 150, advert: advert, v6: v6}.config())
	waitGroupState(t, fw1, "MASTER", 2*masterDownInterval(150, advert)+2*time.Second)
	fw2 := startNode(t, l, lab.RoleFW2, pairOpts{node: "fw2", priority: 100, advert: advert, v6: v6}.config())
	waitGroupState(t, fw2, "BACKUP", 5*time.Second)

	lanVIP, client := lab.LANVIP.Addr(), lab.RoleClient
	if v6 {
		lanVIP = lab.LANVIP6.Addr()
	}
	// The client talks to the VIP: its neighbour entry is fw1's.
	ping := []string{"ping", "-c1", "-W1", lanVIP.String()}
	l.MustExec(t, client, ping...)
	if got, want := neighMAC(l, client, lanVIP), macOf(t, l, lab.RoleFW1, "lan"); got != want {
		t.Fatalf("client's entry for %s is %q, want fw1's %q", lanVIP, got, want)
	}
	if has, _ := l.HasAddr(lab.RoleFW2, "lan", lanVIP); has {
		t.Fatalf("the backup holds the VIP too")
	}

	// Crash fw1, then take its links down so it is gone from both LANs.
	start := time.Now()
	fw1.proc.Kill()
	l.SetLink(lab.RoleFW1, "lan", false)
	l.SetLink(lab.RoleFW1, "wan", false)
	took, err := waitVIP(l, lab.RoleFW2, "lan", lanVIP, true, start, 10*time.Second)
	if err != nil {
		t.Fatalf("%v\n%s", err, fw2.proc.Tail(30))
	}
	limit := masterDownInterval(100, advert) + 50*time.Millisecond
	t.Logf("round %d: kill -> VIP on fw2 %v (limit %v)", round, took.Round(time.Millisecond), limit)
	if took > limit {
		t.Errorf("kill -> VIP took %v, more than Master_Down_Interval + 50ms = %v", took, limit)
	}
	waitGroupState(t, fw2, "MASTER", time.Second)
	wantMAC := macOf(t, l, lab.RoleFW2, "lan")
	if err := lab.WaitFor(2*time.Second, 20*time.Millisecond, func() (bool, error) {
		return neighMAC(l, client, lanVIP) == wantMAC, nil
	}); err != nil {
		t.Errorf("client's entry for %s is %q, want fw2's %q after the failover", lanVIP, neighMAC(l, client, lanVIP), wantMAC)
	}
	l.MustExec(t, client, ping...) // and the VIP answers from fw2
	st, err := fw2.status()
	if err != nil {
		t.Fatalf("fw2 status: %v", err)
	}
	garp := map[string]float64{}
	for _, in := range st.Instances {
		t.Logf("round %d: fw2 %s: Master_Down -> first GARP %.3f ms", round, in.Name, in.LastTakeoverMS)
		garp[in.Name] = in.LastTakeoverMS
	}
	if len(garp) == 0 {
		t.Fatalf("fw2's status lists no instances")
	}
	return garp
}
