vrrp_instance "lan" {
  interface   = "lan"
  vrid        = 51
  version     = 2
  virtual_ips = ["10.10.1.1/24"]
  authentication {
    type     = "pass"
    password = "much-too-long"
  }
}

vrrp_instance "wan" {
  interface   = "wan"
  vrid        = 52
  virtual_ips = ["10.10.2.1/24"]
  authentication {
    type     = "AH"
    password = ""
  }
}

vrrp_instance "dmz" {
  interface   = "dmz"
  vrid        = 53
  version     = 2
  virtual_ips = ["10.10.3.1/24"]
  authentication {
    password = "secret"
    key      = "x"
  }
  authentication {
    type     = "ah"
    password = "secret"
  }
}
