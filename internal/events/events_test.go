package events

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)

func newBus() *Bus {
	b := New()
	b.now = func() time.Time { return t0 }
	return b
}

// next reads one event, failing the test if none comes within a second.
func next(t *testing.T, s *Sub) (Event, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return s.Next(ctx)
}

func TestPublishReachesEverySubscriber(t *testing.T) {
	b := newBus()
	a, c := b.Subscribe(0), b.Subscribe(4)
	defer a.Close()
	defer c.Close()
	want := []Event{
		{Time: t0, Type: GroupTransition, Group: "fw", From: "BACKUP", To: "MASTER", Reason: "master-down"},
		{Time: t0.Add(time.Second), Type: PeerUp, Peer: "fw2", Address: "10.10.3.2"},
	}
	b.Publish(Event{Type: GroupTransition, Group: "fw", From: "BACKUP", To: "MASTER", Reason: "master-down"})
	b.Publish(want[1])
	for _, s := range []*Sub{a, c} {
		var got []Event
		for range want {
			e, err := next(t, s)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, e)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	}
}

// TestSlowReader: a subscriber that falls behind by more than its buffer
// gets what the buffer holds, one error event counting what it missed,
// then the end; Publish never waited for it, and the others go on.
func TestSlowReader(t *testing.T) {
	b := newBus()
	slow, fast := b.Subscribe(3), b.Subscribe(100)
	defer slow.Close()
	defer fast.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 10 {
			b.Publish(Event{Type: PeerUp, Priority: i + 1})
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked on a reader that reads nothing")
	}
	for i := range 3 {
		e, err := next(t, slow)
		if err != nil || e.Priority != i+1 {
			t.Fatalf("slow reader event %d: %+v, %v; want the buffered one", i, e, err)
		}
	}
	e, err := next(t, slow)
	if err != nil || e.Type != Error || e.Dropped != 7 || e.Error != "reader too slow: 7 events dropped; reconnect" {
		t.Errorf("after the buffer: %+v, %v; want the error event with 7 dropped", e, err)
	}
	if e, err := next(t, slow); !errors.Is(err, io.EOF) {
		t.Errorf("after the error event: %+v, %v; want io.EOF", e, err)
	}
	for i := range 10 {
		if e, err := next(t, fast); err != nil || e.Priority != i+1 {
			t.Fatalf("fast reader event %d: %+v, %v", i, e, err)
		}
	}
}

func TestCloseEndsSubscriptions(t *testing.T) {
	b := newBus()
	s := b.Subscribe(0)
	defer s.Close()
	b.Publish(Event{Type: Stopping, Reason: "terminated"})
	b.Close()
	b.Publish(Event{Type: PeerDown}) // after Close: nobody gets it
	if e, err := next(t, s); err != nil || e.Type != Stopping {
		t.Errorf("after Close: %+v, %v; want the event published before it", e, err)
	}
	if _, err := next(t, s); !errors.Is(err, io.EOF) {
		t.Errorf("err = %v, want io.EOF once the buffer is empty", err)
	}
	late := b.Subscribe(0)
	defer late.Close()
	if _, err := next(t, late); !errors.Is(err, io.EOF) {
		t.Errorf("subscribing to a closed bus: err = %v, want io.EOF", err)
	}
}

// TestNextWaits: Next waits for the next event, and ends with ctx.
func TestNextWaits(t *testing.T) {
	b := newBus()
	s := b.Subscribe(0)
	defer s.Close()
	var wg sync.WaitGroup
	got := make(chan Event, 1)
	wg.Go(func() {
		e, _ := next(t, s)
		got <- e
	})
	time.Sleep(10 * time.Millisecond)
	b.Publish(Event{Type: VIPRestored, Instance: "lan", VIPs: []string{"10.10.1.1/24"}})
	wg.Wait()
	if e := <-got; e.Type != VIPRestored {
		t.Errorf("Next = %+v, want the event published while it waited", e)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Next with a cancelled ctx: err = %v", err)
	}
}

func TestUnsubscribe(t *testing.T) {
	b := newBus()
	s := b.Subscribe(1)
	if n := b.Subscribers(); n != 1 {
		t.Fatalf("%d subscribers, want 1", n)
	}
	s.Close()
	s.Close() // twice is harmless
	b.Publish(Event{Type: PeerUp})
	if n := b.Subscribers(); n != 0 {
		t.Errorf("%d subscribers after Close, want 0", n)
	}
}

// BenchmarkPublish: what the daemon pays per event with readers
// attached, one of them dropped.
func BenchmarkPublish(b *testing.B) {
	bus := New()
	for range 3 {
		s := bus.Subscribe(1 << 20)
		defer s.Close()
	}
	dropped := bus.Subscribe(1)
	defer dropped.Close()
	e := Event{Type: GroupTransition, Group: "fw", From: "BACKUP", To: "MASTER"}
	for b.Loop() {
		bus.Publish(e)
	}
}
