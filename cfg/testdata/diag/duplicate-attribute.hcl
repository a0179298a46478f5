vrrp_instance "lan" {
  interface   = "lan"
  vrid        = 51
  priority    = 150
  priority    = 100
  virtual_ips = ["10.10.1.1/24"]
}
