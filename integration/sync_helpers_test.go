package integration

import "fmt"

// syncOnlyConfig is a node that runs conntrack sync alone (no VRRP), as
// under another HA manager, over the lab's sync link.
func syncOnlyConfig(node, local, peer, cache, stateDir string) string {
	return fmt.Sprintf(`node_name = %q
state_dir = %q
log {
  level = "debug"
}
conntrack_sync {
  cache = %q
  link "sync0" {
    interface = "sync"
    local     = %q
    peer      = %q
  }
  auth_key_file = "sync.key"
}
`, node, stateDir, cache, local, peer)
}
