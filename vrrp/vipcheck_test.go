package vrrp

import (
	"context"
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

// routeVIPs is an instance's addresses with routes: its check blocks
// until released, and reports rep.
type routeVIPs struct {
	*fakeVIPs
	checking, release    chan struct{}
	rep                  routeReport
	routesUp, routesDown int
}

func (r *routeVIPs) CheckRoutes() (routeReport, error) {
	r.checking <- struct{}{}
	<-r.release
	return r.rep, nil
}
func (r *routeVIPs) RoutesUp() error   { r.routesUp++; return nil }
func (r *routeVIPs) RoutesDown() error { r.routesDown++; return nil }

// TestRouteCheckOffLock: the route checker compares the kernel without
// the group's lock (a slow dump holds no advert back) and posts what it
// found to the group's goroutine, which acts on it for the state it is
// in then; a report about a manager replaced since is dropped.
func TestRouteCheckOffLock(t *testing.T) {
	tg := newTestGroup(t, 100, nil)
	tg.at(3700 * time.Millisecond)
	tg.timer()
	if tg.state != Master {
		t.Fatalf("group %v, want MASTER", tg.state)
	}
	rv := &routeVIPs{fakeVIPs: tg.vips[0], checking: make(chan struct{}), release: make(chan struct{}),
		rep: routeReport{missing: []string{"198.51.100.0/24"}}}
	tg.members[0].vips = rv
	tg.members[0].cfg.Routes = []Route{{To: netip.MustParsePrefix("198.51.100.0/24")}}
	tg.routeKick, tg.ctl = make(chan struct{}, 1), make(chan func())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); tg.checkRoutes(ctx) }()
	defer func() { cancel(); <-done }()

	step := func() {
		t.Helper()
		tg.kickRouteCheck()
		<-rv.checking
		if !tg.mu.TryLock() {
			t.Fatal("the group's lock is held during the route check")
		}
		tg.mu.Unlock()
		close(rv.release)
		f := <-tg.ctl
		tg.locked(f)
		rv.release = make(chan struct{})
	}
	step()
	if rv.routesUp != 1 || rv.routesDown != 0 {
		t.Errorf("master, routes missing: RoutesUp %d, RoutesDown %d times; want 1, 0", rv.routesUp, rv.routesDown)
	}
	// The same report once the manager was replaced (a reload): dropped.
	tg.kickRouteCheck()
	<-rv.checking
	tg.members[0].vips = tg.vips[0]
	close(rv.release)
	tg.locked(<-tg.ctl)
	if rv.routesUp != 1 {
		t.Errorf("a report about a replaced manager was acted on")
	}
	tg.members[0].vips = rv
	rv.release = make(chan struct{})
	rv.rep = routeReport{present: []string{"198.51.100.0/24"}}
	step() // a master holding its routes: nothing to do
	if rv.routesUp != 1 || rv.routesDown != 0 {
		t.Errorf("master, routes present: RoutesUp %d, RoutesDown %d times; want 1, 0", rv.routesUp, rv.routesDown)
	}
}
