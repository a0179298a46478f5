vrrp_instance "lan" {
  interface   = "lan"
  vrid        = 51
  priority    = 0
  virtual_ips = ["10.10.1.1/24"]
}

vrrp_instance "wan" {
  interface   = "wan"
  vrid        = 52
  priority    = 256
  virtual_ips = ["10.10.2.1/24"]
}
