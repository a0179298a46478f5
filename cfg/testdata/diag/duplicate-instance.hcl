vrrp_instance "lan" {
  interface   = "lan"
  vrid        = 51
  virtual_ips = ["10.10.1.1/24"]
}

vrrp_instance "lan" {
  interface   = "wan"
  vrid        = 52
  virtual_ips = ["10.10.2.1/24"]
}
