node_name = "fw 1"

control {
  socket  = "run/ctha.sock"
  metrics = "localhost"
}

log {
  level  = "verbose"
  format = "xml"
}

vrrp_instance "lan" {
  interface   = "a-very-long-interface-name"
  vrid        = 51
  virtual_ips = ["10.10.1.1/24"]
  unicast_peers = ["10.10.1.3", "fd00::3", "ff02::1", "peer"]

  garp {
    repeat   = 0
    interval = "-5ms"
  }
  track_interface "wan/0" {
    weight = 300
  }
}
