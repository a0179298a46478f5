package cfg

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary files to the loader: it must never panic, and
// whatever it accepts must satisfy the invariants the rest of ctha relies on.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/diag/*.hcl")
	examples, _ := filepath.Glob("../examples/*.hcl")
	for _, p := range append(seeds, examples...) {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sync.key"), []byte(keyLine), 0o600); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		c, diags := Parse(src, filepath.Join(dir, "fuzz.hcl"))
		if diags.HasErrors() {
			if c.NodeName != "" || c.Instances != nil || c.Sync != nil {
				t.Fatalf("invalid file returned a non-zero Config: %+v", c)
			}
			for _, d := range diags {
				_ = Format(d) // must not panic either
			}
			return
		}
		checkInvariants(t, c)
	})
}

func checkInvariants(t *testing.T, c Config) {
	t.Helper()
	if len(c.Instances) == 0 && c.Sync == nil {
		t.Fatalf("accepted a config with nothing to run")
	}
	for _, in := range c.Instances {
		if in.VRID == 0 || in.Priority == 0 || len(in.VIPs) == 0 || in.AdvertInterval <= 0 {
			t.Fatalf("accepted instance %+v", in)
		}
		if in.Version != 2 && in.Version != 3 {
			t.Fatalf("accepted version %d", in.Version)
		}
		for _, p := range in.VIPs {
			if familyOf(p.Addr()) != in.Family {
				t.Fatalf("instance %s mixes families", in.Name)
			}
		}
		switch a := in.Auth; {
		case a == Auth{}:
		case a.Type != AuthPass && a.Type != AuthAH, a.Password == "", in.Version != 2, in.Family != IPv4:
			t.Fatalf("accepted authentication %+v in a version %d %s instance", a, in.Version, in.Family)
		}
	}
	if s := c.Sync; s != nil {
		if len(s.Links) == 0 || len(s.Links) > MaxLinks {
			t.Fatalf("accepted %d links", len(s.Links))
		}
		for _, l := range s.Links {
			if l.Port == 0 || !l.Local.IsValid() || l.Peer.IsValid() == l.MulticastGroup.IsValid() {
				t.Fatalf("accepted link %+v", l)
			}
		}
		if !s.InsecureNoAuth && s.Protocol != ProtocolConntrackd && s.Key == ([32]byte{}) {
			t.Fatalf("accepted sync without a key")
		}
		if s.Protocol == ProtocolConntrackd && (len(s.Links) != 1 || len(s.Links[0].Peers) != 1 ||
			s.Topology != TopologyPrimaryBackup || s.Mode != ModeReliable) {
			t.Fatalf("accepted protocol conntrackd with %+v", s)
		}
	}
	conntrackGroups := 0
	for _, g := range c.SyncGroups {
		if g.Conntrack {
			conntrackGroups++
		}
	}
	if conntrackGroups > 1 {
		t.Fatalf("accepted %d conntrack groups", conntrackGroups)
	}
}
