package auth

import (
	"errors"
	"testing"
)

func hdr(epoch uint32, seq uint64) Header {
	return Header{Version: Version, Sender: 2, Epoch: epoch, Seq: seq}
}

// step is one datagram offered to a guard and the verdict expected.
type step struct {
	h   Header
	err error
}

func TestReplayGuard(t *testing.T) {
	for _, tt := range []struct {
		name     string
		minEpoch uint32
		steps    []step
	}{
		{"in order", 0, []step{{hdr(1, 1), nil}, {hdr(1, 2), nil}, {hdr(1, 3), nil}}},
		{"first seq is anything", 0, []step{{hdr(1, 1<<50), nil}, {hdr(1, 1<<50+1), nil}}},
		{"duplicate", 0, []step{{hdr(1, 1), nil}, {hdr(1, 2), nil}, {hdr(1, 2), ErrReplay}, {hdr(1, 1), ErrReplay}}},
		{"reorder within window accepted once", 0, []step{
			{hdr(1, 10), nil}, {hdr(1, 8), nil}, {hdr(1, 9), nil}, {hdr(1, 8), ErrReplay}, {hdr(1, 9), ErrReplay}, {hdr(1, 11), nil},
		}},
		{"window edge", 0, []step{
			{hdr(1, 5000), nil},
			{hdr(1, 5000-ReplayWindow+1), nil}, // the oldest the window holds
			{hdr(1, 5000-ReplayWindow), ErrReplay},
			{hdr(1, 5000-ReplayWindow+1), ErrReplay},
		}},
		{"too old", 0, []step{{hdr(1, 5000), nil}, {hdr(1, 1), ErrReplay}}},
		{"slide forgets what left the window", 0, []step{
			{hdr(1, 1), nil}, {hdr(1, 2+ReplayWindow), nil}, {hdr(1, 3), nil}, {hdr(1, 3), ErrReplay}, {hdr(1, 2), ErrReplay},
		}},
		{"big jump clears the window", 0, []step{
			{hdr(1, 7), nil}, {hdr(1, 7+10*ReplayWindow), nil}, {hdr(1, 7+9*ReplayWindow+7), nil}, {hdr(1, 7+10*ReplayWindow), ErrReplay},
		}},
		{"same slot, another lap", 0, []step{
			{hdr(1, 3), nil}, {hdr(1, 3+ReplayWindow), nil}, {hdr(1, 4+ReplayWindow), nil}, {hdr(1, 3+ReplayWindow), ErrReplay},
		}},
		{"new epoch resets", 0, []step{
			{hdr(1, 100), nil}, {hdr(2, 1), nil}, {hdr(2, 2), nil}, {hdr(2, 1), ErrReplay},
		}},
		{"old epoch rejected", 0, []step{
			{hdr(1, 1), nil}, {hdr(3, 1), nil}, {hdr(1, 2), ErrReplay}, {hdr(2, 1), ErrReplay}, {hdr(3, 2), nil},
		}},
		{"restored epoch", 5, []step{{hdr(4, 1<<20), ErrReplay}, {hdr(5, 9), nil}, {hdr(5, 9), ErrReplay}, {hdr(6, 1), nil}}},
		{"max seq", 0, []step{{hdr(1, 1<<64-2), nil}, {hdr(1, 1<<64-1), nil}, {hdr(1, 1<<64-1), ErrReplay}, {hdr(1, 1<<64-3), nil}}},
		{"reflected", 0, []step{{Header{Version: Version, Sender: 1, Epoch: 9, Seq: 1}, ErrReflected}, {hdr(1, 1), nil}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := NewReplayGuard(tt.minEpoch)
			g.SetSelf(1)
			for i, s := range tt.steps {
				if err := g.Check(s.h); !errors.Is(err, s.err) {
					t.Fatalf("step %d: Check(epoch %d seq %d) = %v, want %v", i, s.h.Epoch, s.h.Seq, err, s.err)
				}
				if err := g.Check(s.h); !errors.Is(err, s.err) {
					t.Fatalf("step %d: Check recorded the datagram: second Check = %v", i, err)
				}
				g.Accept(s.h)
			}
		})
	}
}

func TestReplayGuardEpoch(t *testing.T) {
	g := NewReplayGuard(3)
	if g.Epoch() != 3 {
		t.Errorf("Epoch() = %d, want 3", g.Epoch())
	}
	g.Accept(hdr(2, 1)) // rejected: ignored
	if g.Epoch() != 3 {
		t.Errorf("Epoch() after an old epoch = %d, want 3", g.Epoch())
	}
	g.Accept(hdr(8, 1))
	if g.Epoch() != 8 {
		t.Errorf("Epoch() = %d, want 8", g.Epoch())
	}
}

func TestReplayGuardNoSelf(t *testing.T) {
	var g ReplayGuard // the zero value: any epoch, no reflection check
	for _, h := range []Header{{Epoch: 0, Seq: 0}, {Sender: 0, Epoch: 0, Seq: 1}} {
		if err := g.Check(h); err != nil {
			t.Fatalf("Check(%+v) = %v", h, err)
		}
		g.Accept(h)
	}
}

// TestReplayGuardRandomOrder offers a window's worth of sequence numbers
// in a scrambled order, each twice: each is accepted exactly once.
func TestReplayGuardRandomOrder(t *testing.T) {
	g := NewReplayGuard(0)
	const n = ReplayWindow
	accepted := 0
	for i := range 2 * n {
		s := uint64(i*769%n) + 1 // 769 is prime to 1024: a permutation, twice
		if g.Check(hdr(1, s)) == nil {
			g.Accept(hdr(1, s))
			accepted++
		}
	}
	if accepted != n {
		t.Errorf("accepted %d, want %d", accepted, n)
	}
}
