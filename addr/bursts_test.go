package addr_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/ctha/ctha/addr"
	"github.com/mdlayher/ethernet"
	"go.uber.org/goleak"
)

// TestBursts captures in B what one Up sends: a burst of Repeat messages
// Interval apart, then a second burst Delay after the first; then what
// Announce adds, and that Down stops everything.
func TestBursts(t *testing.T) {
	tests := []struct {
		name  string
		vip   netip.Prefix
		kinds []string // one packet of each kind per message
	}{
		{"ipv4", vip4, []string{"arp-request", "arp-reply"}},
		{"ipv6", vip6, []string{"na"}},
	}
	const (
		repeat   = 3
		interval = 50 * time.Millisecond
		delay    = 300 * time.Millisecond
	)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLab(t)
			capt := l.capture(t)
			m := l.newManager(t, addr.Config{
				Interface: "lan", VRID: 51, VIPs: []netip.Prefix{tt.vip},
				GARP: addr.GARP{Repeat: repeat, Interval: interval, Delay: delay},
			})
			if _, err := m.Up(); err != nil {
				t.Fatalf("Up: %v", err)
			}
			time.Sleep(delay + repeat*interval + 200*time.Millisecond)
			perKind := 2 * repeat
			for _, kind := range tt.kinds {
				got := capt.of(kind)
				if len(got) != perKind {
					t.Fatalf("%d %s, want %d (2 bursts of %d)", len(got), kind, perKind, repeat)
				}
				for i, a := range got {
					checkForm(t, l, tt.vip.Addr(), a)
					if i == 0 {
						continue
					}
					gap, want := a.at.Sub(got[i-1].at), interval
					if i == repeat {
						gap, want = a.at.Sub(got[0].at), delay
					}
					if gap < want-15*time.Millisecond || gap > want+80*time.Millisecond {
						t.Errorf("%s #%d came %v after the one it follows, want %v", kind, i+1, gap, want)
					}
				}
			}
			if got, want := m.Stats().Announcements, uint64(perKind*len(tt.kinds)); got != want {
				t.Errorf("Stats().Announcements = %d, want %d", got, want)
			}

			if err := m.Announce(); err != nil {
				t.Fatalf("Announce: %v", err)
			}
			time.Sleep(repeat*interval + 100*time.Millisecond)
			for _, kind := range tt.kinds {
				if got := len(capt.of(kind)); got != perKind+repeat {
					t.Errorf("after Announce: %d %s, want %d", got, kind, perKind+repeat)
				}
			}

			// Down in the middle of a burst: nothing more goes out.
			if err := m.Announce(); err != nil {
				t.Fatalf("Announce: %v", err)
			}
			if err := m.Down(); err != nil {
				t.Fatalf("Down: %v", err)
			}
			sent := m.Stats().Announcements
			time.Sleep(repeat*interval + 100*time.Millisecond)
			if got := m.Stats().Announcements; got != sent {
				t.Errorf("%d packets sent after Down", got-sent)
			}
			for _, kind := range tt.kinds {
				if got := len(capt.of(kind)); got != perKind+repeat+1 {
					t.Errorf("after Down: %d %s, want %d", got, kind, perKind+repeat+1)
				}
			}
		})
	}
}

// checkForm checks one captured announcement against traps.md and RFC 4861.
func checkForm(t *testing.T, l *lab, vip netip.Addr, a announcement) {
	t.Helper()
	mac, bcast := l.lanMAC.String(), ethernet.Broadcast.String()
	if a.target != vip || a.ethSrc.String() != mac || a.sender.String() != mac {
		t.Errorf("%s for %s from %s sender %s, want for %s from %s", a.kind, a.target, a.ethSrc, a.sender, vip, mac)
	}
	switch a.kind {
	case "arp-request":
		if a.ethDst.String() != bcast || a.arpTHA.String() != "00:00:00:00:00:00" || a.arpSrcIP != vip {
			t.Errorf("ARP request to %s target MAC %s sender IP %s, want broadcast, zero, %s", a.ethDst, a.arpTHA, a.arpSrcIP, vip)
		}
	case "arp-reply":
		if a.ethDst.String() != bcast || a.arpTHA.String() != bcast || a.arpSrcIP != vip {
			t.Errorf("ARP reply to %s target MAC %s sender IP %s, want broadcast, broadcast, %s", a.ethDst, a.arpTHA, a.arpSrcIP, vip)
		}
	case "na":
		na := a.na
		if !na.Override || na.Solicited || na.Router {
			t.Errorf("NA flags O=%v S=%v R=%v, want O only", na.Override, na.Solicited, na.Router)
		}
		if a.hopLimit != 255 || a.ipDst != netip.MustParseAddr("ff02::1") || a.ethDst.String() != "33:33:00:00:00:01" {
			t.Errorf("NA to %s (%s) hop limit %d, want ff02::1 hop limit 255", a.ipDst, a.ethDst, a.hopLimit)
		}
	}
}

