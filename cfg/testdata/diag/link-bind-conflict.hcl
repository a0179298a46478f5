conntrack_sync {
  link "a" {
    interface = "sync"
    local     = "10.10.3.1"
    peer      = "10.10.3.2"
  }
  link "b" {
    interface = "sync2"
    local     = "10.10.3.1"
    peer      = "10.10.4.2"
    port      = 3780
  }
  auth_key_file = "sync.key"
}
