package vrrp

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeProc writes a /proc tree: pid -> stat line and cmdline.
func fakeProc(t *testing.T, procs map[string][2]string) string {
	t.Helper()
	root := t.TempDir()
	for pid, p := range procs {
		dir := filepath.Join(root, pid)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(p[0]), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cmdline"), []byte(p[1]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Not processes: ignored.
	for _, d := range []string{"self", "sys", "0"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestCountProcesses(t *testing.T) {
	argv := func(a ...string) string { return strings.Join(a, "\x00") + "\x00" }
	root := fakeProc(t, map[string][2]string{
		"100": {"100 (bird) S 1 100 100 0 -1", argv("/usr/sbin/bird", "-f", "-u", "bird")},
		"101": {"101 (bird) S 1 101 101 0 -1", argv("/usr/sbin/bird", "-f")},
		"102": {"102 (bird) Z 1 102 102 0 -1", ""}, // a zombie does not count
		"103": {"103 (birdc) S 1 103 103 0 -1", argv("birdc")},
		"104": {"104 (a) b (c) R 1 104 104 0 -1", argv("x")}, // a name with ") "
		"105": {"105 (kworker/0:1) I 2 0 0 0 -1", ""},
	})
	ps := []TrackProcess{
		{Name: "bird", Quorum: 1, QuorumMax: -1},
		{Name: "bir", Quorum: 1, QuorumMax: -1}, // exact, not a prefix
		{Name: "a) b (c", Quorum: 1, QuorumMax: -1},
		{Name: "/usr/sbin/bird -f", FullCommand: true, Quorum: 1, QuorumMax: -1},
		{Name: "kworker/0:1", Quorum: 1, QuorumMax: -1},
	}
	if diff := cmp.Diff([]int{2, 0, 1, 1, 1}, countProcesses(root, ps)); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	if got := countProcesses(filepath.Join(root, "none"), ps); len(got) != len(ps) {
		t.Errorf("a missing /proc: %v", got)
	}
}

func TestQuorate(t *testing.T) {
	for _, tc := range []struct {
		p    TrackProcess
		n    int
		want bool
	}{
		{TrackProcess{Quorum: 1, QuorumMax: -1}, 0, false},
		{TrackProcess{Quorum: 1, QuorumMax: -1}, 5, true},
		{TrackProcess{Quorum: 2, QuorumMax: 3}, 1, false},
		{TrackProcess{Quorum: 2, QuorumMax: 3}, 3, true},
		{TrackProcess{Quorum: 2, QuorumMax: 3}, 4, false},
		{TrackProcess{Quorum: 0, QuorumMax: 0}, 0, true}, // up while none runs
		{TrackProcess{Quorum: 0, QuorumMax: 0}, 1, false},
	} {
		if got := tc.p.quorate(tc.n); got != tc.want {
			t.Errorf("%+v with %d processes: %t, want %t", tc.p, tc.n, got, tc.want)
		}
	}
}

// TestAdvertVIPs: adverts list the VIPs on other interfaces, never the
// excluded ones.
func TestAdvertVIPs(t *testing.T) {
	in := Instance{
		VIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/24")},
		ExtraVIPs: []ExtraVIP{
			{Prefix: netip.MustParsePrefix("10.0.1.1/24"), Interface: "wan"},
			{Prefix: netip.MustParsePrefix("203.0.113.5/32"), Interface: "lo", Excluded: true},
		},
	}
	if diff := cmp.Diff([]netip.Prefix{netip.MustParsePrefix("10.0.0.1/24"), netip.MustParsePrefix("10.0.1.1/24")}, in.AdvertVIPs(),
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("AdvertVIPs (-want +got):\n%s", diff)
	}
	if got := len(in.allVIPs()); got != 3 {
		t.Errorf("allVIPs: %d, want 3", got)
	}
}
