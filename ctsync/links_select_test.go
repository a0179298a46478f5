package ctsync

import (
	"slices"
	"testing"
	"time"
)

func TestChooseLink(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	const silence = time.Second
	up := linkView{carrier: true, heard: now.Add(-100 * time.Millisecond), peerHears: true}
	silent := linkView{carrier: true, heard: now.Add(-silence), peerHears: true}
	noCarrier := up
	noCarrier.carrier = false
	oneWay := up // the peer is heard but does not hear this node
	oneWay.peerHears = false
	neverHeard := linkView{carrier: true}
	tests := []struct {
		name  string
		views []linkView
		cur   int
		want  int
		why   linkReason
	}{
		{"first up stays", []linkView{up, up}, 0, 0, reasonNone},
		{"carrier lost", []linkView{noCarrier, up}, 0, 1, reasonCarrier},
		{"peer silent", []linkView{silent, up}, 0, 1, reasonSilence},
		{"broken one way", []linkView{oneWay, up}, 0, 1, reasonSilence},
		{"first back", []linkView{up, up}, 1, 0, reasonPreferred},
		{"first back, half way", []linkView{oneWay, up}, 1, 1, reasonNone},
		{"third of four", []linkView{noCarrier, silent, up, up}, 0, 2, reasonCarrier},
		{"peer away: first with carrier", []linkView{silent, silent}, 1, 0, reasonPreferred},
		{"peer away, first cut", []linkView{noCarrier, neverHeard}, 0, 1, reasonCarrier},
		{"no carrier at all: stay", []linkView{noCarrier, noCarrier}, 1, 1, reasonNone},
		{"not met yet", []linkView{neverHeard, neverHeard}, 0, 0, reasonNone},
		{"single link", []linkView{silent}, 0, 0, reasonNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, why := chooseLink(tc.views, tc.cur, now, silence)
			if got != tc.want || why != tc.why {
				t.Errorf("chooseLink = %d (%v), want %d (%v)", got, why, tc.want, tc.why)
			}
		})
	}
}

func TestProbe(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
		flags   byte
		ok      bool
	}{
		{"hears", appendProbe(nil, 1, true), probeHears, true},
		{"does not hear", appendProbe(nil, 0, false), 0, true},
		{"after a keep-alive", appendProbe([]byte{0x12, 2, 0, 0}, 3, true), probeHears, true},
		{"none", []byte{0x12, 2, 0, 0}, 0, false},
		{"empty", nil, 0, false},
		{"truncated length", []byte{0x20, 0x80}, 0, false},
		{"body past the end", []byte{0x20, 5, 0}, 0, false},
		{"short body", []byte{0x20, 1, 0}, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			flags, ok := parseProbe(tc.payload)
			if flags != tc.flags || ok != tc.ok {
				t.Errorf("parseProbe(%x) = %#x, %v; want %#x, %v", tc.payload, flags, ok, tc.flags, tc.ok)
			}
		})
	}
}

func FuzzParseProbe(f *testing.F) {
	f.Add(appendProbe(nil, 2, true))
	f.Add([]byte{0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add(appendNode(appendProbe(nil, 0, false), "fw1", []string{"a", "b"}, PortRange{20000, 29999}))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseProbe(b)
		if ni, ok := parseNode(b); ok {
			// What parses is a NODE message that says the same again.
			again, ok := parseNode(appendNode(nil, ni.name, ni.masterOf, ni.snat))
			if !ok || again.name != ni.name || !slices.Equal(again.masterOf, ni.masterOf) || again.snat != ni.snat {
				t.Fatalf("%+v appended and parsed again: %+v %v", ni, again, ok)
			}
		}
	})
}

func TestAlarmDue(t *testing.T) {
	const iv = 10 * time.Second
	tests := []struct {
		name    string
		n       int
		elapsed time.Duration
		want    int
	}{
		{"start", 1000, 0, 0},
		{"a quarter", 1000, iv / 4, 250},
		{"half", 1000, iv / 2, 500},
		{"end", 1000, iv, 1000},
		{"late", 1000, 2 * iv, 1000},
		{"empty", 0, iv / 2, 0},
		{"fewer keys than ticks", 3, iv / 2, 1},
		{"no interval", 7, time.Second, 7},
		{"a million, one tick", 1_000_000, 250 * time.Millisecond, 25_000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			iv := iv
			if tc.name == "no interval" {
				iv = 0
			}
			if got := alarmDue(tc.n, tc.elapsed, iv); got != tc.want {
				t.Errorf("alarmDue(%d, %v, %v) = %d, want %d", tc.n, tc.elapsed, iv, got, tc.want)
			}
		})
	}
}
