conntrack_sync {
  link "l1" {
    interface = "s1"
    local     = "10.10.3.1"
    peer      = "10.10.3.2"
  }
  link "l2" {
    interface = "s2"
    local     = "10.10.4.1"
    peer      = "10.10.4.2"
  }
  link "l3" {
    interface = "s3"
    local     = "10.10.5.1"
    peer      = "10.10.5.2"
  }
  link "l4" {
    interface = "s4"
    local     = "10.10.6.1"
    peer      = "10.10.6.2"
  }
  link "l5" {
    interface = "s5"
    local     = "10.10.7.1"
    peer      = "10.10.7.2"
  }
  auth_key_file = "sync.key"
}
