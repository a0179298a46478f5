# Written by `ctha import` from keepalived.conf.
# Check it with `ctha check`, and read every "not carried" note: each says what
# keepalived or conntrackd did that this file does not, and why.
# not carried: keepalived.conf:31: static_ipaddress: ctha manages only the addresses that follow the role; configure static ones in the system's network configuration
# not carried: keepalived.conf:21: vrrp_instance nowhere: it names no valid interface (ctha binds each instance to one)

vrrp_instance "solo" {
  # keepalived.conf:14: notify_master /etc/conntrackd/primary-backup.sh primary: replaced by the sync group's conntrack = true.
  # not carried: keepalived.conf:15: dont_track_primary: ctha always tracks the instance's interface
  # not carried: keepalived.conf:16: track_src_ip: ctha has no such tracking
  # not carried: keepalived.conf:17: track_interface: written without its block { ... }, or with one it does not take
  # not carried: keepalived.conf:9: address 192.0.2.8-9: address ranges are not expanded; list each address
  interface   = "eth0"
  vrid        = 7
  priority    = 255
  version     = 2
  virtual_ips = ["192.0.2.7/32"]
  # not carried: keepalived.conf:12: track_script no_such_script: no vrrp_script of that name

  garp {
    refresh = "60s"
  }
}

sync_group "solo" {
  # vrrp_instance solo ran primary-backup.sh outside a sync group: a group of its own drives conntrack.
  instances = ["solo"]
  # primary-backup.sh ran here, but no conntrackd.conf was imported: once conntrack_sync is
  # configured, set conntrack = true.
}
