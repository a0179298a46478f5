// Package nfq is a client of the kernel's packet queue (NFQUEUE,
// nfnetlink_queue) on mdlayher/netlink, for multiprimary's `defer`: the
// packets an nftables rule sends to the queue wait in the kernel until
// ctha gives each a verdict.
//
// Open binds a queue number in copy-packet mode with a small copy range
// (the headers are all ctha reads), fail-open (when the kernel's queue is
// full it accepts packets rather than drop them), GSO packets unsegmented,
// and, where the kernel has CONFIG_NETFILTER_NETLINK_GLUE_CT and the caller
// asks for it, each packet's conntrack entry (NFQA_CT, both tuples with
// NAT; Queue.Glue says which). A queue bound by another socket is refused
// (ErrQueueTaken). Packets arrive on a channel; verdicts are single,
// several in one send, or a batch (every id up to N). ENOBUFS on the
// socket is counted, not fatal: with fail-open the kernel accepted the
// packets whose messages were lost. Close lets every held packet pass
// before it unbinds.
//
// The codec (msg.go) is pure: Packet.UnmarshalBinary decodes a packet
// message, conntrack attributes with ctsync/kernel's flow decoder. The
// runtime (queue.go, read.go) owns one reader goroutine per Queue, which
// Close stops and waits for.
//
// Concurrency: a Queue's methods are safe for concurrent use. Packets must
// be drained by one consumer; the channel is closed when the queue is.
// The package never logs.
package nfq
