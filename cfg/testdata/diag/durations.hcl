conntrack_sync {
  link "sync0" {
    interface = "sync"
    local     = "10.10.3.1"
    peer      = "10.10.3.2"
  }
  auth_key_file        = "sync.key"
  commit_timeout       = "-1s"
  purge_delay          = "0s"
  startup_sync_timeout = "30 seconds"
}
