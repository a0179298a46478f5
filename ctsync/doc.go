// Package ctsync replicates the kernel's connection-tracking table between
// the nodes of a firewall pair: the job conntrackd does in the classic
// keepalived + conntrackd stack.
//
// It knows nothing of VRRP. The daemon tells it about role changes through a
// small hooks interface, and its readiness reaches the election as a tracker.
//
// The sub-package auth holds the shared sync key that authenticates every
// datagram between the nodes. With Config.Protocol = ProtocolConntrackd the
// peer is a running conntrackd 1.4 instead, spoken to with package ctdwire
// (FTFW over UDP, no authentication: ctdpeer.go).
package ctsync
