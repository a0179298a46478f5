conntrack_sync {
  link "a" {
    interface = "sync"
    local     = "10.10.3.1"
    peer      = "10.10.3.2"
    port      = 70000
  }
  link "b" {
    interface = "sync"
    local     = "10.10.3.1"
    peer      = "10.10.3.3"
  }
  link "c" {
    interface = "sync"
    local     = "10.10.3.1"
    peer      = "10.10.3.4"
    port      = 0
  }
  auth_key_file = "sync.key"
}
