package main

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseProgress(t *testing.T) {
	log := "flowgen client: something\n" +
		"flowgen: t=1.0s alive=200/200 stalled=0 echo/s=4000 cur_gap=21ms longest_gap=40ms\n" +
		"flowgen: t=2.0s alive=0/200 stalled=200 echo/s=0 cur_gap=3012ms longest_gap=40ms\n"
	got, ok := parseProgress(log)
	want := flowSnap{lines: 2, alive: 0, flows: 200, stalled: 200, curGap: 3012 * time.Millisecond, maxGap: 40 * time.Millisecond}
	if !ok {
		t.Fatal("no progress found")
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(flowSnap{})); diff != "" {
		t.Errorf("parseProgress (-want +got):\n%s", diff)
	}
	if _, ok := parseProgress("flowgen client: ready\n"); ok {
		t.Errorf("progress found in a log without progress lines")
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		ok   bool
		code int
		want options
	}{
		{name: "defaults", ok: true,
			want: options{ctha: "bin/ctha", flowgen: "bin/flowgen", examples: "examples", flows: 200, interval: 50 * time.Millisecond}},
		{name: "environment", env: map[string]string{"DEMO_KEEP": "1", "DEMO_ADVERT": "300ms", "DEMO_JSON": "/tmp/s.json"}, ok: true,
			want: options{ctha: "bin/ctha", flowgen: "bin/flowgen", examples: "examples", flows: 200, interval: 50 * time.Millisecond,
				advert: 300 * time.Millisecond, keep: true, jsonPath: "/tmp/s.json"}},
		{name: "flags win", args: []string{"-advert", "2s", "-keep=false", "-flows", "10"}, env: map[string]string{"DEMO_KEEP": "1"}, ok: true,
			want: options{ctha: "bin/ctha", flowgen: "bin/flowgen", examples: "examples", flows: 10, interval: 50 * time.Millisecond,
				advert: 2 * time.Second}},
		{name: "bad advert in the environment", env: map[string]string{"DEMO_ADVERT": "fast"}, code: exitUsage},
		{name: "advert too short", args: []string{"-advert", "50ms"}, code: exitUsage},
		{name: "advert not in 10ms steps", args: []string{"-advert", "305ms"}, code: exitUsage},
		{name: "no flows", args: []string{"-flows", "0"}, code: exitUsage},
		{name: "argument", args: []string{"now"}, code: exitUsage},
		{name: "help", args: []string{"-h"}, code: exitOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"DEMO_KEEP", "DEMO_ADVERT", "DEMO_JSON"} {
				t.Setenv(k, tt.env[k])
			}
			got, code, ok := parseFlags(tt.args, io.Discard)
			if ok != tt.ok || code != tt.code {
				t.Fatalf("parseFlags(%q) = ok %v, code %d; want ok %v, code %d", tt.args, ok, code, tt.ok, tt.code)
			}
			if ok {
				if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(options{})); diff != "" {
					t.Errorf("options (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// TestDemoTB checks the lab.TB adapter: Fatalf unwinds the scenario,
// cleanups run last first, and a Fatalf during cleanup does not stop the
// others.
func TestDemoTB(t *testing.T) {
	tb := &demoTB{dir: t.TempDir(), logf: func(string) {}}
	var order []int
	tb.Cleanup(func() { order = append(order, 1) })
	tb.Cleanup(func() { tb.Fatalf("cleanup %d failed", 2); order = append(order, 2) })
	tb.Cleanup(func() { order = append(order, 3) })

	dir := tb.TempDir()
	if st, err := os.Stat(dir); err != nil || !st.IsDir() || filepath.Dir(dir) != tb.dir {
		t.Errorf("TempDir %q: %v", dir, err)
	}
	func() {
		defer func() {
			f, ok := recover().(fatal)
			if !ok || f.msg != "lab: boom 7" {
				t.Errorf("Fatalf panicked with %#v, want fatal{lab: boom 7}", f)
			}
		}()
		tb.Fatalf("lab: boom %d", 7)
		t.Errorf("Fatalf returned")
	}()
	if !tb.Failed() {
		t.Errorf("Failed() = false after Fatalf")
	}
	errs := tb.runCleanups()
	if want := []int{3, 2, 1}; !slices.Equal(order, want) {
		t.Errorf("cleanups ran in order %v, want %v", order, want)
	}
	if want := []string{"cleanup 2 failed"}; !slices.Equal(errs, want) {
		t.Errorf("cleanup errors %q, want %q", errs, want)
	}
}

func TestSummaryPassed(t *testing.T) {
	ok := Summary{Flows: 200, Survived: 200, KillToVIPsMs: 3300}
	tests := []struct {
		name string
		edit func(*Summary)
		want bool
	}{
		{"all survived", func(*Summary) {}, true},
		{"one lost", func(s *Summary) { s.Survived-- }, false},
		{"an INVALID drop", func(s *Summary) { s.InvalidDrops = 1 }, false},
		{"VIPs never moved", func(s *Summary) { s.KillToVIPsMs = 0 }, false},
		{"no flows", func(s *Summary) { s.Flows, s.Survived = 0, 0 }, false},
	}
	for _, tt := range tests {
		s := ok
		tt.edit(&s)
		if got := s.passed(); got != tt.want {
			t.Errorf("%s: passed() = %v, want %v", tt.name, got, tt.want)
		}
	}
}
