// Package proto is ctha's reliable sync protocol between two nodes: what
// makes every change of the conntrack table reach the peer, in order,
// despite loss, reordering and duplication on the link, and what tells
// each node whether its peer is up and which role it has.
//
// It is pure: an Endpoint is a state machine fed with received payloads,
// the objects that changed and the time, and it returns the payloads to
// send and the messages to deliver. The caller owns sockets, the
// authenticated envelope (auth.Seal/Open, with auth.ReplayGuard rejecting
// replayed and reflected datagrams) and the flow records (wire). That keeps it testable by simulation: the tests
// connect two Endpoints through a link that loses, reorders and duplicates,
// under a fake clock.
//
// # Reliability
//
// Reliable messages (data, bulk markers) carry a sequence number. The
// sender keeps, for every message not yet acknowledged, the keys of the
// objects it carried, not its bytes: a resend carries each object's latest
// state (an update, or a destroy if it is gone), so a late resend never
// brings back an old state. The receiver delivers in sequence order,
// buffering what arrives early; it acknowledges cumulatively and asks for
// every gap with NACKs, repeated until filled. Keep-alives carry the
// sender's next sequence number, so a lost tail is noticed too, and the
// oldest one it can still resend, where a receiver that has just met it
// starts; the sender also resends its oldest unacknowledged message after
// a timeout.
//
// If the sender had to give up messages (the peer was away so long that
// the changes it owed exceeded its bounds), it says so with a JUMP and
// sends a bulk copy instead: nothing is silently lost.
//
// # Payload format
//
// A payload is a sequence of messages, each a type byte, a length (a
// uvarint) and a body; a reader skips types it does not know.
//
//	DATA        0x01  seq u64, then records (the wire package's format)
//	BULK_START  0x02  seq u64, bulk id u32, echo u32, entries u32
//	BULK_END    0x03  seq u64, bulk id u32, echo u32
//	ALARM_DATA  0x04  records, no sequence number (Config.Unreliable, alarm mode)
//	ACK         0x10  every reliable message up to seq u64 was delivered
//	NACK        0x11  from u64, to u64: please resend this range
//	KEEPALIVE   0x12  role u8, flags u8, next seq u64, oldest resendable seq u64
//	BULK_REQ    0x13  epoch u32: please send a complete copy
//	JUMP        0x14  seq u64: nothing before it will be resent
//
// A reader takes the fields it knows and ignores the rest of a body, so
// fields are only ever appended. The echo and entries fields, and the
// BULK_REQ's epoch, came later: a peer of an older version sends none.
//
// # Bulk copies
//
// A bulk copy is everything between a BULK_START and its BULK_END: the
// receiver drops, at the end, what the copy did not mention. A BULK_REQ
// carries the requester's epoch; a bulk's markers echo the peer epoch the
// sender had heard when the bulk began (entries is how many objects it
// holds). A copy counts only if it echoes the receiver's current epoch:
// one begun for an earlier run of the receiver (queued while it was
// dead) is discarded and counted (Stats.BulksStale). When the peer
// restarts, the sender drops everything it owed the old run, bulks
// included, and starts one new copy; requests that arrive while that copy
// runs join it. So a restarted node receives one current copy, and a new
// one only after a copy was abandoned (the sender gave up on its
// backlog, or restarted).
//
// Types 0x20-0x2f are the caller's (the engine's link probes): an Endpoint
// skips them like any unknown type.
//
// Integers are big-endian. Sequence numbers start at 1 in each epoch (the
// sender's restart counter, carried by the envelope); at 64 bits they
// never wrap.
//
// Nothing here is safe for concurrent use: one goroutine owns an Endpoint.
package proto
