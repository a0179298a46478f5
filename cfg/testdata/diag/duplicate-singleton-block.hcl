control {
  socket = "/run/ctha/a.sock"
}

control {
  socket = "/run/ctha/b.sock"
}

vrrp_instance "lan" {
  interface   = "lan"
  vrid        = 51
  virtual_ips = ["10.10.1.1/24"]
}
