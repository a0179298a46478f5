package proto

import (
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/google/go-cmp/cmp"
)

// TestUnreliable: in alarm mode what is queued goes out at once in
// ALARM_DATA messages, without sequence numbers: nothing waits for an ACK,
// nothing is resent, no bulk marker is sent, and the receiver delivers the
// records as they come.
func TestUnreliable(t *testing.T) {
	cfg := Config{Unreliable: true, MaxPayload: 400}
	a, b := newNode("a", cfg, 1, table{}), newNode("b", cfg, 1, table{})
	now := time.Unix(1_000_000, 0)
	exchange := func() {
		for _, p := range a.ep.Output(now, nil) {
			out, err := b.ep.Input(a.epoch, p, now, nil)
			if err != nil {
				t.Fatalf("b: Input: %v", err)
			}
			for _, d := range out {
				if d.Kind != DeliverRecords {
					t.Fatalf("b: delivery of kind %d in alarm mode", d.Kind)
				}
				b.apply(t, d)
			}
		}
		for _, p := range b.ep.Output(now, nil) {
			if _, err := a.ep.Input(b.epoch, p, now, nil); err != nil {
				t.Fatalf("a: Input: %v", err)
			}
		}
	}
	exchange() // keep-alives: each meets the other
	want := map[uint32]uint64{}
	for id := range uint32(200) {
		a.own[id] = uint64(id) + 1
		want[id] = uint64(id) + 1
		a.ep.Queue(keyOf(id))
	}
	a.ep.StartBulk(func(yield func(ct.Key) bool) {}) // markers only: skipped
	out := a.ep.Output(now, nil)
	if len(out) < 2 {
		t.Fatalf("200 records in %d payloads of at most 400 bytes", len(out))
	}
	for _, p := range out {
		if len(p) > 400 {
			t.Errorf("payload of %d bytes, max 400", len(p))
		}
		if _, err := b.ep.Input(a.epoch, p, now, nil); err != nil {
			t.Fatal(err)
		}
	}
	if !a.ep.Idle() {
		t.Errorf("sender not idle after sending: something waits for an ACK")
	}
	// Deliver them (again, as a refresh does).
	for id := range uint32(200) {
		a.ep.Queue(keyOf(id))
	}
	now = now.Add(time.Second)
	exchange()
	if diff := cmp.Diff(want, b.peer); diff != "" {
		t.Errorf("peer's copy (-want +got):\n%s", diff)
	}
	// A deletion goes out at once.
	delete(a.own, 7)
	delete(want, 7)
	a.ep.Queue(keyOf(7))
	exchange()
	if diff := cmp.Diff(want, b.peer); diff != "" {
		t.Errorf("after a deletion (-want +got):\n%s", diff)
	}
	now = now.Add(10 * time.Second)
	exchange()
	if s := a.ep.Stats(); s.Resent != 0 {
		t.Errorf("%d messages resent in alarm mode", s.Resent)
	}
	if s := b.ep.Stats(); s.AcksSent != 0 || s.NacksSent != 0 {
		t.Errorf("receiver sent %d ACKs, %d NACKs in alarm mode", s.AcksSent, s.NacksSent)
	}
	if !b.ep.PeerUp(now) || !a.ep.PeerUp(now) {
		t.Errorf("keep-alives: peer up a %v, b %v", a.ep.PeerUp(now), b.ep.PeerUp(now))
	}
}
