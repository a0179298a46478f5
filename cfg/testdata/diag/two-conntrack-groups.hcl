vrrp_instance "lan" {
  interface   = "lan"
  vrid        = 51
  virtual_ips = ["10.10.1.1/24"]
}

vrrp_instance "wan" {
  interface   = "wan"
  vrid        = 52
  virtual_ips = ["10.10.2.1/24"]
}

sync_group "a" {
  instances = ["lan"]
  conntrack = true
}

sync_group "b" {
  instances = ["wan"]
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
