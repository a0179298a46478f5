conntrack_sync {
  link "both" {
    interface       = "s1"
    local           = "10.10.3.1"
    peer            = "10.10.3.2"
    multicast_group = "225.0.0.50"
  }
  link "neither" {
    interface = "s2"
    local     = "10.10.4.1"
  }
  link "wrong-family" {
    interface = "s3"
    local     = "10.10.5.1"
    peer      = "fd00:10:5::2"
  }
  link "not-multicast" {
    interface       = "s4"
    local           = "10.10.6.1"
    multicast_group = "10.10.6.255"
  }
  auth_key_file = "sync.key"
}
