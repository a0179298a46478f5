# fw1: one node of a multiprimary (active-active) firewall pair.
#
# Both firewalls forward at once. The same lab as fw1.hcl: a LAN
# (10.10.1.0/24), a WAN (10.10.2.0/24) and a dedicated sync link
# (10.10.3.0/24). Traffic is split with two sets of virtual IPs:
#
#   group "a": 10.10.1.1 (LAN), 10.10.2.1 (WAN)     master fw1 (150), backup fw2 (100)
#   group "b": 10.10.1.254 (LAN), 10.10.2.254 (WAN) master fw2 (150), backup fw1 (100)
#
# Give half of the LAN hosts 10.10.1.1 as their gateway and the other half
# 10.10.1.254, and route each half back to its group's WAN address
# upstream (e.g. 10.10.1.0/25 via 10.10.2.1, 10.10.1.128/25 via
# 10.10.2.254): both directions of a flow must cross the same node. If a
# node dies, the other takes its group, and its kernel already holds the
# dead node's flows.
#
# Every node replicates its own flows to its peer, whose flows go straight
# into the kernel: the cache is direct, and no sync group sets
# conntrack = true. aa-fw2.hcl is the same with the priorities of the two
# groups swapped and the sync addresses swapped.
#
# Create the key once with `ctha keygen /etc/ctha/sync.key` and copy it to
# fw2 (mode 0600). Validate with `ctha check -c /etc/ctha/ctha.hcl`.

node_name = "fw1"

vrrp_instance "lan-a" {
  interface       = "lan"
  vrid            = 51
  priority        = 150
  advert_interval = "1s"
  virtual_ips     = ["10.10.1.1/24"]
}

vrrp_instance "wan-a" {
  interface       = "wan"
  vrid            = 52
  priority        = 150
  advert_interval = "1s"
  virtual_ips     = ["10.10.2.1/24"]
}

vrrp_instance "lan-b" {
  interface       = "lan"
  vrid            = 61
  priority        = 100
  advert_interval = "1s"
  virtual_ips     = ["10.10.1.254/24"]
}

vrrp_instance "wan-b" {
  interface       = "wan"
  vrid            = 62
  priority        = 100
  advert_interval = "1s"
  virtual_ips     = ["10.10.2.254/24"]
}

# Each group's LAN and WAN sides fail over together; fw1 is group a's master.
sync_group "a" {
  instances = ["lan-a", "wan-a"]
}

sync_group "b" {
  instances = ["lan-b", "wan-b"]
}

conntrack_sync {
  topology = "multiprimary"
  mode     = "reliable"
  cache    = "direct" # required by multiprimary (and the default)

  link "sync0" {
    interface = "sync"
    local     = "10.10.3.1"
    peers     = ["10.10.3.2"] # every other node (aa3-fw1.hcl: three nodes)
    port      = 3780
  }

  auth_key_file = "sync.key" # relative to this file
}