// TestRefresh: a periodic burst while up, none after Down.
func TestRefresh(t *testing.T) {
	l := newLab(t)
	capt := l.capture(t)
	m := l.newManager(t, addr.Config{
		Interface: "lan", VRID: 51, VIPs: []netip.Prefix{vip4},
		GARP: addr.GARP{Repeat: 2, Interval: 20 * time.Millisecond, Refresh: 150 * time.Millisecond},
	})
	if _, err := m.Up(); err != nil {
		t.Fatalf("Up: %v", err)
	}
	time.Sleep(520 * time.Millisecond) // bursts at 0, 150, 300, 450 ms
	if err := m.Down(); err != nil {
		t.Fatalf("Down: %v", err)
	}
	sent := m.Stats().Announcements
	time.Sleep(50 * time.Millisecond) // let the capture read what is in flight
	seen := len(capt.of("arp-request"))
	if seen < 7 || seen > 8 {
		t.Errorf("%d ARP requests in 520ms, want 8 (4 bursts of 2)", seen)
	}
	time.Sleep(400 * time.Millisecond)
	if got := m.Stats().Announcements; got != sent {
		t.Errorf("%d packets sent after Down", got-sent)
	}
	if got := len(capt.of("arp-request")); got != seen {
		t.Errorf("%d ARP requests arrived after Down", got-seen)
	}
}

// TestCloseWhileUp: Close stops the bursts goroutine and keeps the VIPs
// (Down gives them up, Close only releases resources).
func TestCloseWhileUp(t *testing.T) {
	l := newLab(t)
	m := l.newManager(t, addr.Config{
		Interface: "lan", VRID: 51, VIPs: []netip.Prefix{vip4},
		GARP: addr.GARP{Repeat: 3, Interval: 10 * time.Millisecond, Delay: time.Second, Refresh: time.Second},
	})
	if _, err := m.Up(); err != nil {
		t.Fatalf("Up: %v", err)
	}
	for range 2 {
		if err := m.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	goleak.VerifyNone(t)
	if _, ok := addrsOf(t, l.A, "lan")[vip4.String()]; !ok {
		t.Errorf("Close removed %s", vip4)
	}
	if err := m.Down(); !errors.Is(err, addr.ErrClosed) {
		t.Errorf("Down after Close = %v, want ErrClosed", err)
	}
	if _, err := m.Present(); !errors.Is(err, addr.ErrClosed) {
		t.Errorf("Present after Close = %v, want ErrClosed", err)
	}
}

// BenchmarkUp measures Up -> first announcement written, Down included in
// each iteration's setup.
func BenchmarkUp(b *testing.B) {
	l := newLab(b)
	m := l.newManager(b, addr.Config{
		Interface: "lan", VRID: 51, VIPs: []netip.Prefix{vip4, netip.MustParsePrefix("10.10.1.3/24")},
		GARP: addr.GARP{Repeat: 1},
	})
	var (
		total time.Duration
		n     int
	)
	for b.Loop() {
		n++
		start := time.Now()
		first, err := m.Up()
		if err != nil {
			b.Fatalf("Up: %v", err)
		}
		total += first.Sub(start)
		b.StopTimer()
		if err := m.Down(); err != nil {
			b.Fatalf("Down: %v", err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/float64(n), "µs-to-first-announce/op")
}
