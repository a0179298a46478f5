vrrp_instance "lan" {
  interface   = "lan"
  vrid        = "fifty-one"
  priority    = 1.5
  preempt     = "sometimes"
  virtual_ips = "10.10.1.1/24"
}
