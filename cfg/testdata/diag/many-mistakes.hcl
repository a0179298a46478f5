# One file with many mistakes: every one is reported, in file order.
node_name = "fw1"

vrrp_instance "lan" {
  interface       = "lan"
  vrid            = 256
  priority        = 150
  advert_interval = "1.234s"
  virtual_ips     = ["10.10.1.1/24", "fd00:10:1::1/64"]
  track_scripts   = ["nope"]
}

vrrp_instance "wan" {
  interface   = "wan"
  vrid        = 52
  priority    = 255
  virtual_ips = ["10.10.2.1/24"]
  colour      = "blue"
}

sync_group "fw" {
  instances = ["lan", "wan", "dmz"]
  conntrack = true
}

conntrack_sync {
  cache          = "both"
  commit_timeout = "soon"
  link "sync0" {
    interface = "sync"
    local     = "10.10.3.1"
  }
  auth_key_file = "open.key"
}
