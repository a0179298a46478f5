# fw1 of a firewall pair with two sync links: the same pair as fw1.hcl,
# with a second, redundant sync cable (lab: Options.SecondSyncLink,
# interface "sync2", 10.10.4.0/24 and fd00:10:4::/64).
#
# Every link is open and received on; the first link that is up carries the
# traffic. A link is up while its interface has carrier and both nodes hear
# each other on it (probes every 250 ms): on carrier loss, or after 1 s of
# silence, the traffic moves to the next link that is up, and the reliable
# protocol resends what was in flight on the lost one. When the first link
# is back, the traffic returns to it. Only when every link is down is the
# peer down (the node is then demoted, never put in FAULT).
#
# fw2 is the same with its own priority and local addresses (and peer
# 10.10.3.1 on sync0). Up to 4 links; unicast (peer) and multicast
# (multicast_group: joined on the interface, TTL 1, no loopback) mix freely.

node_name = "fw1"

vrrp_instance "lan" {
  interface       = "lan"
  vrid            = 51
  priority        = 150
  advert_interval = "1s"
  virtual_ips     = ["10.10.1.1/24"]
}

vrrp_instance "wan" {
  interface       = "wan"
  vrid            = 52
  priority        = 150
  advert_interval = "1s"
  virtual_ips     = ["10.10.2.1/24"]
}

sync_group "fw" {
  instances = ["lan", "wan"]
  conntrack = true
}

conntrack_sync {
  mode  = "reliable" # or "alarm": no ACKs, every state sent again every
                     # refresh_interval, the peer's forgotten after cache_timeout
  cache = "direct"

  link "sync0" { # preferred
    interface = "sync"
    local     = "10.10.3.1"
    peer      = "10.10.3.2"
  }
  link "sync1" { # backup cable, multicast over IPv6
    interface       = "sync2"
    local           = "fd00:10:4::1"
    multicast_group = "ff12::3780"
  }

  auth_key_file = "sync.key"
}
