package addr

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSchedule(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	g := GARP{Repeat: 3, Interval: 50 * time.Millisecond}
	tests := []struct {
		name string
		due  []time.Time
		at   time.Time
		from int
		want []time.Time
	}{
		{"rest of a first burst", nil, t0, 1, []time.Time{ms(50), ms(100)}},
		{"whole delayed burst", nil, ms(300), 0, []time.Time{ms(300), ms(350), ms(400)}},
		{"merged in order", []time.Time{ms(50), ms(100)}, ms(60), 1, []time.Time{ms(50), ms(100), ms(110), ms(160)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := schedule(tt.due, g, tt.at, tt.from)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("schedule (-want +got):\n%s", diff)
			}
		})
	}
	if got := schedule(nil, GARP{Repeat: 1}, t0, 1); len(got) != 0 {
		t.Errorf("Repeat 1 leaves %v after the first message, want nothing", got)
	}
}

func TestEarliest(t *testing.T) {
	t0 := time.Unix(1000, 0)
	later := t0.Add(time.Second)
	tests := []struct {
		name    string
		due     []time.Time
		refresh time.Time
		want    time.Time
		ok      bool
	}{
		{"nothing", nil, time.Time{}, time.Time{}, false},
		{"refresh only", nil, later, later, true},
		{"due only", []time.Time{t0}, time.Time{}, t0, true},
		{"due first", []time.Time{t0}, later, t0, true},
		{"refresh first", []time.Time{later}, t0, t0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := earliest(tt.due, tt.refresh)
			if !got.Equal(tt.want) || ok != tt.ok {
				t.Errorf("earliest = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}
