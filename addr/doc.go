// Package addr owns a VRRP instance's virtual IP addresses (VIPs) on the
// host.
//
// A Manager adds the VIPs when its instance becomes master (Up) and removes
// them when it stops being master (Down), through rtnetlink
// (vishvananda/netlink). Up announces them at once: gratuitous ARP for IPv4,
// in both forms (a request with sender = target = VIP and a zero target MAC,
// and a reply with a broadcast target MAC, so that peers update their
// existing entries even with arp_accept=0), written on an AF_PACKET socket
// (mdlayher/packet, mdlayher/ethernet, mdlayher/arp's packet codec); and
// unsolicited neighbour advertisements for IPv6 (mdlayher/ndp: to ff02::1,
// Override set, target link-layer address option, hop limit 255). IPv6 VIPs
// are added with IFA_F_NODAD, so they are usable at once. Further bursts
// (the rest of a burst, a delayed second burst, a periodic refresh) are
// sent by the Manager's own goroutine, which Down and Close stop.
//
// With Config.VirtualMAC, the Manager also owns a macvlan link named
// vrrp.<vrid> (IPv6: vrrp6.<vrid>) on the interface, in private mode, with
// the RFC 5798 virtual MAC and no automatic IPv6 link-local address. New
// creates it (down), Up sets it up and puts the VIPs on it, Down sets it
// down, Close deletes it. The parent interface still answers ARP for the
// VIPs with its own MAC unless its arp_ignore is 1: that is the operator's
// sysctl to set, as with keepalived.
//
// Removing an IPv4 VIP that happens to be the primary address of its subnet
// on the interface (added before the interface's own address) removes the
// secondaries with it unless net.ipv4.conf.<if>.promote_secondaries is 1.
//
// RemoveStale removes VIPs left on an interface by a crashed run; call it
// before the election starts.
//
// Network namespaces: New opens its rtnetlink handle and sockets in the
// network namespace of the calling thread, and the Manager keeps using them
// from whatever goroutine calls it, so a Manager made in a namespace stays
// in it. RemoveStale works in the namespace of the calling thread.
//
// Concurrency: a Manager's Up, Down, Announce and Close must be called from
// one goroutine at a time (the instance's runner). Stats is safe for
// concurrent use at any time; Present is safe for concurrent use with
// everything but Close. The package never logs except through the logger
// given to New, for failures of background announcements, and never
// panics.
package addr
