package ctdwire

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Unix(1_800_000_000, 0)

func ctl(f Flags, seq, from, to uint32) []byte {
	return AppendMsg(nil, &Msg{Type: TypeCtl, Flags: f, Seq: seq, From: from, To: to})
}

func data(t *testing.T, flags Flags, seq uint32, id uint16, v uint32) []byte {
	t.Helper()
	f := simFlow(id, v)
	b, d := AppendFlow(nil, TypeCTUpd, flags, seq, &f)
	if d != 0 {
		t.Fatalf("dropped %v", d)
	}
	return b
}

// sent parses what an Output returned into messages without attributes.
func sent(t *testing.T, ds [][]byte) []Msg {
	t.Helper()
	var out []Msg
	for _, d := range ds {
		ms, err := ParseDatagram(nil, d)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			m.Attrs = nil
			out = append(out, m)
		}
	}
	return out
}

func TestEndpointHello(t *testing.T) {
	e := New(Config{InitialSeq: 100}, table{})
	// Our first message says HELLO (an ALIVE: nothing else to send).
	got := sent(t, e.Output(t0, nil))
	want := []Msg{{Type: TypeCtl, Flags: FlagAlive | FlagHello, Seq: 100}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	// The peer's HELLO is first contact; its HELLO_BACK ends ours.
	if _, err := e.Input(ctl(FlagAlive|FlagHello|FlagHelloBack, 5000, 0, 0), t0, nil); err != nil {
		t.Fatal(err)
	}
	if !e.PeerRestarted() || !e.HelloDone() {
		t.Fatalf("restarted/hello done not reported")
	}
	// Our next message answers with HELLO_BACK, once, and no HELLO.
	got = sent(t, e.Output(t0.Add(time.Second), nil))
	want = []Msg{{Type: TypeCtl, Flags: FlagAck | FlagHelloBack, Seq: 101, From: 5000, To: 5000}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	got = sent(t, e.Output(t0.Add(2*time.Second), nil))
	want = []Msg{{Type: TypeCtl, Flags: FlagAlive, Seq: 102}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

func TestEndpointReceiver(t *testing.T) {
	for _, tc := range []struct {
		name      string
		in        func(t *testing.T) [][]byte
		delivered int
		out       []Msg // without Seq
		stats     Stats
	}{
		{
			name: "in order, window of 3 acknowledged",
			in: func(t *testing.T) [][]byte {
				return [][]byte{data(t, 0, 10, 1, 1), data(t, 0, 11, 2, 1), data(t, 0, 12, 3, 1), data(t, 0, 13, 4, 1)}
			},
			delivered: 4,
			out:       []Msg{{Type: TypeCtl, Flags: FlagAck | FlagHello, From: 10, To: 12}},
			stats:     Stats{Delivered: 4},
		},
		{
			name: "gap: ACK before it, NACK of it, the message taken",
			in: func(t *testing.T) [][]byte {
				return [][]byte{data(t, 0, 10, 1, 1), data(t, 0, 13, 2, 1)}
			},
			delivered: 2,
			out: []Msg{{Type: TypeCtl, Flags: FlagAck | FlagHello, From: 10, To: 10},
				{Type: TypeCtl, Flags: FlagNack | FlagHello, From: 11, To: 12}},
			stats: Stats{Delivered: 2, Lost: 2},
		},
		{
			name: "late and duplicate dropped",
			in: func(t *testing.T) [][]byte {
				return [][]byte{data(t, 0, 10, 1, 1), data(t, 0, 12, 2, 1), data(t, 0, 11, 3, 1), data(t, 0, 12, 2, 1)}
			},
			delivered: 2,
			out: []Msg{{Type: TypeCtl, Flags: FlagAck | FlagHello, From: 10, To: 10},
				{Type: TypeCtl, Flags: FlagNack | FlagHello, From: 11, To: 11}},
			stats: Stats{Delivered: 2, Lost: 1, Late: 2},
		},
		{
			name: "an ACK whose to is before its from is malformed",
			in: func(t *testing.T) [][]byte {
				return [][]byte{ctl(FlagAck, 10, 9, 5)}
			},
			stats: Stats{Malformed: 1},
		},
		{
			name: "RESYNC asked",
			in: func(t *testing.T) [][]byte {
				return [][]byte{ctl(FlagResync, 10, 0, 0)}
			},
			// Nothing else to send: the ACK goes instead of an ALIVE.
			out:   []Msg{{Type: TypeCtl, Flags: FlagAck | FlagHello, From: 10, To: 10}},
			stats: Stats{ResyncsAsked: 1},
		},
		{
			name: "a state message with control flags is malformed",
			in: func(t *testing.T) [][]byte {
				return [][]byte{data(t, FlagAck, 10, 1, 1)}
			},
			stats: Stats{Malformed: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := New(Config{InitialSeq: 1, Window: 3}, table{})
			n := 0
			for _, d := range tc.in(t) {
				ms, _ := e.Input(d, t0, nil)
				n += len(ms)
			}
			if n != tc.delivered {
				t.Errorf("delivered %d, want %d", n, tc.delivered)
			}
			got := sent(t, e.Output(t0, nil))
			for i := range got {
				got[i].Seq = 0
			}
			if tc.out == nil && len(got) == 1 && got[0].Flags&FlagAlive != 0 {
				got = nil
			}
			if diff := cmp.Diff(tc.out, got); diff != "" {
				t.Errorf("sent (-want +got):\n%s", diff)
			}
			st := e.Stats()
			st.Sent, st.AcksSent, st.NacksSent, st.AlivesSent = 0, 0, 0, 0
			if diff := cmp.Diff(tc.stats, st); diff != "" {
				t.Errorf("stats (-want +got):\n%s", diff)
			}
		})
	}
}

// TestEndpointSender: a NACK resends the latest state of the objects it
// covers with new numbers; an ACK forgets them; ResendAfter is the
// safety net.
func TestEndpointSender(t *testing.T) {
	own := table{1: 1, 2: 1}
	e := New(Config{InitialSeq: 100, ResendAfter: 10 * time.Second}, own)
	e.Queue(simKey(1))
	e.Queue(simKey(2))
	got := sent(t, e.Output(t0, nil))
	if len(got) != 2 || got[0].Seq != 100 || got[1].Seq != 101 {
		t.Fatalf("sent %v", got)
	}
	own[1] = 2
	delete(own, 2)
	e.Input(ctl(FlagNack, 7, 100, 101), t0, nil)
	ds := e.Output(t0, nil)
	ms, _ := ParseDatagram(nil, ds[0])
	if len(ms) != 2 || ms[0].Seq != 102 || ms[1].Seq != 103 {
		t.Fatalf("resent %v", ms)
	}
	f1, _, _ := ms[0].Flow()
	if ms[0].Type != TypeCTUpd || f1.Mark != 2 || ms[1].Type != TypeCTDel {
		t.Errorf("resent %v mark %d, %v; want the latest states", ms[0].Type, f1.Mark, ms[1].Type)
	}
	e.Input(ctl(FlagAck, 8, 102, 102), t0, nil)
	if e.Unacked() != 1 {
		t.Fatalf("unacked %d, want 1", e.Unacked())
	}
	// Object 2's message is never acknowledged: it goes again.
	e.Output(t0.Add(5*time.Second), nil)
	got = sent(t, e.Output(t0.Add(11*time.Second), nil))
	if len(got) != 1 || got[0].Type != TypeCTDel {
		t.Fatalf("after ResendAfter: %v", got)
	}
	if st := e.Stats(); st.Resent != 3 {
		t.Errorf("resent %d, want 3", st.Resent)
	}
}

// TestEndpointRestart: a peer's HELLO after it stopped saying HELLO is a
// restart, taken whatever its number; a late HELLO of the running peer
// is dropped, unless the peer was quiet for MaxReorder.
func TestEndpointRestart(t *testing.T) {
	e := New(Config{InitialSeq: 1}, table{})
	in := func(d []byte, at time.Time) int {
		ms, err := e.Input(d, at, nil)
		if err != nil {
			t.Fatal(err)
		}
		return len(ms)
	}
	in(data(t, FlagHello, 1000, 1, 1), t0)
	in(data(t, FlagHello, 1001, 1, 2), t0)
	if !e.PeerRestarted() {
		t.Fatal("first contact not reported")
	}
	in(data(t, 0, 1002, 1, 3), t0)
	// A late HELLO of the same run: dropped.
	if in(data(t, FlagHello, 1001, 1, 2), t0.Add(10*time.Millisecond)) != 0 || e.PeerRestarted() {
		t.Fatal("a late HELLO was taken")
	}
	// The peer restarts with lower numbers after a silence: taken.
	if in(data(t, FlagHello, 500, 1, 1), t0.Add(2*time.Second)) != 1 || !e.PeerRestarted() {
		t.Fatal("restart with lower numbers not taken")
	}
	// A restart with lower numbers without a silence: taken at the
	// fourth late HELLO, the three before NACKed.
	in(data(t, 0, 501, 1, 1), t0.Add(2*time.Second))
	at := t0.Add(2*time.Second + 5*time.Millisecond)
	for i, seq := range []uint32{100, 101, 102} {
		if in(data(t, FlagHello, seq, 1, 1), at.Add(time.Duration(i)*time.Millisecond)) != 0 {
			t.Fatalf("late HELLO %d taken", seq)
		}
	}
	if in(data(t, FlagHello, 103, 1, 1), at.Add(3*time.Millisecond)) != 1 || !e.PeerRestarted() {
		t.Fatal("fourth late HELLO not taken as a restart")
	}
	var nack []Msg
	for _, m := range sent(t, e.Output(at.Add(4*time.Millisecond), nil)) {
		if m.Flags&FlagNack != 0 {
			nack = append(nack, m)
		}
	}
	if len(nack) != 1 || nack[0].From != 100 || nack[0].To != 102 {
		t.Errorf("NACKs %v, want 100..102", nack)
	}
	// And with higher ones: taken, no NACK of the old run's gap.
	in(data(t, 0, 104, 1, 1), t0.Add(3*time.Second))
	if in(data(t, FlagHello, 90000, 1, 1), t0.Add(4*time.Second)) != 1 || !e.PeerRestarted() {
		t.Fatal("restart with higher numbers not taken")
	}
	if st := e.Stats(); st.Lost != 0 || st.NacksSent != 1 {
		t.Errorf("restarts counted as losses: %+v", st)
	}
}

func TestBulkWatch(t *testing.T) {
	w := BulkWatch{Quiet: 2 * time.Second, Max: 10 * time.Second}
	if w.Done(t0) {
		t.Fatal("done before start")
	}
	w.Start(t0)
	w.Observe(t0.Add(time.Second))
	if w.Done(t0.Add(2500 * time.Millisecond)) {
		t.Fatal("done 1.5 s after a message")
	}
	if !w.Done(t0.Add(3 * time.Second)) {
		t.Fatal("not done 2 s after the last message")
	}
	if w.Done(t0.Add(4*time.Second)) || w.Running() {
		t.Fatal("done twice")
	}
	w.Start(t0)
	for i := range 20 {
		w.Observe(t0.Add(time.Duration(i) * time.Second))
		if w.Done(t0.Add(time.Duration(i) * time.Second)) {
			if i < 10 {
				t.Fatalf("done at %d s", i)
			}
			return
		}
	}
	t.Fatal("Max did not bound a busy bulk")
}
