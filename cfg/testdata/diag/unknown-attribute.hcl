vrrp_instance "lan" {
  interface   = "lan"
  vrid        = 51
  priorty     = 150
  virtual_ips = ["10.10.1.1/24"]
}
