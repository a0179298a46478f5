conntrack_sync {
  protocol = "conntrackd"
  link "sync0" {
    interface = "sync"
    local     = "10.10.3.1"
    peers     = ["10.10.3.2", "10.10.3.3"]
  }
}
