package vrrp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// goneVIPs is an instance's addresses that someone removed from the
// kernel while it was master.
type goneVIPs struct{ *fakeVIPs }

func (goneVIPs) Present() ([]netip.Prefix, error) { return nil, nil }

// TestVIPsRestoredReported: a VIP removed under the master is put back
// and Options.OnVIPsRestored hears which (`ctha events`: vip_restored).
func TestVIPsRestoredReported(t *testing.T) {
	tg := newTestGroup(t, 100, nil)
	tg.at(3700 * time.Millisecond)
	tg.timer()
	if tg.state != Master {
		t.Fatalf("group %v, want MASTER", tg.state)
	}
	type restored struct {
		Instance string
		VIPs     []string
	}
	var got []restored
	tg.onRestored = func(instance string, vips []string) { got = append(got, restored{instance, vips}) }
	tg.members[0].vips = goneVIPs{tg.vips[0]}
	ups := tg.vips[0].ups
	tg.reconcileVIPs()
	if tg.vips[0].ups != ups+1 {
		t.Errorf("the missing VIP was not put back (Up called %d times more)", tg.vips[0].ups-ups)
	}
	if diff := cmp.Diff([]restored{{"lan", []string{"10.10.1.1/24"}}}, got); diff != "" {
		t.Errorf("OnVIPsRestored (-want +got):\n%s", diff)
	}
}
