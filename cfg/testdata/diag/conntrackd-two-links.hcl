conntrack_sync {
  protocol = "conntrackd"
  link "sync0" {
    interface = "sync"
    local     = "10.10.3.1"
    peer      = "10.10.3.2"
  }
  link "sync1" {
    interface = "sync2"
    local     = "10.10.4.1"
    peer      = "10.10.4.2"
  }
}
