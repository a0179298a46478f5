package cfg

import (
	"testing"

	"github.com/ctha/ctha/ctsync/auth"
)

// TestSyncProtocol checks protocol's default and that protocol =
// "conntrackd" needs no key (and reads none: auth_key_file is only
// warned about).
func TestSyncProtocol(t *testing.T) {
	const link = `
  link "sync0" {
    interface = "sync"
    local     = "10.10.3.1"
    peer      = "10.10.3.2"
  }`
	for _, tc := range []struct {
		name, body string
		want       string
		warnings   int
	}{
		{name: "default", body: link + "\n  insecure_no_auth = true", want: ProtocolCtha, warnings: 1},
		{name: "ctha", body: "  protocol = \"ctha\"" + link + "\n  insecure_no_auth = true", want: ProtocolCtha, warnings: 1},
		{name: "conntrackd without key", body: "  protocol = \"conntrackd\"" + link, want: ProtocolConntrackd},
		{name: "conntrackd with a key file that does not exist", body: "  protocol = \"conntrackd\"" + link + "\n  auth_key_file = \"/nonexistent/sync.key\"",
			want: ProtocolConntrackd, warnings: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "conntrack_sync {\n" + tc.body + "\n}\n"
			c, diags := Parse([]byte(src), "protocol.hcl")
			if diags.HasErrors() {
				t.Fatalf("errors: %s", formatAll(diags))
			}
			if len(diags) != tc.warnings {
				t.Errorf("%d diagnostics, want %d: %s", len(diags), tc.warnings, formatAll(diags))
			}
			if c.Sync == nil {
				t.Fatal("no sync")
			}
			if c.Sync.Protocol != tc.want {
				t.Errorf("Protocol = %q, want %q", c.Sync.Protocol, tc.want)
			}
			if c.Sync.Protocol == ProtocolConntrackd && (c.Sync.Key != auth.Key{} || c.Sync.KeyFile != "") {
				t.Errorf("conntrackd: a key was read (%q)", c.Sync.KeyFile)
			}
		})
	}
}
