package integration

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/lab"
)

// TestStatusInLab runs the example pair's daemons in the lab's firewalls
// and reads their status from inside each namespace.
func TestStatusInLab(t *testing.T) {
	lab.RequireNetns(t)
	l := lab.New(t, lab.Options{NoIPv6: true})
	fw1 := startNode(t, l, lab.RoleFW1, exampleConfig(t, "fw1.hcl"))
	fw2 := startNode(t, l, lab.RoleFW2, exampleConfig(t, "fw2.hcl"))

	for _, tc := range []struct {
		n        *node
		name     string
		priority uint8
	}{{fw1, "fw1", 150}, {fw2, "fw2", 100}} {
		st, err := tc.n.status()
		if err != nil {
			t.Fatal(err)
		}
		if st.Node != tc.name {
			t.Errorf("%s: node = %q", tc.name, st.Node)
		}
		if len(st.Groups) != 1 || st.Groups[0].Name != "fw" || !st.Groups[0].Conntrack {
			t.Errorf("%s: groups = %+v", tc.name, st.Groups)
		}
		if len(st.Instances) != 2 || st.Instances[0].Interface != "lan" || st.Instances[0].Priority != tc.priority ||
			st.Instances[1].VIPs[0] != lab.WANVIP.String() {
			t.Errorf("%s: instances = %+v", tc.name, st.Instances)
		}
		if st.Sync == nil || st.Sync.Mode != "reliable" || st.Sync.Cache != "direct" || len(st.Sync.Links) != 1 {
			t.Errorf("%s: sync = %+v", tc.name, st.Sync)
		}
	}
	// Both nodes hold the same key: the same fingerprint.
	s1, _ := fw1.status()
	s2, _ := fw2.status()
	if s1.Sync.KeyFingerprint == "" || s1.Sync.KeyFingerprint != s2.Sync.KeyFingerprint {
		t.Errorf("key fingerprints %q and %q differ", s1.Sync.KeyFingerprint, s2.Sync.KeyFingerprint)
	}

	// The human form names the node and its instances.
	out, err := fw1.ctl("status")
	if err != nil || !strings.Contains(out, "node fw1") || !strings.Contains(out, "lan") {
		t.Errorf("status: %v\n%s", err, out)
	}

	// SIGTERM stops the daemon cleanly and removes its socket.
	if err := fw1.proc.Stop(5 * time.Second); err != nil {
		t.Errorf("stop fw1: %v\n%s", err, fw1.proc.Log())
	}
	if _, err := os.Stat(fw1.socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("fw1 left its socket behind: %v", err)
	}
	if _, err := callStatus(context.Background(), fw1.socket); err == nil {
		t.Errorf("status still answers after stop")
	}
	if out, err := fw1.ctl("status"); err == nil || !strings.Contains(out, "ctha is not running") {
		t.Errorf("status of a stopped node: err %v, output %q; want a one-line failure", err, out)
	}
}
