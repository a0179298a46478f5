// Package ctsync replicates the kernel's connection-tracking table between
// the nodes of a firewall pair: the job conntrackd does in the classic
// keepalived + conntrackd stack.
//
// It knows nothing of VRRP. The daemon tells it about role changes through a
// small hooks interface, and its readiness reaches the election as a tracker.
//
// A Handle runs one Engine at a time and replaces it on a reload
// (handle.go): the daemon and the choreography hold the Handle, so none of
// them calls an engine that has stopped; the new engine starts in the
// node's role with the old one's caches, and the peer sees it restarted.
//
// The sub-package auth holds the shared sync key that authenticates every
// datagram between the nodes. With Config.Protocol = ProtocolConntrackd the
// peer is a running conntrackd 1.4 instead, spoken to with package ctdwire
// (FTFW over UDP, no authentication: ctdpeer.go).
package ctsync
