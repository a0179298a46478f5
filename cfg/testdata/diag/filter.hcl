conntrack_sync {
  link "sync0" {
    interface = "sync"
    local     = "10.10.3.1"
    peer      = "10.10.3.2"
  }
  auth_key_file = "sync.key"

  filter {
    protocols        = ["tcp", "udp", "esp"]
    ignore_addresses = ["10.0.0.0/8", "192.168.1.0/33", "fe80::/10"]
    tcp_states       = ["established", "TIME_WAIT", "OPEN"]
  }
}
