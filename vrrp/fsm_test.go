package vrrp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var (
	t0    = time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	me    = netip.MustParseAddr("10.10.1.2")
	peer  = netip.MustParseAddr("10.10.1.3")
	lower = netip.MustParseAddr("10.10.1.1")
)

func newMachine(prio uint8) Machine {
	return Machine{Params: Params{Version: 3, Priority: prio, AdvertInterval: time.Second, Preempt: true, Primary: me}}
}

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func advert(from netip.Addr, prio uint8) Event {
	return Event{Kind: EvAdvert, From: from, Priority: prio, Interval: time.Second}
}

// step is one event of a scenario and what must follow.
type step struct {
	ms    int // time of the event, ms after t0
	ev    Event
	state State
	acts  []Action // nil: no action expected
}

func run(t *testing.T, m Machine, steps []step) Machine {
	t.Helper()
	for i, s := range steps {
		var acts []Action
		m, acts = m.Step(s.ev, at(s.ms))
		if m.State != s.state {
			t.Fatalf("step %d (%v at %dms): state %v, want %v", i, s.ev.Kind, s.ms, m.State, s.state)
		}
		if diff := cmp.Diff(s.acts, acts); diff != "" {
			t.Fatalf("step %d (%v at %dms): actions (-want +got):\n%s", i, s.ev.Kind, s.ms, diff)
		}
	}
	return m
}

func tr(from, to State, r Reason) Action {
	return Action{Kind: ActTransition, From: from, To: to, Reason: r}
}
func send(p uint8) Action { return Action{Kind: ActSend, Priority: p} }

var (
	want    = Action{Kind: ActWantMaster}
	abort   = Action{Kind: ActAbortTakeover}
	addVIPs = Action{Kind: ActAddVIPs}
	rmVIPs  = Action{Kind: ActRemoveVIPs}
	announc = Action{Kind: ActAnnounce}
)

var (
	evStart   = Event{Kind: EvStartup}
	evTimer   = Event{Kind: EvTimer}
	evGo      = Event{Kind: EvGoMaster}
	evStepDwn = Event{Kind: EvGoBackup}
)

func TestTimers(t *testing.T) {
	m := newMachine(100)
	m.EffPriority, m.MasterAdverInterval = 100, time.Second
	// RFC 5798: Skew_Time = ((256 - 100) * 1s) / 256 = 609.375ms.
	if got, want := m.SkewTime(), 609375*time.Microsecond; got != want {
		t.Errorf("SkewTime = %v, want %v", got, want)
	}
	if got, want := m.MasterDownInterval(), 3609375*time.Microsecond; got != want {
		t.Errorf("MasterDownInterval = %v, want %v", got, want)
	}
	m.MasterAdverInterval = 100 * time.Millisecond
	if got, want := m.MasterDownInterval(), 300*time.Millisecond+60937500*time.Nanosecond; got != want {
		t.Errorf("MasterDownInterval at 100ms = %v, want %v", got, want)
	}
	m.Version = 2 // v2: skew in seconds regardless of the interval
	if got, want := m.SkewTime(), 609375*time.Microsecond; got != want {
		t.Errorf("v2 SkewTime = %v, want %v", got, want)
	}
}

func TestBackupTakesOverAfterMasterDown(t *testing.T) {
	m := run(t, newMachine(100), []step{
		{0, evStart, Backup, []Action{tr(Init, Backup, ReasonStartup)}},
		{3000, advert(peer, 150), Backup, nil},
		{6000, advert(peer, 150), Backup, nil},
		// 3 * 1s + 609.375ms after the last advert.
		{9609, evTimer, Backup, nil},
		{9610, evTimer, Backup, []Action{want}},
		{9611, evTimer, Backup, nil}, // pending: no second request
		{9650, evGo, Master, []Action{send(100), addVIPs, tr(Backup, Master, ReasonMasterDown)}},
		{10649, evTimer, Master, nil},
		{10650, evTimer, Master, []Action{send(100)}},
	})
	if m.Master != me {
		t.Errorf("Master = %v, want ourselves", m.Master)
	}
}

func TestPriorityZeroMeansSkewTime(t *testing.T) {
	run(t, newMachine(100), []step{
		{0, evStart, Backup, []Action{tr(Init, Backup, ReasonStartup)}},
		{500, advert(peer, 150), Backup, nil},
		{700, advert(peer, 0), Backup, nil},
		{1309, evTimer, Backup, nil},
		{1310, evTimer, Backup, []Action{want}}, // 700ms + 609.375ms
		{1320, evGo, Master, []Action{send(100), addVIPs, tr(Backup, Master, ReasonMasterResigned)}},
	})
}

