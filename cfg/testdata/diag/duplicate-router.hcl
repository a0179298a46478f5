vrrp_instance "a" {
  interface   = "lan"
  vrid        = 51
  virtual_ips = ["10.10.1.1/24"]
}

vrrp_instance "b" {
  interface   = "lan"
  vrid        = 51
  virtual_ips = ["10.10.1.1/24"]
}

vrrp_instance "c" {
  interface   = "lan"
  vrid        = 51
  virtual_ips = ["fd00:10:1::1/64"]
}
