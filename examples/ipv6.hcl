# An IPv6 firewall pair node (VRRP version 3 is required for IPv6).
#
# VRRPv3 over IPv6 is sent from the interface's link-local address to
# ff02::12. An instance holds virtual IPs of one family, so a dual-stack
# pair runs one instance per family per side, all in one sync group.

node_name = "fw1"

log {
  level  = "info"
  format = "json"
}

vrrp_instance "lan4" {
  interface   = "lan"
  vrid        = 51
  priority    = 150
  virtual_ips = ["10.10.1.1/24"]
}

vrrp_instance "lan6" {
  interface       = "lan"
  vrid            = 51 # the same VRID may serve both families
  priority        = 150
  version         = 3
  advert_interval = "300ms"
  virtual_ips     = ["fd00:10:1::1/64"]
}

vrrp_instance "wan6" {
  interface       = "wan"
  vrid            = 52
  priority        = 150
  advert_interval = "300ms"
  virtual_ips     = ["fd00:10:2::1/64"]

  track_interface "lan" { weight = 0 } # FAULT while the LAN link is down
}

sync_group "fw" {
  instances = ["lan4", "lan6", "wan6"]
  conntrack = true
}

conntrack_sync {
  link "sync0" {
    interface = "sync"
    local     = "fd00:10:3::1"
    peer      = "fd00:10:3::2"
  }
  auth_key_file = "sync.key"

  filter {
    ignore_addresses = ["127.0.0.0/8", "::1/128", "fe80::/10"]
  }
}
