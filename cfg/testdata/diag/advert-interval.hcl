vrrp_instance "v2-fraction" {
  interface       = "lan"
  vrid            = 1
  version         = 2
  advert_interval = "1500ms"
  virtual_ips     = ["10.10.1.1/24"]
}

vrrp_instance "v3-step" {
  interface       = "lan"
  vrid            = 2
  advert_interval = "15ms"
  virtual_ips     = ["10.10.1.2/24"]
}

vrrp_instance "v3-long" {
  interface       = "lan"
  vrid            = 3
  advert_interval = "41s"
  virtual_ips     = ["10.10.1.3/24"]
}

vrrp_instance "v2-long" {
  interface       = "lan"
  vrid            = 4
  version         = 2
  advert_interval = "256s"
  virtual_ips     = ["10.10.1.4/24"]
}
