package proto

import (
	"reflect"
	"testing"
	"time"
)

// TestCoalesce: with Config.Coalesce, data after a quiet spell leaves at
// once; data that follows a data message within Coalesce waits until it
// fills a message or until Coalesce has passed, and NextTimeout says when.
// Nothing is lost or reordered on the way.
func TestCoalesce(t *testing.T) {
	const hold = time.Millisecond
	// 13-byte records; a message is full at 400-160 = 240 bytes: 19 records.
	cfg := Config{MaxPayload: 400, Coalesce: hold}
	a, b := newNode("a", cfg, 1, table{}), newNode("b", cfg, 1, table{})
	t0 := time.Unix(1_000_000, 0)
	next := uint32(0)
	queue := func(n int) {
		for range n {
			a.own[next] = uint64(next) + 1
			a.ep.Queue(keyOf(next))
			next++
		}
	}
	// send runs a's Output at now, hands the payloads to b and returns
	// how many data messages left.
	send := func(now time.Time) uint64 {
		t.Helper()
		before := a.ep.Stats().DataSent
		for _, p := range a.ep.Output(now, nil) {
			out, err := b.ep.Input(a.epoch, p, now, nil)
			if err != nil {
				t.Fatalf("b: Input: %v", err)
			}
			for _, d := range out {
				b.apply(t, d)
			}
		}
		return a.ep.Stats().DataSent - before
	}

	queue(1)
	if n := send(t0); n != 1 {
		t.Fatalf("after a quiet spell: %d data messages sent, want 1 at once", n)
	}
	queue(5)
	at := t0.Add(hold / 10)
	if n := send(at); n != 0 {
		t.Fatalf("5 records right after a message: %d messages sent, want them held", n)
	}
	if got := a.ep.NextTimeout(at); !got.Equal(t0.Add(hold)) {
		t.Errorf("NextTimeout = %v after t0, want the end of the hold, %v", got.Sub(t0), hold)
	}
	queue(20) // 25 pending: more than a message
	at = t0.Add(hold / 5)
	if n := send(at); n != 1 {
		t.Fatalf("25 records pending: %d messages sent, want 1 full one (the rest held)", n)
	}
	if n := send(t0.Add(hold / 2)); n != 0 {
		t.Fatalf("the remainder: %d messages sent before the hold ends, want 0", n)
	}
	// The hold runs from the last data message, at hold/5.
	if n := send(at.Add(hold)); n != 1 {
		t.Fatalf("the remainder: %d messages sent when the hold ended, want 1", n)
	}
	if len(b.peer) != int(next) {
		t.Fatalf("b has %d of %d records", len(b.peer), next)
	}
	for id, v := range a.own {
		if b.peer[id] != v {
			t.Errorf("record %d: b has %d, want %d", id, b.peer[id], v)
		}
	}

	// Without Coalesce nothing waits.
	c := newNode("c", Config{MaxPayload: 400}, 1, table{})
	for id := range uint32(3) {
		c.own[id] = 1
		c.ep.Queue(keyOf(id))
		c.ep.Output(t0, nil)
	}
	if n := c.ep.Stats().DataSent; n != 3 {
		t.Errorf("without Coalesce: %d data messages for 3 records queued one by one, want 3", n)
	}
}

// TestStatsAdd: every counter of Stats is summed (a field added to Stats
// and forgotten in Add fails here).
func TestStatsAdd(t *testing.T) {
	var one Stats
	v := reflect.ValueOf(&one).Elem()
	for i := range v.NumField() {
		v.Field(i).SetUint(uint64(i + 1))
	}
	var sum Stats
	sum.Add(one)
	sum.Add(one)
	w := reflect.ValueOf(sum)
	for i := range w.NumField() {
		if got := w.Field(i).Uint(); got != uint64(2*(i+1)) {
			t.Errorf("%s: %d, want %d", w.Type().Field(i).Name, got, 2*(i+1))
		}
	}
}
