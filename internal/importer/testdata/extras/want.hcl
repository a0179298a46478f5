# Written by `ctha import` from keepalived.conf.
# Check it with `ctha check`, and read every "not carried" note: each says what
# keepalived or conntrackd did that this file does not, and why.
# not carried: keepalived.conf:12: track_file init_file: ctha does not create the file (a missing one reads as 0); create it with tmpfiles.d or the unit
# not carried: keepalived.conf:60: quorum 3 of vrrp_track_process quorum_ignored: keepalived ignores a quorum above quorum_max

vrrp_instance "lan" {
  interface   = "lan"
  vrid        = 51
  priority    = 150
  version     = 2
  virtual_ips = ["10.10.1.1/24", "10.10.2.1/24 dev wan", "10.10.3.1/24"]

  track_file "/run/keepalived/drain" {
    weight  = -10
    reverse = true
  }

  track_file "/run/keepalived/boost" {
    weight  = 5
    reverse = true
  }

  track_process "bird" {
    weight     = -50
    quorum     = 2
    quorum_max = 4
  }

  track_process "sshd" {
    weight = 0
  }

  track_process "bird6" {
    weight     = 10
    reverse    = true
    quorum     = 0
    quorum_max = 0
  }

  track_process "/usr/sbin/haproxy -f /etc/haproxy/haproxy.cfg" {
    weight       = 0
    full_command = true
  }

  track_process "/usr/local/bin/tool" {
    weight       = -20
    reverse      = true
    full_command = true
  }

  # not carried: keepalived.conf:87: track_process bird_any_args: keepalived's full_command without parameters matches a command line whose first word is "/usr/sbin/bird", whatever follows; ctha's full_command matches the whole command line: name the process by its whole command line, with full_command = true
  # not carried: keepalived.conf:88: track_process dnsmasq_partial: param_match initial or partial has no ctha equivalent: ctha's full_command matches the whole command line exactly
  # not carried: keepalived.conf:89: track_process long_name: a process name (comm) has at most 15 characters, so keepalived never matched "a_very_long_daemon_name"; match the command line with full_command

  track_process "unbound" {
    weight     = 0
    quorum_max = 2
  }

  excluded_virtual_ips = ["203.0.113.5/32 dev lo", "fd00:10:1::1/64", "198.51.100.9/32"]
}
