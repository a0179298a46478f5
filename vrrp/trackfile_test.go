package vrrp

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseStrtol(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     int
		ok       bool
	}{
		{"empty", "", 0, true},
		{"plain", "42", 42, true},
		{"newline", "42\n", 42, true},
		{"leading space", " \t\n 7", 7, true},
		{"negative", "-254\n", -254, true},
		{"plus", "+3", 3, true},
		{"hex", "0x1f", 31, true},
		{"HEX", "0X1F", 31, true},
		{"octal", "010", 8, true},
		{"zero", "0", 0, true},
		{"0x without digits is 0", "0x", 0, true},
		{"trailing garbage", "12abc", 12, true},
		{"octal stops at 8", "018", 1, true},
		{"not a number", "abc", 0, true},
		{"sign only", "-", 0, true},
		{"int max", "2147483647", 2147483647, true},
		{"int min", "-2147483648", -2147483648, true},
		{"over int", "2147483648", 0, false},
		{"far over", "99999999999999999999999", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseStrtol([]byte(tc.in))
			if got != tc.want || ok != tc.ok {
				t.Errorf("parseStrtol(%q) = %d, %t; want %d, %t", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestReadTrackFile(t *testing.T) {
	dir := t.TempDir()
	if v, ok := readTrackFile(filepath.Join(dir, "missing")); v != 0 || !ok {
		t.Errorf("missing file: %d, %t; want 0, true", v, ok)
	}
	p := filepath.Join(dir, "w")
	if err := os.WriteFile(p, []byte("  -17 trailing\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if v, ok := readTrackFile(p); v != -17 || !ok {
		t.Errorf("file: %d, %t; want -17, true", v, ok)
	}
}

// TestTrackerContribution: keepalived's arithmetic for each kind of
// tracker (vrrp_track.c, track_file.c).
func TestTrackerContribution(t *testing.T) {
	for _, tc := range []struct {
		name      string
		t         tracked
		adj       int
		wantFault bool
	}{
		{"file weight 1", tracked{file: true, weight: 1, value: 20}, 20, false},
		{"file weight 10", tracked{file: true, weight: 10, value: -3}, -30, false},
		{"file reverse", tracked{file: true, weight: 10, value: 3, reverse: true}, -30, false},
		{"file clamped high", tracked{file: true, weight: 254, value: 100}, 253, false},
		{"file -254 is fault", tracked{file: true, weight: 1, value: -254}, 0, true},
		{"file below -254 is fault", tracked{file: true, weight: 2, value: -1000}, 0, true},
		{"file -253 is not", tracked{file: true, weight: 1, value: -253}, -253, false},
		{"file weight 0 zero ok", tracked{file: true, weight: 0, value: 0}, 0, false},
		{"file weight 0 non-zero fault", tracked{file: true, weight: 0, value: 5}, 0, true},
		{"file weight 0 reverse zero fault", tracked{file: true, weight: 0, reverse: true}, 0, true},
		{"file weight 0 reverse non-zero ok", tracked{file: true, weight: 0, reverse: true, value: 1}, 0, false},
		{"process up weight 0", tracked{weight: 0, up: true}, 0, false},
		{"process down weight 0", tracked{weight: 0, up: false}, 0, true},
		{"process up weight 0 reverse", tracked{weight: 0, up: true, reverse: true}, 0, true},
		{"process down weight 0 reverse", tracked{weight: 0, up: false, reverse: true}, 0, false},
		{"process up +20", tracked{weight: 20, up: true}, 20, false},
		{"process down +20", tracked{weight: 20, up: false}, 0, false},
		{"process down -50", tracked{weight: -50, up: false}, -50, false},
		{"process up -50", tracked{weight: -50, up: true}, 0, false},
		{"process up +20 reverse", tracked{weight: 20, up: true, reverse: true}, -20, false},
		{"process down -50 reverse", tracked{weight: -50, up: false, reverse: true}, 50, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			adj, fault := tc.t.contribution()
			if adj != tc.adj || fault != tc.wantFault {
				t.Errorf("contribution = %d, %t; want %d, %t", adj, fault, tc.adj, tc.wantFault)
			}
		})
	}
}

// TestWatchTrackFile: a write, a rename over the file and a deletion are
// each reported.
func TestWatchTrackFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "weight")
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan int, 16)
	done := make(chan error, 1)
	go func() { done <- watchTrackFile(ctx, p, func(v int) { got <- v }, nil) }()
	next := func(want int) {
		t.Helper()
		select {
		case v := <-got:
			if v != want {
				t.Fatalf("reported %d, want %d", v, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no report of %d", want)
		}
	}
	next(0) // missing: 0
	if err := os.WriteFile(p, []byte("5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	next(5)
	tmp := filepath.Join(dir, "tmp")
	if err := os.WriteFile(tmp, []byte("0x10"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	next(16)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	next(0)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestWatchTrackFileDirectory: a directory missing at start is watched
// once it appears; deleted, the file counts as 0, and once it is back
// its file is read again.
func TestWatchTrackFileDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	p := filepath.Join(dir, "weight")
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan int, 16)
	errs := make(chan error, 16)
	done := make(chan error, 1)
	go func() {
		done <- watchTrackFile(ctx, p, func(v int) { got <- v }, func(err error) { errs <- err })
	}()
	next := func(want int) {
		t.Helper()
		select {
		case v := <-got:
			if v != want {
				t.Fatalf("reported %d, want %d", v, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no report of %d", want)
		}
	}
	write := func(v string) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	next(0) // no directory: 0
	select {
	case <-errs:
	case <-time.After(5 * time.Second):
		t.Fatal("the missing directory was not reported")
	}
	write("7\n")
	next(7)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	next(0)
	write("9\n")
	next(9)
	write("3\n") // watched again: a write is seen
	next(3)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestScanEvents: an overflow, the watch's end and the file's own events
// are told apart.
func TestScanEvents(t *testing.T) {
	event := func(wd int32, mask uint32, name string) []byte {
		b := make([]byte, unix.SizeofInotifyEvent)
		binary.NativeEndian.PutUint32(b[0:4], uint32(wd))
		binary.NativeEndian.PutUint32(b[4:8], mask)
		n := 0
		if name != "" {
			n = (len(name) + 16) &^ 15
		}
		binary.NativeEndian.PutUint32(b[12:16], uint32(n))
		return append(b, append([]byte(name), make([]byte, n-len(name))...)...)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want inotifyEvents
	}{
		{"the file written", event(1, unix.IN_CLOSE_WRITE, "weight"), inotifyEvents{file: true}},
		{"another file", event(1, unix.IN_CLOSE_WRITE, "weight2"), inotifyEvents{}},
		{"overflow", event(-1, unix.IN_Q_OVERFLOW, ""), inotifyEvents{overflow: true}},
		{"directory deleted", append(event(1, unix.IN_DELETE_SELF, ""), event(1, unix.IN_IGNORED, "")...), inotifyEvents{ended: true}},
		{"an old watch's end", event(0, unix.IN_IGNORED, ""), inotifyEvents{}},
		{"both", append(event(1, unix.IN_DELETE, "weight"), event(1, unix.IN_IGNORED, "")...), inotifyEvents{file: true, ended: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := scanEvents(tc.b, "weight", 1); got != tc.want {
				t.Errorf("scanEvents = %+v, want %+v", got, tc.want)
			}
		})
	}
}
