conntrack_sync {
  topology = "multiprimary"
  link "three-nodes" { # valid
    interface = "s1"
    local     = "10.10.3.1"
    peers     = ["10.10.3.2", "10.10.3.3"]
  }
  link "bad-peers" {
    interface = "s2"
    local     = "10.10.4.1"
    peers     = ["10.10.4.1", "fd00:10:4::2", "10.10.4.2", "10.10.4.2", "nope"]
  }
  link "none" {
    interface = "s3"
    local     = "10.10.5.1"
    peers     = []
  }
  link "all-three" {
    interface       = "s4"
    local           = "10.10.6.1"
    peer            = "10.10.6.2"
    peers           = ["10.10.6.2"]
    multicast_group = "225.0.0.50"
  }
  auth_key_file = "sync.key"
}