func TestHigherPriorityPreempts(t *testing.T) {
	run(t, newMachine(150), []step{
		{0, evStart, Backup, []Action{tr(Init, Backup, ReasonStartup)}},
		// A lower master is ignored, so Master_Down expires from startup.
		{1000, advert(peer, 100), Backup, nil},
		{2000, advert(peer, 100), Backup, nil},
		// Master_Down_Interval = 3s + (256-150)/256 s = 3414.06ms.
		{3414, evTimer, Backup, nil},
		{3415, evTimer, Backup, []Action{want}},
		{3500, evGo, Master, []Action{send(150), addVIPs, tr(Backup, Master, ReasonPreempt)}},
	})
}

func TestNoPreempt(t *testing.T) {
	m := newMachine(150)
	m.Preempt = false
	run(t, m, []step{
		{0, evStart, Backup, []Action{tr(Init, Backup, ReasonStartup)}},
		{1000, advert(peer, 100), Backup, nil},
		{4000, advert(peer, 100), Backup, nil},
		{7000, advert(peer, 100), Backup, nil},
		{10000, evTimer, Backup, nil}, // 7000 + 3414 not reached
		{10500, evTimer, Backup, []Action{want}},
	})
}

func TestPreemptDelay(t *testing.T) {
	m := newMachine(150)
	m.PreemptDelay = 5 * time.Second
	run(t, m, []step{
		{0, evStart, Backup, []Action{tr(Init, Backup, ReasonStartup)}},
		{1000, advert(peer, 100), Backup, nil}, // accepted while the delay runs
		{2000, advert(peer, 100), Backup, nil},
		{3000, advert(peer, 100), Backup, nil},
		{4000, advert(peer, 100), Backup, nil},
		{4999, evTimer, Backup, nil},
		{5000, evTimer, Backup, []Action{want}}, // the delay is over: preempt the lower master
	})
}

func TestDeferralHoldsPreemptionUntilSyncDone(t *testing.T) {
	m := newMachine(150)
	run(t, m, []step{
		{0, Event{Kind: EvDefer, Defer: true}, Init, nil},
		{0, evStart, Backup, []Action{tr(Init, Backup, ReasonStartup)}},
		{1000, advert(peer, 100), Backup, nil},
		{2000, advert(peer, 100), Backup, nil},
		{5000, advert(peer, 100), Backup, nil},
		{8000, advert(peer, 100), Backup, nil},
		// The bulk copy completes: take over now, not Master_Down later.
		{8100, Event{Kind: EvDefer, Defer: false}, Backup, []Action{want}},
	})
	// Lifted before any master was heard: the first lower-priority advert
	// preempts at once, as the lifting would have had it come first.
	run(t, newMachine(150), []step{
		{0, Event{Kind: EvDefer, Defer: true}, Init, nil},
		{0, evStart, Backup, []Action{tr(Init, Backup, ReasonStartup)}},
		{300, Event{Kind: EvDefer, Defer: false}, Backup, nil},
		{1000, advert(peer, 100), Backup, []Action{want}},
		{1100, evGo, Master, []Action{send(150), addVIPs, tr(Backup, Master, ReasonPreempt)}},
	})
	// ... but a higher-priority one is followed as ever.
	run(t, newMachine(150), []step{
		{0, Event{Kind: EvDefer, Defer: true}, Init, nil},
		{0, evStart, Backup, []Action{tr(Init, Backup, ReasonStartup)}},
		{300, Event{Kind: EvDefer, Defer: false}, Backup, nil},
		{1000, advert(peer, 200), Backup, nil},
		{4000, evTimer, Backup, nil},
	})
	// With no master heard, deferral does not block Master_Down.
	run(t, newMachine(150), []step{
		{0, Event{Kind: EvDefer, Defer: true}, Init, nil},
		{0, evStart, Backup, []Action{tr(Init, Backup, ReasonStartup)}},
		{3414, evTimer, Backup, nil},
		{3415, evTimer, Backup, []Action{want}},
	})
}

func TestBetterMasterAbortsPendingTakeover(t *testing.T) {
	run(t, newMachine(100), []step{
		{0, evStart, Backup, []Action{tr(Init, Backup, ReasonStartup)}},
		{3610, evTimer, Backup, []Action{want}},
		{3700, advert(peer, 100), Backup, []Action{abort}}, // equal priority: it stays master
		{3800, evTimer, Backup, nil},                       // Master_Down re-armed from 3700
		{7309, evTimer, Backup, nil},
		{7310, evTimer, Backup, []Action{want}},
	})
	// A lower-priority advert does not abort a takeover.
	run(t, newMachine(100), []step{
		{0, evStart, Backup, []Action{tr(Init, Backup, ReasonStartup)}},
		{3610, evTimer, Backup, []Action{want}},
		{3700, advert(peer, 50), Backup, nil},
		{3800, evGo, Master, []Action{send(100), addVIPs, tr(Backup, Master, ReasonPreempt)}},
	})
}

