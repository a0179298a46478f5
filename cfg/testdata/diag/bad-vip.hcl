vrrp_instance "lan" {
  interface   = "lan"
  vrid        = 51
  virtual_ips = ["10.10.1.1/33", "gateway", "224.0.0.5", "10.10.1.9", "10.10.1.9/24"]
}
