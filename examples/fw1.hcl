# fw1: the primary of a primary-backup firewall pair.
#
# It matches the project's namespace lab: a LAN (10.10.1.0/24) and a WAN
# (10.10.2.0/24) side, each with a virtual IP the hosts use as their gateway,
# and a dedicated sync link (10.10.3.0/24) between the two firewalls.
# fw2.hcl is the same with a lower priority and the sync addresses swapped.
#
# Create the key once with `ctha keygen /etc/ctha/sync.key` and copy it to
# fw2 (mode 0600). Validate with `ctha check -c /etc/ctha/ctha.hcl`.

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

# Both sides fail over together, and their role drives conntrack sync.
sync_group "fw" {
  instances = ["lan", "wan"]
  conntrack = true
}

conntrack_sync {
  mode  = "reliable"
  cache = "direct"

  link "sync0" {
    interface = "sync"
    local     = "10.10.3.1"
    peer      = "10.10.3.2"
    port      = 3780
  }

  auth_key_file = "sync.key" # relative to this file
}
