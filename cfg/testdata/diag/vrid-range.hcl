vrrp_instance "lan" {
  interface   = "lan"
  vrid        = 300
  virtual_ips = ["10.10.1.1/24"]
}

vrrp_instance "wan" {
  interface   = "wan"
  vrid        = 0
  virtual_ips = ["10.10.2.1/24"]
}
