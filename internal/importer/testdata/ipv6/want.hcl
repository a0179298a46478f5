# Written by `ctha import` from keepalived.conf and conntrackd.conf.
# Check it with `ctha check`, and read every "not carried" note: each says what
# keepalived or conntrackd did that this file does not, and why.
# node_name from keepalived.conf:4: router_id.
node_name = "edge-a"
# not carried: keepalived.conf:77: virtual_server: ctha does no load balancing (LVS)

vrrp_instance "v4" {
  interface       = "bond0.10"
  vrid            = 10
  priority        = 200
  version         = 3
  advert_interval = "250ms"
  virtual_mac     = true
  virtual_ips     = ["198.51.100.1/24"]
  # not carried: keepalived.conf:17: delay 0.5 of vrrp_track_process bird6: ctha follows the process without a delay

  track_process "bird6" {
    weight = 30
  }

  track_file "/run/keepalived/drain" {
    weight = -10
  }

  excluded_virtual_ips = ["203.0.113.5/32 dev bond0.20", "2001:db8:20::5/64 dev bond0.20"]
  # not carried: keepalived.conf:50: virtual_routes blackhole 10.99.0.0/16: ctha's virtual_routes have to, via, dev, table and metric only (not "blackhole")
  virtual_routes = [{ to = "192.0.2.0/24", via = "198.51.100.254" }, { to = "0.0.0.0/0", via = "198.51.100.254", table = 100, metric = 10 }]
  # not carried: keepalived.conf:54: virtual_rules to 10.0.0.0/8 table main iif eth0: ctha's virtual_rules have from, to, table and priority only (not "iif")
  virtual_rules = [{ from = "198.51.100.0/24", table = 100, priority = 1000 }]
}

vrrp_instance "v6" {
  interface = "bond0.10"
  vrid      = 10
  priority  = 200
  # version 3: keepalived runs IPv6 instances as version 3.
  version         = 3
  advert_interval = "1s"
  virtual_ips     = ["2001:db8:10::1/64", "fe80::1/128"]

  track_file "/run/keepalived/drain" {
    weight = -10
  }

  # not carried: keepalived.conf:67: authentication: VRRP version 3 has no authentication (RFC 5798); keepalived ignores it too

  garp {
    interval = "10ms"
  }
}

sync_group "EDGE" {
  instances = ["v4", "v6"]
  # keepalived.conf:27: notify_master /usr/share/doc/conntrackd/examples/sync/primary-backup.sh primary: replaced by the sync group's conntrack = true.
  # keepalived.conf:28: notify_backup /usr/share/doc/conntrackd/examples/sync/primary-backup.sh backup: replaced by the sync group's conntrack = true.
  # keepalived.conf:29: notify_fault /usr/share/doc/conntrackd/examples/sync/primary-backup.sh fault: replaced by the sync group's conntrack = true.
  # conntrackd's primary-backup.sh: ctha commits, flushes, resyncs and purges itself, in order.
  conntrack = true

  notify {
    notify = ["/etc/keepalived/tell-monitoring.sh"]
  }
}

conntrack_sync {
  # conntrackd.conf:2: Mode FTFW.
  mode = "reliable"
  # not carried: conntrackd.conf:4: CommitTimeout 180: it is the timeout conntrackd gives committed entries, not a time to wait for the commit (ctha's commit_timeout); ctha commits each entry with the timeout the peer reported
  purge_delay = "5s"
  # not carried: conntrackd.conf:6: ResendQueueSize: ctha sizes its resend queue itself
  # not carried: conntrackd.conf:7: StartupResync: ctha always asks the peer for a bulk copy when it starts
  # DisableExternalCache on: the peer's states go into the kernel as they arrive.
  cache = "direct"

  link "sync0" {
    # conntrackd.conf:9: UDP Default.
    # not carried: conntrackd.conf:14: Checksum: ctha authenticates every sync datagram with HMAC, which covers more than a checksum
    interface = "bond0.99"
    local     = "fd00:ff::1"
    peer      = "fd00:ff::2"
    port      = 3780
  }

  # conntrackd does not authenticate its datagrams; ctha does. Write the key once:
  #   ctha keygen /etc/ctha/sync.key   (next to this file), and copy it to the peer (mode 0600).
  auth_key_file       = "sync.key"
  tcp_window_tracking = true
  # not carried: conntrackd.conf:18: ExpectationSync's helper list (ftp sip): ctha replicates the expectations of every helper
  expectations = true

  filter {
    # not carried: conntrackd.conf:29: protocol ESP: ctha's filter knows tcp, udp, udplite, icmp, icmpv6, sctp, dccp and gre
    # conntrackd.conf:39: State Ignore { SYN_SENT SYN_RECV }: every other TCP state is accepted.
    protocols = ["tcp", "udp", "icmpv6"]
    # Address Ignore; ctha also ignores the node's own addresses by itself.
    ignore_addresses = ["::1/128", "fd00:ff::/64"]
    tcp_states       = ["ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"]
  }

  # not carried: conntrackd.conf:26: Systemd: ctha always talks to systemd (Type=notify)
  # not carried: conntrackd.conf:27: HashSize: ctha sizes its caches itself
}
