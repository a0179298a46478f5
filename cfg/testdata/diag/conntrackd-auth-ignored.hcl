conntrack_sync {
  protocol      = "conntrackd"
  link "sync0" {
    interface = "sync"
    local     = "10.10.3.1"
    peer      = "10.10.3.2"
  }
  auth_key_file = "sync.key"
}
