// Package kernel is the conntrack engine's access to the kernel's
// connection-tracking table through ctnetlink: events (Listener), dumps and
// batched writes (Conn), and the conversion between kernel messages and
// ct.Flow (encode.go, decodeflow.go).
//
// Flows are decoded here, in place and without copies (decodeflow.go):
// github.com/ti-mo/conntrack's decoder, which allocates dozens of times per
// event, was a third of the sender's CPU. It still decodes expectations,
// and the tests fuzz the two flow decoders against each other. Listener
// reads the kernel's one-event datagrams in batches with recvmmsg(2).
// Flows are encoded here too, because ti-mo's encoder is unexported,
// cannot carry a NAT binding and never sends zero values: straight into
// the batch's buffer, with no allocation (nlbuf.go; building them with
// ti-mo/netfilter's attribute encoder cost about 60 allocations and 5 us
// per flow, a fifth of the receiving node's CPU). Writes are batched:
// many messages per sendmsg, the last asking for an ACK, and the answers
// are read, so every flow ends up either counted as written or reported
// with its errno.
//
// Everything works in the network namespace the socket was opened in: Dial
// and Listen open their sockets in the calling thread's namespace, and
// TableCount and EnsureEvents read /proc/sys/net/netfilter of the calling
// thread's namespace. The daemon runs inside its namespace, so that is the
// namespace it protects.
//
// Concurrency: a Conn is safe for concurrent use. It holds two sockets, one
// for writes and one for dumps, each serialised by its own lock, so a Dump
// may run while a Write is in progress; open several Conns to write in
// parallel (each has its own PortID, see ListenOptions.IgnorePortIDs). A
// Listener's Receive must be called from one goroutine at a time; Close and
// SetReadDeadline may be called from any goroutine and unblock it.
//
// The package never logs; errors wrap the operation with %w.
package kernel
