package lab

import (
	"encoding/binary"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// ipv4VRRP builds an IPv4 packet carrying a VRRP header (no addresses,
// no checksums: the parser checks neither).
func ipv4VRRP(src [4]byte, version, typ, vrid, prio byte, interval uint16) []byte {
	p := make([]byte, 20+12)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
	p[8] = 255
	p[9] = 112
	copy(p[12:16], src[:])
	copy(p[16:20], []byte{224, 0, 0, 18})
	v := p[20:]
	v[0] = version<<4 | typ
	v[1] = vrid
	v[2] = prio
	v[3] = 1
	binary.BigEndian.PutUint16(v[4:6], interval)
	return p
}

// cmpAddr compares netip.Addr by value.
var cmpAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func TestParseIPv4Advert(t *testing.T) {
	fw1 := netip.MustParseAddr("10.10.1.2")
	v3 := ipv4VRRP(fw1.As4(), 3, 1, 51, 150, 2)
	v2 := ipv4VRRP(fw1.As4(), 2, 1, 52, 100, 0)
	v2[20+5] = 1 // Adver Int 1 s
	tcp := ipv4VRRP(fw1.As4(), 3, 1, 51, 150, 2)
	tcp[9] = 6
	frag := ipv4VRRP(fw1.As4(), 3, 1, 51, 150, 2)
	frag[6] = 0x20 // MF
	withOptions := append(append([]byte{0x46}, v3[1:20]...), append([]byte{1, 1, 1, 1}, v3[20:]...)...)
	binary.BigEndian.PutUint16(withOptions[2:4], uint16(len(withOptions)))
	tests := []struct {
		name string
		p    []byte
		want Advert
		ok   bool
	}{
		{"v3 20 ms", v3, Advert{Src: fw1, Version: 3, VRID: 51, Priority: 150, Interval: 20 * time.Millisecond}, true},
		{"v2 1 s", v2, Advert{Src: fw1, Version: 2, VRID: 52, Priority: 100, Interval: time.Second}, true},
		{"ip options", withOptions, Advert{Src: fw1, Version: 3, VRID: 51, Priority: 150, Interval: 20 * time.Millisecond}, true},
		{"not VRRP", tcp, Advert{}, false},
		{"fragment", frag, Advert{}, false},
		{"not an advert", ipv4VRRP(fw1.As4(), 3, 2, 51, 150, 2), Advert{}, false},
		{"version 4", ipv4VRRP(fw1.As4(), 4, 1, 51, 150, 2), Advert{}, false},
		{"truncated", v3[:27], Advert{}, false},
		{"short", v3[:10], Advert{}, false},
		{"IPv6", append([]byte{0x60}, v3[1:]...), Advert{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseIPv4Advert(tt.p)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if diff := cmp.Diff(tt.want, got, cmpAddr); diff != "" {
				t.Errorf("advert (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAdvertJitter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms ...float64) []time.Time {
		var ts []time.Time
		for _, m := range ms {
			ts = append(ts, t0.Add(time.Duration(m*float64(time.Millisecond))))
		}
		return ts
	}
	ms := func(m float64) time.Duration { return time.Duration(m * float64(time.Millisecond)) }
	tests := []struct {
		name string
		ts   []time.Time
		want Jitter
	}{
		{"none", nil, Jitter{}},
		{"one", at(0), Jitter{}},
		{"punctual", at(0, 20, 40, 60), Jitter{N: 3}},
		// Deviations 1, 1, 2, 3: early counts as much as late.
		{"early and late", at(0, 21, 40, 62, 79), Jitter{N: 4, P50: ms(1), P99: ms(3), Max: ms(3)}},
		{"unsorted", at(40, 0, 62, 21, 79), Jitter{N: 4, P50: ms(1), P99: ms(3), Max: ms(3)}},
		// A missing advert: one inter-arrival of 40 ms, 20 ms off.
		{"missing advert", at(0, 20, 60, 80), Jitter{N: 3, P99: ms(20), Max: ms(20), Late: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, AdvertJitter(tt.ts, 20*time.Millisecond)); diff != "" {
				t.Errorf("jitter (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAdvertJitterP99(t *testing.T) {
	// 1000 inter-arrivals: 989 punctual, 10 off by 3 ms, 1 by 9 ms. The
	// 990th smallest deviation (nearest rank) is 3 ms.
	t0 := time.Unix(1000, 0)
	ts := []time.Time{t0}
	for i := range 1000 {
		d := 20 * time.Millisecond
		switch {
		case i == 500:
			d += 9 * time.Millisecond
		case i%97 == 1 && i < 980:
			d += 3 * time.Millisecond
		}
		ts = append(ts, ts[len(ts)-1].Add(d))
	}
	j := AdvertJitter(ts, 20*time.Millisecond)
	want := Jitter{N: 1000, P99: 3 * time.Millisecond, Max: 9 * time.Millisecond}
	if diff := cmp.Diff(want, j); diff != "" {
		t.Errorf("jitter (-want +got):\n%s", diff)
	}
}

func TestAdvertTimes(t *testing.T) {
	t0 := time.Unix(1000, 0)
	fw1, fw2 := netip.MustParseAddr("10.10.1.2"), netip.MustParseAddr("10.10.1.3")
	ads := []Advert{
		{At: t0, Src: fw1, VRID: 51},
		{At: t0.Add(time.Second), Src: fw1, VRID: 51},
		{At: t0.Add(time.Second), Src: fw1, VRID: 52},
		{At: t0.Add(time.Second), Src: fw2, VRID: 51},
		{At: t0.Add(2 * time.Second), Src: fw1, VRID: 51},
		{At: t0.Add(3 * time.Second), Src: fw1, VRID: 51},
	}
	got := AdvertTimes(ads, fw1, 51, t0.Add(time.Second), t0.Add(3*time.Second))
	want := []time.Time{t0.Add(time.Second), t0.Add(2 * time.Second)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("times (-want +got):\n%s", diff)
	}
}

func TestCountAdded(t *testing.T) {
	t0 := time.Unix(1000, 0)
	lan, wan, other := netip.MustParseAddr("10.10.1.1"), netip.MustParseAddr("10.10.2.1"), netip.MustParseAddr("10.10.1.3")
	ev := []AddrEvent{
		{t0, lan, true}, // before the window
		{t0.Add(1 * time.Second), lan, true},
		{t0.Add(1 * time.Second), wan, true},
		{t0.Add(2 * time.Second), lan, false},
		{t0.Add(2 * time.Second), wan, false},
		{t0.Add(3 * time.Second), other, true},
		{t0.Add(4 * time.Second), lan, true},
		{t0.Add(9 * time.Second), wan, true}, // after it
	}
	vips := []netip.Addr{lan, wan}
	if got := CountAdded(ev, vips, t0.Add(time.Second), t0.Add(9*time.Second)); got != 3 {
		t.Errorf("CountAdded = %d, want 3", got)
	}
	if got := CountAdded(nil, vips, t0, t0.Add(time.Hour)); got != 0 {
		t.Errorf("CountAdded(nil) = %d, want 0", got)
	}
}

func TestAllPresentAt(t *testing.T) {
	t0 := time.Unix(1000, 0)
	lan, wan := netip.MustParseAddr("10.10.1.1"), netip.MustParseAddr("10.10.2.1")
	vips := []netip.Addr{lan, wan}
	tests := []struct {
		name   string
		events []AddrEvent
		since  time.Time
		want   time.Time
		ok     bool
	}{
		{"none", nil, t0, time.Time{}, false},
		{"one of two", []AddrEvent{{t0.Add(time.Second), lan, true}}, t0, time.Time{}, false},
		{"both", []AddrEvent{{t0.Add(time.Second), wan, true}, {t0.Add(2 * time.Second), lan, true}}, t0, t0.Add(2 * time.Second), true},
		{"added twice: the first counts", []AddrEvent{
			{t0.Add(time.Second), wan, true}, {t0.Add(2 * time.Second), lan, true}, {t0.Add(3 * time.Second), lan, true},
		}, t0, t0.Add(2 * time.Second), true},
		{"deleted again", []AddrEvent{
			{t0.Add(time.Second), wan, true}, {t0.Add(2 * time.Second), lan, true}, {t0.Add(3 * time.Second), lan, false},
		}, t0, time.Time{}, false},
		{"deleted and re-added", []AddrEvent{
			{t0.Add(time.Second), wan, true}, {t0.Add(2 * time.Second), lan, true},
			{t0.Add(3 * time.Second), lan, false}, {t0.Add(4 * time.Second), lan, true},
		}, t0, t0.Add(4 * time.Second), true},
		{"before since", []AddrEvent{{t0, wan, true}, {t0, lan, true}, {t0.Add(5 * time.Second), lan, true}}, t0.Add(time.Second), time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := AllPresentAt(tt.events, vips, tt.since)
			if ok != tt.ok || !got.Equal(tt.want) {
				t.Errorf("AllPresentAt = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestParseTaskStat(t *testing.T) {
	// A real line of a thread, policy SCHED_RR (2) at priority 50, comm
	// with a space and a parenthesis.
	line := "4242 (ctha (vrrp) x) S 1 4200 4200 0 -1 4194624 300 0 0 0 10 5 0 0 -51 0 9 0 12345 1234567 890 18446744073709551615 1 1 0 0 0 0 0 0 2 0 0 0 17 1 50 2 0 0 0 0 0 0 0 0 0 0 0"
	got, err := ParseTaskStat(line)
	if err != nil {
		t.Fatal(err)
	}
	want := ThreadSched{TID: 4242, PGID: 4200, Comm: "ctha (vrrp) x", Policy: 2, RTPrio: 50}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{"", "12 (x", "12 (x) S 1 2"} {
		if _, err := ParseTaskStat(bad); err == nil {
			t.Errorf("ParseTaskStat(%q): no error", bad)
		}
	}
	if _, err := ParseTaskStat(string(must(os.ReadFile("/proc/self/stat")))); err != nil {
		t.Errorf("own stat: %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestSchedSummary(t *testing.T) {
	got := SchedSummary([]ThreadSched{
		{Comm: "ctha", Policy: 0}, {Comm: "ctha", Policy: 1, RTPrio: 50}, {Comm: "ctha", Policy: 0},
		{Comm: "keepalived", Policy: 2, RTPrio: 50},
	})
	want := "ctha SCHED_FIFO 50 x1, ctha SCHED_OTHER x2, keepalived SCHED_RR 50 x1"
	if got != want {
		t.Errorf("SchedSummary = %q, want %q", got, want)
	}
	if got := SchedSummary(nil); got != "(no threads)" {
		t.Errorf("SchedSummary(nil) = %q", got)
	}
}
