conntrack_sync {
  protocol = "conntrackd"
  link "sync0" {
    interface       = "sync"
    local           = "10.10.3.1"
    multicast_group = "225.0.0.50"
  }
}
