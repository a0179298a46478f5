package main

// What the demo tells the user before each phase.

const introText = `
ctha demo: two firewalls, live connections, the master dies, nothing breaks.

  1. a small network in network namespaces on this machine: a client, a server and two
     firewalls between them (the host's own interfaces, routes and firewall are not touched);
  2. ctha on both firewalls as a primary/backup pair (examples/fw1.hcl and fw2.hcl);
  3. live TCP connections from the client to the server, through the pair;
  4. the master is killed, the backup takes over;
  5. what survived; then everything the demo made is removed (also on Ctrl-C).

It takes about half a minute.`

const labText = `
Five network namespaces, joined by virtual cables (veth) and two bridges. The firewalls
run a strict stateful ruleset: they forward a packet only if its connection is in their
kernel's connection-tracking table (or it is a new connection from the LAN), and count
and drop the rest as INVALID (nf_conntrack_tcp_loose=0). So a connection survives a
failover only if the new master already has its state.`

const topologyText = `
     cl  10.10.1.100  client; its gateway is the LAN VIP 10.10.1.1
      |
   [ LAN bridge ]
      |         |
     fw1       fw2      10.10.1.2 / .3 on the LAN, 10.10.2.2 / .3 on the WAN
      |  \sync/  |      sync link 10.10.3.1 <-> 10.10.3.2 (state replication)
   [ WAN bridge ]
      |
     srv 10.10.2.100  server; its gateway is the WAN VIP 10.10.2.1

Namespaces: %[1]s-cl, %[1]s-fw1, %[1]s-fw2, %[1]s-srv and %[1]s-sw (the bridges).`

const pairText = `
fw1 runs examples/fw1.hcl (priority 150), fw2 examples/fw2.hcl (priority 100): VRRP
instances "lan" and "wan" in one sync group with conntrack = true, conntrack replication
over the sync link with cache = "direct" (the peer's states go straight into the kernel),
and a shared key made with ctha keygen. Advert interval: %s.

fw1 starts alone: hearing no master, it waits its Master_Down_Interval (%.1f s), then
becomes MASTER, adds the VIPs and announces them with gratuitous ARP. fw2 then joins,
hears fw1's adverts, stays BACKUP and opens the sync link.

Below, one line a second, read the way an administrator would: ctha status --json run
in each firewall's namespace, and the addresses on its interfaces. Per node: the sync
group's state, the VIPs it holds, whether its sync peer answers, its states (own: the
connections through this node; peer: its copy of the other node's); and how many of
the client's connections are alive (echoing).`

const flowsText = `
The client opens %d TCP connections to the server (10.10.2.100:5001) through the VIPs.
Each sends a small message every %v and the server echoes it back. fw1 forwards them
and replicates each new connection's state to fw2: watch fw1's own count and fw2's peer
count reach it.`

const killText = `
fw1 is now killed without warning: SIGKILL, and its LAN and WAN links down, as in a
crash (no goodbye advert). fw2 stops hearing adverts; after its Master_Down_Interval
(%.1f s since fw1's last advert) it becomes MASTER, adds the VIPs and sends gratuitous
ARP, so the client and the server now send to it.

Meanwhile the connections' packets are lost and TCP retransmits them, after 0.2, 0.6,
1.4, 3.0, 6.2 s: each connection resumes at its first retransmission after the takeover.
fw2 forwards them because their states are already in its kernel: no reset, no INVALID.`
