vrrp_instance "lan" {
  interface     = "lan"
  vrid          = 51
  virtual_ips   = ["10.10.1.1/24"]
  track_scripts = ["upstream", "uplink"]
}

track_script "upstream" {
  command = ["/usr/bin/ping", "-c1", "10.10.2.100"]
}

track_script "spare" {
  command  = ["ping", "-c1", "10.10.2.100"]
  interval = "1s"
  timeout  = "2s"
}
