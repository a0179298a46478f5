package kernel

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
)

// TestGet: Get finds each flow by its original tuple and zone, across
// batches, in the order asked, and counts those the table lacks; a Get cut
// short by its context leaves the socket clean for the next.
func TestGet(t *testing.T) {
	n := newNS(t)
	c := n.dial()
	var flows []ct.Flow
	for i := range GetBatch + 40 {
		flows = append(flows, with(plain(ct.ProtoUDP, "10.1.0.1", "10.2.0.1", uint16(20000+i), 53), func(f *ct.Flow) {
			f.Timeout = uint32(100 + i%50)
		}))
	}
	flows = append(flows,
		with(flows[0], func(f *ct.Flow) { f.Zone, f.Timeout = 7, 33 }), // same tuple, another zone
		plain(ct.ProtoTCP, "fd00:10::1", "fd00:10::2", 40000, 443),
		echo("10.1.0.1", "10.2.0.1", 9),
	)
	write(t, c, Create, flows, WriteOptions{})

	absent := []ct.Key{
		key(plain(ct.ProtoUDP, "10.1.0.1", "10.2.0.1", 19999, 53)),
		key(with(flows[1], func(f *ct.Flow) { f.Zone = 9 })),
		key(plain(ct.ProtoTCP, "fd00:10::1", "fd00:10::2", 40001, 443)),
	}
	var keys []ct.Key
	for i, f := range flows {
		keys = append(keys, f.Key())
		if i%100 == 50 {
			keys = append(keys, absent[i/100])
		}
	}
	var got []ct.Flow
	missing, err := c.Get(context.Background(), keys, func(f ct.Flow) { got = append(got, f) })
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if missing != len(absent) {
		t.Errorf("Get: %d missing, want %d", missing, len(absent))
	}
	if len(got) != len(flows) {
		t.Fatalf("Get: %d flows, want %d", len(got), len(flows))
	}
	for i := range flows {
		if got[i].Key() != flows[i].Key() {
			t.Fatalf("Get's flow %d: %v, want %v: not in the order asked", i, got[i].Key(), flows[i].Key())
		}
		checkFlow(t, flows[i], got[i], time.Second)
	}

	// Cut short in its first batch: the next Get skips the abandoned
	// batch's answers.
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := c.Get(ctx, keys, func(ct.Flow) { cancel() }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Get: %v, want context.Canceled", err)
	}
	got = got[:0]
	if _, err := c.Get(context.Background(), keys[:3], func(f ct.Flow) { got = append(got, f) }); err != nil || len(got) != 3 || got[2].Key() != keys[2] {
		t.Errorf("Get after a cancelled one: %d flows, %v; want the 3 asked", len(got), err)
	}
}

func key(f ct.Flow) ct.Key { return f.Key() }
