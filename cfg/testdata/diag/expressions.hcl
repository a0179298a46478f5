vrrp_instance "lan" {
  interface   = "lan"
  vrid        = var.vrid
  priority    = 100 + 50
  virtual_ips = ["10.10.1.1/24"]
}
