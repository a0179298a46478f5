package kernel

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/ctha/ctha/ctsync/ct"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// checkFlow compares a dumped flow with the one written: every field
// equal, the timeout within what elapsed since the write.
func checkFlow(t *testing.T, want, got ct.Flow, elapsed time.Duration) {
	t.Helper()
	lo := int64(want.Timeout) - int64(elapsed/time.Second) - 2
	if int64(got.Timeout) < lo || got.Timeout > want.Timeout {
		t.Errorf("timeout %d, want %d minus %v", got.Timeout, want.Timeout, elapsed)
	}
	got.Timeout = want.Timeout
	if !want.Equal(&got) {
		t.Errorf("dumped flow differs (-want +got):\n%s", cmp.Diff(want, got))
	}
}

func TestRoundTrip(t *testing.T) {
	n := newNS(t)
	n.labelsAndHelpers()
	c := n.dial()
	cases := roundTripCases()
	flows := make([]ct.Flow, len(cases))
	for i, tc := range cases {
		flows[i] = tc.flow
	}
	start := time.Now()
	write(t, c, Create, flows, WriteOptions{BatchSize: 5})
	got := dumpMap(t, c)
	elapsed := time.Since(start)
	if len(got) != len(flows) {
		t.Errorf("dumped %d flows, want %d", len(got), len(flows))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g, ok := got[tc.flow.Key()]
			if !ok {
				t.Fatalf("flow %v not in the table", &tc.flow)
			}
			checkFlow(t, tc.flow, g, elapsed)
		})
	}
}

func TestLiberal(t *testing.T) {
	n := newNS(t)
	c := n.dial()
	f := plain(ct.ProtoTCP, "10.1.0.1", "10.2.0.1", 40001, 80)
	u := plain(ct.ProtoUDP, "10.1.0.1", "10.2.0.1", 40001, 80)
	write(t, c, Create, []ct.Flow{f, u}, WriteOptions{Liberal: true})
	got := dumpMap(t, c)
	want := f
	want.TCP.FlagsOrig |= ct.TCPFlagBeLiberal
	want.TCP.FlagsRepl |= ct.TCPFlagBeLiberal
	checkFlow(t, want, got[f.Key()], time.Second)
	checkFlow(t, u, got[u.Key()], time.Second)
}

func TestCreateReplacesExisting(t *testing.T) {
	n := newNS(t)
	n.labelsAndHelpers()
	c := n.dial()
	a := plain(ct.ProtoTCP, "10.1.0.1", "10.2.0.1", 40001, 80)
	b := snat(plain(ct.ProtoUDP, "10.1.0.1", "10.2.0.1", 40002, 53), "192.0.2.1", 50002)
	d := plain(ct.ProtoUDP, "10.1.0.1", "10.2.0.1", 40003, 53)
	write(t, c, Create, []ct.Flow{a, b}, WriteOptions{})

	// The same flows changed in ways an update could not apply: another
	// NAT binding, status bits cleared, a new mark and timeout.
	a2 := with(a, func(f *ct.Flow) { f.Mark, f.Timeout, f.Status = 7, 1000, ct.StatusConfirmed })
	b2 := snat(with(b, func(f *ct.Flow) { f.Mark = 9 }), "192.0.2.2", 50003)
	res := write(t, c, Create, []ct.Flow{a2, b2, d}, WriteOptions{})
	if res.Replaced != 2 {
		t.Errorf("Replaced = %d, want 2", res.Replaced)
	}
	got := dumpMap(t, c)
	for _, want := range []ct.Flow{a2, b2, d} {
		checkFlow(t, want, got[want.Key()], time.Second)
	}
	if len(got) != 3 {
		t.Errorf("table has %d flows, want 3", len(got))
	}
}

