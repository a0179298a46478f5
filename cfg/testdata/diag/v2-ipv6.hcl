vrrp_instance "lan6" {
  interface   = "lan"
  vrid        = 51
  version     = 2
  virtual_ips = ["fd00:10:1::1/64"]
}
