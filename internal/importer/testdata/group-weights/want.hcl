# Written by `ctha import` from keepalived.conf and conntrackd.conf.
# Check it with `ctha check`, and read every "not carried" note: each says what
# keepalived or conntrackd did that this file does not, and why.
# node_name from keepalived.conf:5: router_id.
node_name = "fw-b"
# not carried: keepalived.conf:8: @fw-a: conditional configuration and parameters are not expanded; import the file keepalived writes with -i/--config-id applied, or edit

vrrp_instance "ext" {
  interface = "eth0"
  vrid      = 31
  # priority 255 (address owner) becomes 254: an owner would take over at boot before its conntrack table is complete.
  priority    = 254
  version     = 2
  virtual_ips = ["203.0.113.1/28"]
  # inc/instances.conf:9: track_script chk_dns: weight 20 becomes 0, as keepalived sets it in sync group FW (no sync_group_tracking_weight).
  # not carried: inc/instances.conf:10: track_script chk_nft: the vrrp_script is not carried
  track_scripts = ["chk_dns_weight0"]

  track_interface "eth9" {
    # keepalived.conf:18: weight -10 becomes 0, as keepalived sets it in sync group FW (no sync_group_tracking_weight).
    weight = 0
  }

  # not carried: inc/instances.conf:13: virtual_routes src 203.0.113.1 to 198.51.100.0/24 via 203.0.113.14: ctha's virtual_routes have to, via, dev, table and metric only (not "src")
  virtual_routes = [{ to = "0.0.0.0/0", via = "203.0.113.14", table = 254 }]

  garp {
    # vrrp_min_garp: one message, no second burst.
    repeat = 1
    delay  = "0s"
  }
}

vrrp_instance "int" {
  interface   = "eth1"
  vrid        = 32
  priority    = 120
  version     = 2
  virtual_ips = ["10.1.0.1/16"]

  track_interface "eth1" {
    weight = 0
  }

  track_interface "eth8" {
    # inc/instances.conf:26: weight 15 becomes 0, as keepalived sets it in sync group FW (no sync_group_tracking_weight).
    weight = 0
  }

  # inc/instances.conf:29: track_script chk_dns: weight 5 becomes 0, as keepalived sets it in sync group FW (no sync_group_tracking_weight).
  track_scripts = ["chk_dns_weight0"]

  track_interface "eth9" {
    # keepalived.conf:18: weight -10 becomes 0, as keepalived sets it in sync group FW (no sync_group_tracking_weight).
    weight = 0
  }

  garp {
    # vrrp_min_garp: one message, no second burst.
    repeat = 1
    delay  = "0s"
  }
}

# not carried: inc/scripts.conf:1: vrrp_script chk_nft: weight ... reverse has no ctha equivalent

track_script "chk_dns_weight0" {
  # vrrp_script chk_dns (inc/scripts.conf:7) with weight 0: in ctha the weight belongs to the script.
  # not carried: inc/scripts.conf:11: user: ctha runs track scripts as root
  command  = ["/usr/local/bin/chk-dns"]
  interval = "1s"
  timeout  = "1s"
  rise     = 3
  fall     = 1
  weight   = 0
}

sync_group "FW" {
  instances = ["ext", "int"]
  # keepalived.conf:20: notify_master /etc/conntrackd/primary-backup.sh primary: replaced by the sync group's conntrack = true.
  # keepalived.conf:21: notify_backup /etc/conntrackd/primary-backup.sh backup: replaced by the sync group's conntrack = true.
  # keepalived.conf:22: notify_fault /etc/conntrackd/primary-backup.sh fault: replaced by the sync group's conntrack = true.
  # conntrackd's primary-backup.sh: ctha commits, flushes, resyncs and purges itself, in order.
  conntrack = true

  notify {
    stop = ["/etc/keepalived/stopped.sh"]
  }
}

conntrack_sync {
  # conntrackd.conf:2: Mode FTFW.
  mode = "reliable"
  # conntrackd's default, the external cache, committed at takeover. ctha's default, "direct",
  # writes the peer's states into the kernel as they arrive: nothing to commit at takeover.
  cache = "external"

  link "sync0" {
    # conntrackd.conf:4: UDP.
    interface = "eth7"
    local     = "10.9.0.2"
    peer      = "10.9.0.1"
    port      = 3780
  }

  # conntrackd does not authenticate its datagrams; ctha does. Write the key once:
  #   ctha keygen /etc/ctha/sync.key   (next to this file), and copy it to the peer (mode 0600).
  auth_key_file = "sync.key"
  # conntrackd replicates no expectations unless ExpectationSync says so.
  expectations = false
}
