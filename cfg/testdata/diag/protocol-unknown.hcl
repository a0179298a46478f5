conntrack_sync {
  protocol = "keepalived"
  link "sync0" {
    interface = "sync"
    local     = "10.10.3.1"
    peer      = "10.10.3.2"
  }
  insecure_no_auth = true
}
