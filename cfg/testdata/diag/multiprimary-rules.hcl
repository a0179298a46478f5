vrrp_instance "lan-a" {
  interface   = "lan"
  vrid        = 51
  priority    = 255
  virtual_ips = ["10.10.1.1/24"]
}

vrrp_instance "lan-b" {
  interface   = "lan"
  vrid        = 52
  virtual_ips = ["10.10.1.254/24"]
}

vrrp_instance "loose" {
  interface   = "wan"
  vrid        = 53
  virtual_ips = ["10.10.2.1/24"]
}

sync_group "a" {
  instances = ["lan-a"]
  conntrack = true
}

sync_group "b" {
  instances = ["lan-b"]
  conntrack = true
}

conntrack_sync {
  topology = "multiprimary"
  cache    = "external"
  link "sync0" {
    interface = "sync"
    local     = "10.10.3.1"
    peers     = ["10.10.3.2"]
  }
  auth_key_file = "sync.key"
}
