vrrp_instance "lan" {
  interface   = "lan"
  vrid        = 51
  priority    = 255
  virtual_ips = ["10.10.1.1/24"]
}

sync_group "fw" {
  instances = ["lan"]
  conntrack = true
}

conntrack_sync {
  link "sync0" {
    interface = "sync"
    local     = "10.10.3.1"
    peer      = "10.10.3.2"
  }
  auth_key_file = "sync.key"
}
