vrrp_instance "lan" {
  interface   = "lan"
  vrid        = "51"
  priority    = "150"
  preempt     = "true"
  virtual_ips = ["10.10.1.1/24"]
  garp {
    repeat = "3"
  }
}

conntrack_sync {
  link "sync0" {
    interface = "sync"
    local     = "10.10.3.1"
    peer      = "10.10.3.2"
    port      = "3780"
  }
  auth_key_file = "sync.key"
  expectations  = "false"
}

sync_group "fw" {
  instances = ["lan"]
  conntrack = true
}
