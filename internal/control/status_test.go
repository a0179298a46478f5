package control

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSyncStatusPeerRole: peer_role is the peer's role in primary-backup
// (and from a daemon that predates topologies), null in multiprimary; the
// rest of the document is the same either way, and a client decodes both.
func TestSyncStatusPeerRole(t *testing.T) {
	for _, tc := range []struct {
		topology, want string
	}{
		{TopologyPrimaryBackup, `"peer_role":"BACKUP"`},
		{"", `"peer_role":"BACKUP"`},
		{TopologyMultiprimary, `"peer_role":null`},
	} {
		s := &SyncStatus{Mode: "reliable", Cache: "direct", Topology: tc.topology, PeerUp: true, PeerRole: "BACKUP",
			Peers: []PeerStatus{{Node: "fw2", Address: "10.10.3.2", Up: true}}}
		b, err := json.Marshal(Status{Node: "fw1", Sync: s})
		if err != nil {
			t.Fatal(err)
		}
		if got := string(b); !strings.Contains(got, tc.want) || strings.Count(got, `"peer_role"`) != 1 {
			t.Errorf("topology %q: %s, want one %s", tc.topology, got, tc.want)
		}
		var back Status
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		want := *s
		if tc.topology == TopologyMultiprimary {
			want.PeerRole = ""
		}
		if diff := cmp.Diff(&want, back.Sync); diff != "" {
			t.Errorf("topology %q: decoded (-want +got):\n%s", tc.topology, diff)
		}
	}
}
