# Written by `ctha import` from keepalived.conf and conntrackd.conf.
# Check it with `ctha check`, and read every "not carried" note: each says what
# keepalived or conntrackd did that this file does not, and why.

vrrp_instance "VI_1" {
  # keepalived.conf:17: state SLAVE: ctha elects by priority alone.
  interface       = "eth1"
  vrid            = 61
  priority        = 80
  version         = 2
  advert_interval = "3s"
  virtual_ips     = ["192.168.0.100/32"]

  authentication {
    type     = "pass"
    password = "papas_con_tomate"
  }
}

vrrp_instance "VI_2" {
  # keepalived.conf:32: state SLAVE: ctha elects by priority alone.
  interface       = "eth0"
  vrid            = 62
  priority        = 80
  version         = 2
  advert_interval = "3s"
  virtual_ips     = ["192.168.1.100/32"]

  authentication {
    type     = "pass"
    password = "papas_con_tomate"
  }
}

sync_group "G1" {
  instances = ["VI_1", "VI_2"]
  # keepalived.conf:10: notify_master /etc/conntrackd/primary-backup.sh primary: replaced by the sync group's conntrack = true.
  # keepalived.conf:11: notify_backup /etc/conntrackd/primary-backup.sh backup: replaced by the sync group's conntrack = true.
  # keepalived.conf:12: notify_fault /etc/conntrackd/primary-backup.sh fault: replaced by the sync group's conntrack = true.
  # conntrackd's primary-backup.sh: ctha commits, flushes, resyncs and purges itself, in order.
  conntrack = true
}

conntrack_sync {
  # conntrackd.conf:5: Mode ALARM.
  mode             = "alarm"
  refresh_interval = "15s"
  cache_timeout    = "180s"
  # conntrackd's default, the external cache, committed at takeover. ctha's default, "direct",
  # writes the peer's states into the kernel as they arrive: nothing to commit at takeover.
  cache = "external"

  link "sync0" {
    # conntrackd.conf:53: Multicast.
    # not carried: conntrackd.conf:91: SndSocketBuffer: ctha sizes its sync sockets itself
    # not carried: conntrackd.conf:103: RcvSocketBuffer: ctha sizes its sync sockets itself
    # not carried: conntrackd.conf:110: Checksum: ctha authenticates every sync datagram with HMAC, which covers more than a checksum
    interface       = "eth2"
    local           = "192.168.100.100"
    multicast_group = "225.0.0.50"
    port            = 3780
  }

  # conntrackd does not authenticate its datagrams; ctha does. Write the key once:
  #   ctha keygen /etc/ctha/sync.key   (next to this file), and copy it to the peer (mode 0600).
  auth_key_file = "sync.key"
  # conntrackd replicates no expectations unless ExpectationSync says so.
  expectations = false

  filter {
    protocols = ["tcp", "sctp", "dccp"]
    # Address Ignore; ctha also ignores the node's own addresses by itself.
    ignore_addresses = ["127.0.0.1/32", "192.168.0.100/32", "192.168.1.100/32", "192.168.0.1/32", "192.168.1.1/32", "192.168.100.100/32"]
  }

  # not carried: conntrackd.conf:233: HashSize: ctha sizes its caches itself
  # not carried: conntrackd.conf:241: HashLimit: ctha's caches are bounded by the kernel's table (nf_conntrack_max)
  # not carried: conntrackd.conf:247: LogFile: ctha logs to stderr, the journal (log block)
  # not carried: conntrackd.conf:258: LockFile: ctha locks its state_dir
  # not carried: conntrackd.conf:263: UNIX: ctha's control socket is control { socket }
  # not carried: conntrackd.conf:275: NetlinkBufferSize: ctha sizes its netlink socket itself, and resyncs after an overrun
  # not carried: conntrackd.conf:283: NetlinkBufferSizeMaxGrowth: ctha sizes its netlink socket itself, and resyncs after an overrun
}
