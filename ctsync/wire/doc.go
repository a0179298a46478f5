// Package wire is the codec of the flow records ctha's sync protocol
// carries: an update (a new or changed flow, its full current state) or a
// destroy (a flow that ended). It is pure code: no I/O, no clocks, no
// logging. AppendUpdate and AppendDestroy append to a caller's buffer and
// ParseRecord reads in place; neither allocates for a flow without
// ct.Extra. Every function is safe for concurrent use.
//
// Records are self-delimiting, so a datagram holds as many as fit, one
// after the other, and a reader skips what it does not know. The format
// has no version of its own: the authenticated envelope around the
// datagram (package auth, Header.Version) versions it.
//
// # Record
//
// Every record is a kind byte, the length of its body as a uvarint
// (encoding/binary), and the body:
//
//	kind   u8       1 update, 2 destroy, 3 expect, 4 expect destroy,
//	                5 write ack; 0 is
//	                malformed; any other kind is
//	                skipped by a reader that does not know it
//	length uvarint  number of body bytes that follow
//	body   length bytes
//
// Multi-byte integers are big-endian when fixed-size; uvarints are
// encoding/binary's (7 bits per byte, low group first).
//
// # Write ack body
//
//	token  uvarint  at most 2^32-1
//
// A write ack follows the update whose writing a sender waits for
// (multiprimary's defer): the receiver reports the token, outside this
// codec, once everything before the record is in its kernel. A reader that
// does not know the kind skips it, and the sender's wait then ends by its
// timeout.
//
// # Update body
//
//	flags   u8      which of the optional fields below are present:
//	                0x01 V6       addresses are 16 bytes (IPv6), else 4 (IPv4)
//	                0x02 REPLY    the reply tuple is sent
//	                0x04 ZONE     0x08 STATUS   0x10 TIMEOUT   0x20 MARK
//	                0x40 TCP      (a TCP flow only)
//	                0x80 reserved: a record with it set is malformed
//	proto   u8      IP protocol number (6 TCP, 17 UDP, 1 ICMP, ...)
//	orig    tuple   the original direction
//	reply   tuple   if REPLY
//	zone    uvarint if ZONE     (at most 65535)
//	status  uvarint if STATUS   IPS_* bits (at most 2^32-1, as the three below)
//	timeout uvarint if TIMEOUT  seconds
//	mark    uvarint if MARK
//	tcp     5 bytes if TCP      state, window scale orig, window scale reply,
//	                            flags orig, flags reply (IP_CT_TCP_FLAG_*)
//	options         to the end of the body, see below
//
// A field that is zero is not sent: its flag is clear. A tuple is
//
//	src   4 or 16 bytes
//	dst   4 or 16 bytes
//	sport u16       for ICMP and ICMPv6: the identifier
//	dport u16       for ICMP and ICMPv6: type << 8 | code
//
// The reply tuple has the protocol and family of the original one. It is
// sent only when it differs from the inverse of the original, which is
// what the kernel gives a flow without NAT (nf_ct_invert_tuple): addresses
// and ports swapped; for ICMP, the identifier kept and a query type turned
// into its reply type (echo 8 -> echo reply 0, timestamp 13 -> 14,
// information 15 -> 16, address mask 17 -> 18, and back); for ICMPv6,
// echo 128 -> 129 and node information 139 -> 140, and back. Other ICMP
// types are kept. A reader rebuilds the reply from the same rule, so an
// omitted reply is exact by construction.
//
// # Options
//
// Options carry what few flows have (ct.Extra). Each is
//
//	tag    u8
//	length uvarint
//	value  length bytes
//
// and they run to the end of the body, in ascending tag order when
// written. Tags of this version:
//
//	1 labels         1..16 bytes: ct.Extra.Labels without its trailing zero bytes
//	2 helper         the helper name ("ftp", "sip", ...)
//	3 seqadj orig    uvarint position, uvarint offset before, uvarint offset after
//	4 seqadj reply   the same for the reply direction
//	5 sctp           state u8, verification tag orig u32, verification tag reply u32
//	6 dccp           state u8, role u8, handshake sequence uvarint
//
// An option is written only when its value is not zero; a reader sets
// Flow.Extra only when some option carried something.
//
// # Destroy body
//
//	flags   u8      only V6 (0x01) and ZONE (0x04) may be set
//	proto   u8
//	orig    tuple
//	zone    uvarint if ZONE
//	options         none are defined; a reader skips any
//
// # Expectation bodies (kinds 3 and 4)
//
// An expectation (kind 3) is
//
//	flags   u8      0x01 V6, 0x04 ZONE, 0x08 FLAGS, 0x10 TIMEOUT, 0x20 CLASS;
//	                any other bit is malformed
//	proto   u8      of the expected tuple
//	tuple   tuple   the expected connection
//	mproto  u8      of the master
//	master  tuple   the master flow's original tuple
//	mask    tuple   which bits of the tuple must match
//	zone, flags (NF_CT_EXPECT_*), timeout, class: uvarint each, if flagged
//	options         1 helper name, 2 expectation function name
//
// All three tuples have the family of flags' V6. An expectation destroy
// (kind 4) is a destroy body (flags V6 and ZONE only, proto, the expected
// tuple, zone). testdata/golden/ipv4-ftp-expect.hex has both.
//
// # Forward compatibility
//
// A reader of this version skips, without error, a record of an unknown
// kind and an option of an unknown tag; it ignores the bytes of a known
// option beyond those it reads (so a fixed-size option may grow at its
// end). So a later version may add options, and record kinds, freely.
// What must not be ignored (a change of meaning) takes a new record kind,
// or a new envelope version. The flags byte is not extensible: its
// reserved bit must be zero.
//
// # Example
//
// An IPv4 TCP flow, established, without NAT, zone 0, mark 0, status
// 0x18e, timeout 431999 s, window scale 7/7, flags 0x23/0x23 is 26 bytes
// (conntrackd 1.4.7 sends 60):
//
//	01                  kind update
//	18                  body length 24
//	58                  flags STATUS|TIMEOUT|TCP
//	06                  TCP
//	0a0a0164 0a0a0264   10.10.1.100 -> 10.10.2.100
//	9c40 1389           40000 -> 5001
//	8e03                status 0x18e
//	ffae1a              timeout 431999
//	03 07 07 23 23      ESTABLISHED, wscale 7/7, flags 0x23/0x23
//
// testdata/golden holds more examples, which the tests check byte for byte.
package wire
