# Written by `ctha import` from keepalived.conf and conntrackd.conf.
# Check it with `ctha check`, and read every "not carried" note: each says what
# keepalived or conntrackd did that this file does not, and why.

vrrp_instance "gw" {
  # keepalived.conf:11: notify_master /etc/conntrackd/primary-backup.sh primary: replaced by the sync group's conntrack = true.
  # keepalived.conf:12: notify_backup /etc/conntrackd/primary-backup.sh backup: replaced by the sync group's conntrack = true.
  interface = "ens3"
  vrid      = 200
  # priority 255 (address owner) becomes 254: an owner would take over at boot before its conntrack table is complete.
  priority        = 254
  version         = 2
  advert_interval = "2s"
  virtual_ips     = ["100.64.0.1/24"]

  notify {
    fault  = ["/usr/local/bin/page-oncall", "/usr/local/bin/log-state 'gw fault'"]
    stop   = ["/usr/local/bin/page-oncall"]
    notify = ["/usr/local/bin/log-state"]
  }
}

sync_group "gw" {
  # vrrp_instance gw ran primary-backup.sh outside a sync group: a group of its own drives conntrack.
  instances = ["gw"]
  # conntrackd's primary-backup.sh: ctha commits, flushes, resyncs and purges itself, in order.
  conntrack = true
}

conntrack_sync {
  # conntrackd.conf:2: Mode FTFW.
  mode = "reliable"
  # conntrackd's default, the external cache, committed at takeover. ctha's default, "direct",
  # writes the peer's states into the kernel as they arrive: nothing to commit at takeover.
  cache = "external"

  link "sync0" {
    # conntrackd.conf:3: Multicast Default.
    interface       = "ens4"
    local           = "10.0.99.1"
    multicast_group = "225.0.0.51"
    port            = 3781
  }

  link "sync1" {
    # conntrackd.conf:9: Multicast.
    interface       = "ens5"
    local           = "10.0.98.1"
    multicast_group = "225.0.0.50"
    port            = 3780
  }

  # conntrackd does not authenticate its datagrams; ctha does. Write the key once:
  #   ctha keygen /etc/ctha/sync.key   (next to this file), and copy it to the peer (mode 0600).
  auth_key_file = "sync.key"
  # conntrackd replicates no expectations unless ExpectationSync says so.
  expectations = false

  filter {
    # not carried: conntrackd.conf:18: Protocol Ignore: ctha's filter accepts protocols and TCP states, and ignores addresses; it has no other kind
    tcp_states = ["ESTABLISHED"]
  }
}
