# Written by `ctha import` from conntrackd.conf.
# Check it with `ctha check`, and read every "not carried" note: each says what
# keepalived or conntrackd did that this file does not, and why.

conntrack_sync {
  # conntrackd.conf:3: Mode ALARM.
  # not carried: conntrackd.conf:21: TCP: ctha replicates over its own reliable protocol on UDP
  # not carried: conntrackd.conf:42: Stats: ctha has no statistics mode; its metrics are Prometheus'
  mode             = "alarm"
  refresh_interval = "10s"
  cache_timeout    = "60s"
  # not carried: conntrackd.conf:6: CommitTimeout 30: it is the timeout conntrackd gives committed entries, not a time to wait for the commit (ctha's commit_timeout); ctha commits each entry with the timeout the peer reported
  # conntrackd's default, the external cache, committed at takeover. ctha's default, "direct",
  # writes the peer's states into the kernel as they arrive: nothing to commit at takeover.
  cache = "external"

  link "sync0" {
    # conntrackd.conf:14: UDP Default.
    # not carried: conntrackd.conf:19: SndSocketBuffer: ctha sizes its sync sockets itself
    interface = "eth3"
    local     = "10.255.0.1"
    peer      = "10.255.0.2"
    port      = 3780
  }

  link "sync1" {
    # conntrackd.conf:8: UDP.
    interface = "eth4"
    local     = "10.255.1.1"
    peer      = "10.255.1.2"
    port      = 3781
  }

  # conntrackd does not authenticate its datagrams; ctha does. Write the key once:
  #   ctha keygen /etc/ctha/sync.key   (next to this file), and copy it to the peer (mode 0600).
  auth_key_file = "sync.key"
  expectations  = true

  filter {
    # not carried: conntrackd.conf:34: Address Accept: ctha's filter accepts protocols and TCP states, and ignores addresses; it has no other kind
    protocols  = ["tcp", "udp"]
    tcp_states = ["ESTABLISHED", "CLOSE", "TIME_WAIT", "CLOSE_WAIT"]
  }

  # not carried: conntrackd.conf:29: LogFile: ctha logs to stderr, the journal (log block)
  # not carried: conntrackd.conf:30: Syslog: ctha logs to stderr, the journal (log block)
  # not carried: conntrackd.conf:31: NetlinkOverrunResync: ctha resyncs after every overrun, at once
}
