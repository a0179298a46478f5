# Written by `ctha import` from keepalived.conf.
# Check it with `ctha check`, and read every "not carried" note: each says what
# keepalived or conntrackd did that this file does not, and why.
# node_name from keepalived.conf:3: router_id.
node_name = "fw1"
# not carried: keepalived.conf:4: global_defs notification_email: ctha sends no mail; use a notify command
# not carried: keepalived.conf:7: global_defs smtp_server: ctha sends no mail; use a notify command
# not carried: keepalived.conf:10: global_defs enable_script_security: ctha runs every command as root, by absolute path; check that only root can change them

vrrp_instance "outside" {
  # conf.d/10-outside.conf:2: state MASTER: ctha elects by priority alone.
  # not carried: conf.d/10-outside.conf:8: unicast_src_ip: ctha sends from the interface's primary address
  # not carried: conf.d/10-outside.conf:24: user root of notify_master: ctha runs notify commands as root
  # not carried: conf.d/10-outside.conf:26: smtp_alert: ctha sends no mail; use a notify command
  # not carried: conf.d/10-outside.conf:13: label eth0:vip of 192.0.2.1/24: ctha adds the address with its prefix and interface only
  interface       = "eth0"
  vrid            = 51
  priority        = 150
  version         = 2
  advert_interval = "1s"
  preempt         = false
  virtual_ips     = ["192.0.2.1/24", "192.0.2.10/32"]
  unicast_peers   = ["192.0.2.3"]

  track_interface "eth2" {
    weight = -20
  }

  track_interface "eth3" {
    weight = 0
  }

  track_scripts = ["chk_bird", "chk_upstream"]

  notify {
    master = ["/etc/keepalived/notify.sh master outside"]
    notify = ["/usr/local/sbin/log-vrrp.sh"]
  }

  garp {
    repeat = 3
    delay  = "2s"
  }
}

vrrp_instance "inside" {
  # conf.d/20-inside.conf:2: state BACKUP: ctha elects by priority alone.
  # conf.d/20-inside.conf:17: "logger" has no absolute path; run through /bin/sh, which searches PATH.
  interface = "eth1"
  vrid      = 52
  priority  = 100
  version   = 2
  # conf.d/20-inside.conf:6: advert_int 0.5: VRRP version 2 counts whole seconds; 1s.
  advert_interval = "1s"
  preempt_delay   = "30s"
  virtual_ips     = ["10.0.0.1/24"]
  # not carried: conf.d/20-inside.conf:9: min_ttl 255 of unicast_peer 10.0.0.3: ctha checks the TTL is 255
  unicast_peers = ["10.0.0.3"]
  track_scripts = ["chk_bird_weight-50"]

  notify {
    backup = ["/bin/sh -c \"logger 'inside is backup'\""]
  }

  garp {
    repeat = 3
    delay  = "2s"
  }
}

track_script "chk_bird" {
  command  = ["/usr/bin/pgrep", "-x", "bird"]
  interval = "2s"
  timeout  = "1s"
  rise     = 2
  fall     = 2
  weight   = -30
}

track_script "chk_upstream" {
  # keepalived.conf:23: "ping" has no absolute path; run through /bin/sh, which searches PATH as keepalived does.
  command  = ["/bin/sh", "-c", "ping -c1 -W1 198.51.100.1"]
  interval = "5s"
  timeout  = "5s"
  rise     = 1
  fall     = 1
  weight   = 0
}

track_script "chk_bird_weight-50" {
  # vrrp_script chk_bird (keepalived.conf:13) with weight -50: in ctha the weight belongs to the script.
  command  = ["/usr/bin/pgrep", "-x", "bird"]
  interval = "2s"
  timeout  = "1s"
  rise     = 2
  fall     = 2
  weight   = -50
}