func TestWriteFailures(t *testing.T) {
	n := newNS(t)
	c := n.dial()
	good := plain(ct.ProtoTCP, "10.1.0.1", "10.2.0.1", 40001, 80)
	badState := with(plain(ct.ProtoTCP, "10.1.0.1", "10.2.0.1", 40002, 80), func(f *ct.Flow) { f.TCP.State = 200 })
	badHelper := with(plain(ct.ProtoTCP, "10.1.0.1", "10.2.0.1", 40003, 80), func(f *ct.Flow) { extra(f).Helper = "nosuchhelper" })
	mixed := with(plain(ct.ProtoTCP, "10.1.0.1", "10.2.0.1", 40004, 80), func(f *ct.Flow) { f.Reply = plain(ct.ProtoTCP, "fd00::1", "fd00::2", 1, 2).Reply })
	good2 := plain(ct.ProtoUDP, "10.1.0.1", "10.2.0.1", 40005, 80)

	res, err := c.Write(context.Background(), Create, []ct.Flow{good, badState, badHelper, mixed, good2}, WriteOptions{BatchSize: 2})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if res.OK != 2 {
		t.Errorf("OK = %d, want 2", res.OK)
	}
	wantErr := map[ct.Key]error{
		badState.Key():  unix.ERANGE, // the attribute policy's maximum
		badHelper.Key(): unix.EOPNOTSUPP,
		mixed.Key():     ErrInvalidFlow,
	}
	if len(res.Failed) != len(wantErr) {
		t.Errorf("Failed = %v, want %d entries", res.Failed, len(wantErr))
	}
	for _, f := range res.Failed {
		if want := wantErr[f.Key]; !errors.Is(f, want) {
			t.Errorf("%v: error %v, want %v", f.Key.Orig, f.Err, want)
		}
	}

	// Update and Delete of flows that do not exist: ENOENT for each.
	missing := []ct.Flow{plain(ct.ProtoUDP, "10.9.0.1", "10.2.0.1", 1, 2), plain(ct.ProtoUDP, "10.9.0.1", "10.2.0.1", 3, 4)}
	for _, op := range []Op{Update, Delete} {
		res, err := c.Write(context.Background(), op, missing, WriteOptions{})
		if err != nil {
			t.Fatalf("Write(%v): %v", op, err)
		}
		if res.OK != 0 || len(res.Failed) != 2 {
			t.Fatalf("Write(%v) = %+v, want 2 failed", op, res)
		}
		for i, f := range res.Failed {
			if f.Key != missing[i].Key() || !errors.Is(f, unix.ENOENT) {
				t.Errorf("Write(%v) failure %d = %v, want %v ENOENT", op, i, f, missing[i].Key().Orig)
			}
		}
	}

	// A cancelled context: nothing written, every flow reported.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err = c.Write(ctx, Create, missing, WriteOptions{})
	if !errors.Is(err, context.Canceled) || len(res.Failed) != 2 || res.OK != 0 {
		t.Errorf("Write(cancelled) = %+v, %v; want 2 failed, context.Canceled", res, err)
	}
}

func TestUpdate(t *testing.T) {
	n := newNS(t)
	c := n.dial()
	f := with(plain(ct.ProtoTCP, "10.1.0.1", "10.2.0.1", 40001, 80), func(f *ct.Flow) { f.Mark = 5 })
	write(t, c, Create, []ct.Flow{f}, WriteOptions{})

	// Mark back to 0, a new timeout, a TCP state change.
	u := with(f, func(f *ct.Flow) { f.Mark, f.Timeout, f.TCP.State = 0, 77, ct.TCPFinWait })
	write(t, c, Update, []ct.Flow{u}, WriteOptions{})
	checkFlow(t, u, dumpMap(t, c)[f.Key()], time.Second)

	// Timeout 0 keeps the current one.
	u2 := with(u, func(f *ct.Flow) { f.Timeout, f.Mark = 0, 3 })
	write(t, c, Update, []ct.Flow{u2}, WriteOptions{})
	u2.Timeout = 77
	checkFlow(t, u2, dumpMap(t, c)[f.Key()], time.Second)
}

func TestDeleteBatch(t *testing.T) {
	n := newNS(t)
	c := n.dial()
	var flows []ct.Flow
	for i := range 50 {
		flows = append(flows, plain(ct.ProtoTCP, "10.1.0.1", "10.2.0.1", uint16(20000+i), 80))
	}
	flows = append(flows, with(flows[0], func(f *ct.Flow) { f.Zone = 7 }))
	write(t, c, Create, flows, WriteOptions{BatchSize: 16})

	// A dump cut short by its context leaves the socket clean for the next.
	ctx, cancel := context.WithCancel(context.Background())
	var seen int
	err := c.Dump(ctx, func(ct.Flow) bool { seen++; cancel(); return true })
	if !errors.Is(err, context.Canceled) || seen != 1 {
		t.Errorf("cancelled Dump: %d flows, %v; want 1, context.Canceled", seen, err)
	}
	if got := dumpMap(t, c); len(got) != len(flows) {
		t.Errorf("dump after a cancelled one: %d flows, want %d", len(got), len(flows))
	}

	del := []ct.Flow{flows[0], flows[7], flows[49]} // zone 0 only: the zone 7 twin stays
	write(t, c, Delete, del, WriteOptions{})
	got := dumpMap(t, c)
	if len(got) != len(flows)-len(del) {
		t.Errorf("table has %d flows, want %d", len(got), len(flows)-len(del))
	}
	gone := map[ct.Key]bool{}
	for _, f := range del {
		gone[f.Key()] = true
	}
	for _, f := range flows {
		if _, ok := got[f.Key()]; ok == gone[f.Key()] {
			t.Errorf("flow %v zone %d: in table %v, deleted %v", f.Orig, f.Zone, ok, gone[f.Key()])
		}
	}
}
