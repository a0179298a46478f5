vrrp_instance "lan" {
  priority = 150
}

track_script "upstream" {
  interval = "2s"
}

sync_group "fw" {
}