func TestMasterSteps(t *testing.T) {
	master := func() Machine {
		m := newMachine(150)
		m, _ = m.Step(evStart, at(0))
		m, _ = m.Step(evTimer, at(4000))
		m, _ = m.Step(evGo, at(4000))
		if m.State != Master {
			t.Fatalf("setup: state %v", m.State)
		}
		return m
	}
	tests := []struct {
		name  string
		ev    Event
		state State
		acts  []Action
	}{
		{"higher priority", advert(peer, 200), Backup, []Action{rmVIPs, tr(Master, Backup, ReasonHigherPriority)}},
		{"equal priority, higher address", advert(peer, 150), Backup, []Action{rmVIPs, tr(Master, Backup, ReasonHigherPriority)}},
		{"equal priority, lower address", advert(lower, 150), Master, []Action{send(150), announc}},
		{"lower priority re-announces", advert(peer, 100), Master, []Action{send(150), announc}},
		{"priority zero", advert(peer, 0), Master, []Action{send(150)}},
		{"fault resigns", Event{Kind: EvFault}, Fault, []Action{send(0), rmVIPs, tr(Master, Fault, ReasonFault)}},
		{"shutdown resigns", Event{Kind: EvShutdown}, Init, []Action{send(0), rmVIPs, tr(Master, Init, ReasonShutdown)}},
		{"resign", Event{Kind: EvResign}, Backup, []Action{send(0), rmVIPs, tr(Master, Backup, ReasonResign)}},
		{"group steps down", evStepDwn, Backup, []Action{rmVIPs, tr(Master, Backup, ReasonGroup)}},
		{"lower effective priority advertised at once", Event{Kind: EvPriority, Priority: 90}, Master, []Action{send(90)}},
		{"higher effective priority is quiet", Event{Kind: EvPriority, Priority: 200}, Master, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, acts := master().Step(tt.ev, at(4500))
			if m.State != tt.state {
				t.Errorf("state %v, want %v", m.State, tt.state)
			}
			if diff := cmp.Diff(tt.acts, acts); diff != "" {
				t.Errorf("actions (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFaultAndRecovery(t *testing.T) {
	m := run(t, newMachine(100), []step{
		{0, evStart, Backup, []Action{tr(Init, Backup, ReasonStartup)}},
		{100, Event{Kind: EvFault}, Fault, []Action{tr(Backup, Fault, ReasonFault)}},
		{10000, evTimer, Fault, nil},
		{10000, advert(peer, 50), Fault, nil},
		{10000, evGo, Fault, nil}, // a group go-ahead never lifts a fault
		{20000, Event{Kind: EvFaultCleared}, Backup, []Action{tr(Fault, Backup, ReasonFaultCleared)}},
	})
	if got, want := m.MasterDownAt, at(20000).Add(m.MasterDownInterval()); !got.Equal(want) {
		t.Errorf("Master_Down after recovery at %v, want %v", got, want)
	}
}

func TestAddressOwnerTakesOverAtOnce(t *testing.T) {
	run(t, newMachine(255), []step{
		{0, evStart, Backup, []Action{tr(Init, Backup, ReasonStartup), want}},
		{1, evGo, Master, []Action{send(255), addVIPs, tr(Backup, Master, ReasonMasterDown)}},
	})
}

func TestGroupGoMasterForcesIdleMember(t *testing.T) {
	run(t, newMachine(100), []step{
		{0, evStart, Backup, []Action{tr(Init, Backup, ReasonStartup)}},
		{500, advert(peer, 150), Backup, nil},
		{600, evGo, Master, []Action{send(100), addVIPs, tr(Backup, Master, ReasonGroup)}},
	})
}

func TestDeadline(t *testing.T) {
	m := newMachine(100)
	if !m.Deadline().IsZero() {
		t.Errorf("INIT machine has a deadline")
	}
	m, _ = m.Step(evStart, at(0))
	if got, want := m.Deadline(), at(0).Add(m.MasterDownInterval()); !got.Equal(want) {
		t.Errorf("Deadline = %v, want %v", got, want)
	}
	m.PreemptAt = at(10)
	if !m.Deadline().Equal(at(10)) {
		t.Errorf("Deadline ignores PreemptAt")
	}
}

func TestStringers(t *testing.T) {
	for _, s := range []interface{ String() string }{Init, Backup, Master, Fault, EvStartup, EvDefer, ActSend, ActTransition, ReasonResign} {
		if got := s.String(); got == "" || got == "unknown" || got == "UNKNOWN" || got == "none" {
			t.Errorf("%#v.String() = %q", s, got)
		}
	}
	if State(9).String() != "UNKNOWN" || EventKind(99).String() != "unknown" || Reason(99).String() != "none" {
		t.Errorf("out-of-range values must not panic and must say so")
	}
}
