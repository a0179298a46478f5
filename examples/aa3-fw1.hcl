# fw1: one node of a three-node multiprimary (active-active) firewall.
#
# Three firewalls forward at once, each its own share of the hosts: the
# same LAN (10.10.1.0/24) and WAN (10.10.2.0/24) as aa-fw1.hcl, and one
# sync segment for the three (10.10.3.0/24: fw1 .1, fw2 .2, fw3 .3, a
# switch or a VLAN of their own). Three sets of virtual IPs:
#
#   group "a": 10.10.1.1 / 10.10.2.1       fw1 200, fw2 140, fw3 80
#   group "b": 10.10.1.254 / 10.10.2.254   fw2 200, fw3 140, fw1 80
#   group "c": 10.10.1.253 / 10.10.2.253   fw3 200, fw1 140, fw2 80
#
# The steps are more than 50 apart: while a peer is unreachable every
# node that misses it lowers its groups' priorities by 50, and the
# survivors do not notice a death at the same instant.
#
# A third of the LAN hosts use each group's LAN address as their gateway,
# and upstream routes each third back to its group's WAN address: both
# directions of a flow cross one node. When a node dies its group goes to
# the next node in the rotation (a to fw2, b to fw3, c to fw1), whose
# kernel already holds the dead node's flows; when a second dies, the
# last one holds all three groups.
#
# Every node replicates its own flows to both peers. fw2 and fw3 are this
# file with their own node_name, priorities, SNAT port range and local
# address, and the two others as peers (on each node, every link lists
# the same nodes in the same order).

node_name = "fw1"

vrrp_instance "lan-a" {
  interface   = "lan"
  vrid        = 51
  priority    = 200
  virtual_ips = ["10.10.1.1/24"]
}

vrrp_instance "wan-a" {
  interface   = "wan"
  vrid        = 52
  priority    = 200
  virtual_ips = ["10.10.2.1/24"]
}

vrrp_instance "lan-b" {
  interface   = "lan"
  vrid        = 61
  priority    = 80
  virtual_ips = ["10.10.1.254/24"]
}

vrrp_instance "wan-b" {
  interface   = "wan"
  vrid        = 62
  priority    = 80
  virtual_ips = ["10.10.2.254/24"]
}

vrrp_instance "lan-c" {
  interface   = "lan"
  vrid        = 71
  priority    = 140
  virtual_ips = ["10.10.1.253/24"]
}

vrrp_instance "wan-c" {
  interface   = "wan"
  vrid        = 72
  priority    = 140
  virtual_ips = ["10.10.2.253/24"]
}

sync_group "a" {
  instances = ["lan-a", "wan-a"]
}

sync_group "b" {
  instances = ["lan-b", "wan-b"]
}

sync_group "c" {
  instances = ["lan-c", "wan-c"]
}

conntrack_sync {
  topology        = "multiprimary"
  snat_port_range = "20000-29999" # fw2 30000-39999, fw3 40000-49999: see the README

  link "sync0" {
    interface = "sync"
    local     = "10.10.3.1"
    peers     = ["10.10.3.2", "10.10.3.3"] # fw2, fw3
    port      = 3780
  }

  auth_key_file = "sync.key" # the same key on the three nodes
}
