package integration

import (
	"syscall"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/lab"
)

// TestVRRPGracefulStop: SIGTERM on the master sends a priority-0 advert,
// so the backup takes over after its skew time, not Master_Down_Interval.
func TestVRRPGracefulStop(t *testing.T) {
	lab.RequireNetns(t)
	const advert = time.Second
	l := lab.New(t, lab.Options{NoIPv6: true})
	fw1 := startNode(t, l, lab.RoleFW1, pairOpts{node: "fw1", priority: 150, advert: advert}.config())
	waitGroupState(t, fw1, "MASTER", 5*time.Second)
	fw2 := startNode(t, l, lab.RoleFW2, pairOpts{node: "fw2", priority: 100, advert: advert}.config())
	waitGroupState(t, fw2, "BACKUP", 5*time.Second)
	time.Sleep(1500 * time.Millisecond) // fw2 has heard adverts

	start := time.Now()
	fw1.proc.Signal(syscall.SIGTERM)
	took, err := waitVIP(l, lab.RoleFW2, "lan", lab.LANVIP.Addr(), true, start, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	limit := skewTime(100, advert) + 50*time.Millisecond
	t.Logf("SIGTERM -> VIP on fw2: %v (skew time + 50ms = %v; Master_Down_Interval would be %v)",
		took.Round(time.Millisecond), limit, masterDownInterval(100, advert))
	if took > limit {
		t.Errorf("graceful handover took %v, want at most %v", took, limit)
	}
	if err := fw1.proc.Wait(); err != nil {
		t.Errorf("fw1 exit: %v", err)
	}
	if has, _ := l.HasAddr(lab.RoleFW1, "lan", lab.LANVIP.Addr()); has {
		t.Errorf("the stopped node kept its VIP")
	}
}

// TestVRRPPreempt covers preempt, nopreempt and preempt_delay: fw2 is
// master alone, then the higher-priority fw1 starts.
func TestVRRPPreempt(t *testing.T) {
	lab.RequireNetns(t)
	const advert = 100 * time.Millisecond
	mdi := masterDownInterval(150, advert)
	tests := []struct {
		name    string
		opts    pairOpts
		minTake time.Duration // fw1 must not be master before this
		maxTake time.Duration // and must be by then; 0: never
	}{
		{"preempt", pairOpts{}, 0, mdi + 300*time.Millisecond},
		{"nopreempt", pairOpts{noPreempt: true}, 0, 0},
		{"preempt_delay", pairOpts{preemptDelay: 1500 * time.Millisecond}, 1500 * time.Millisecond, 1500*time.Millisecond + mdi + 300*time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := lab.New(t, lab.Options{NoIPv6: true})
			fw2 := startNode(t, l, lab.RoleFW2, pairOpts{node: "fw2", priority: 100, advert: advert}.config())
			waitGroupState(t, fw2, "MASTER", 3*time.Second)

			o := tt.opts
			o.node, o.priority, o.advert = "fw1", 150, advert
			start := time.Now()
			fw1 := startNode(t, l, lab.RoleFW1, o.config())
			if tt.maxTake == 0 {
				holdState(t, fw1, "group:fw", "BACKUP", 3*mdi)
				if fw2.states()["group:fw"] != "MASTER" {
					t.Errorf("fw2 lost mastership to a nopreempt node")
				}
				return
			}
			took, err := waitVIP(l, lab.RoleFW1, "lan", lab.LANVIP.Addr(), true, start, tt.maxTake+2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("fw1 start -> VIP on fw1: %v (window %v..%v)", took.Round(time.Millisecond), tt.minTake, tt.maxTake)
			if took < tt.minTake || took > tt.maxTake {
				t.Errorf("fw1 took over after %v, want within %v..%v", took, tt.minTake, tt.maxTake)
			}
			waitGroupState(t, fw2, "BACKUP", time.Second)
			if has, _ := l.HasAddr(lab.RoleFW2, "lan", lab.LANVIP.Addr()); has {
				t.Errorf("fw2 kept the VIP after fw1 preempted")
			}
		})
	}
}

// TestVRRPTrackInterface: a tracked link going down gives FAULT (weight
// 0) or a lower priority (weight -60); either way fw2 takes over, and fw1
// takes back over when the link returns.
func TestVRRPTrackInterface(t *testing.T) {
	lab.RequireNetns(t)
	const advert = 100 * time.Millisecond
	for _, tt := range []struct {
		name   string
		weight int
		state  string // of fw1's lan instance while wan is down
	}{{"weight 0 means FAULT", 0, "FAULT"}, {"weight -60 lowers priority", -60, "BACKUP"}} {
		t.Run(tt.name, func(t *testing.T) {
			l := lab.New(t, lab.Options{NoIPv6: true})
			fw1 := startNode(t, l, lab.RoleFW1, pairOpts{node: "fw1", priority: 150, advert: advert, lanOnly: true, trackWAN: true, trackWeight: tt.weight}.config())
			waitState(t, fw1, "lan", "MASTER", 3*time.Second)
			fw2 := startNode(t, l, lab.RoleFW2, pairOpts{node: "fw2", priority: 100, advert: advert, lanOnly: true}.config())
			waitState(t, fw2, "lan", "BACKUP", 3*time.Second)

			if err := l.SetSwitchPort(lab.RoleFW1, "wan", false); err != nil { // fw1 loses carrier on wan
				t.Fatal(err)
			}
			waitState(t, fw1, "lan", tt.state, 2*time.Second)
			waitState(t, fw2, "lan", "MASTER", 2*time.Second)
			if _, err := waitVIP(l, lab.RoleFW2, "lan", lab.LANVIP.Addr(), true, time.Now(), time.Second); err != nil {
				t.Error(err)
			}
			if st, _ := fw1.status(); tt.weight != 0 && st.Instances[0].EffectivePriority != 90 {
				t.Errorf("fw1 effective priority %d while wan is down, want 90", st.Instances[0].EffectivePriority)
			}

			if err := l.SetSwitchPort(lab.RoleFW1, "wan", true); err != nil {
				t.Fatal(err)
			}
			waitState(t, fw1, "lan", "MASTER", 3*time.Second)
			waitState(t, fw2, "lan", "BACKUP", 2*time.Second)
		})
	}
}
