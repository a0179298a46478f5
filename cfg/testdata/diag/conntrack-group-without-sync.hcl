vrrp_instance "lan" {
  interface   = "lan"
  vrid        = 51
  virtual_ips = ["10.10.1.1/24"]
}

sync_group "fw" {
  instances = ["lan"]
  conntrack = true
}
