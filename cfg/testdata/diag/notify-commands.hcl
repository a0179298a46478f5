vrrp_instance "lan" {
  interface   = "lan"
  vrid        = 51
  virtual_ips = ["10.10.1.1/24"]
  notify {
    master = ["/etc/ctha/on-master.sh lan 'first hop'", "/etc/ctha/x \"unterminated"]
    backup = ["", "   "]
    fault  = ["relative/path fault"]
    stop   = ["/etc/ctha/stop.sh trailing\\"]
    notify = ["/etc/ctha/generic.sh", "'/etc/ctha/quoted path.sh' arg"]
    typo   = ["/bin/true"]
  }
}

sync_group "fw" {
  instances = ["lan"]
  notify {
    stop   = ["/etc/ctha/group-stop.sh 'it\\'s'"]
    notify = ["ctha-notify"]
  }
}
