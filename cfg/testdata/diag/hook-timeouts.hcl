vrrp_instance "lan" {
  interface     = "lan"
  vrid          = 51
  virtual_ips   = ["10.10.1.1/24"]
  track_scripts = ["upstream", "slow"]
}

track_script "upstream" {
  command  = ["/usr/bin/ping", "-c1", "198.51.100.1"]
  interval = "87600h"
  timeout  = "87600h"
}

track_script "slow" {
  command  = ["/usr/local/bin/slow-check"]
  interval = "2h"
  timeout  = "1h"
}

sync_group "fw" {
  instances = ["lan"]
  notify {
    master  = ["/etc/ctha/on-master.sh"]
    timeout = "61m"
  }
}
