vrrp_instance "lan" {
  interface = "lan"
  vrid      = 51
