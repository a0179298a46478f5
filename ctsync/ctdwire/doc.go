// Package ctdwire speaks conntrackd 1.4's network sync protocol, so a
// ctha node and a conntrackd 1.4.7 node can replicate to each other (FTFW
// mode over UDP). It is pure: the codec of the messages, their mapping
// to ct.Flow and ct.Expect, and the FTFW reliability state machine, an
// Endpoint fed with datagrams and the time that returns datagrams to send
// and state messages to apply. No I/O, no clocks, no logging. The codec
// functions are safe for concurrent use; an Endpoint and a BulkWatch are
// owned by one goroutine.
//
// What is written here was learned from conntrackd's sources (facts
// only: include/network.h, src/build.c, src/parse.c, src/network.c,
// src/sync-ftfw.c) and checked against the real daemon: the files under
// testdata/golden are datagrams it sent, and TestConntrackd runs it.
//
// # Datagram
//
// A UDP datagram holds one or more messages back to back (conntrackd
// fills up to its MTU minus 28 bytes). "Checksum on" in conntrackd's
// config is the UDP checksum (SO_NO_CHECK off), not a field: the kernel
// computes and checks it; a ctha socket always has it.
//
// # Message header
//
// Every integer of the header is big-endian.
//
//	byte 0   version << 4 | type    version 1; the type (NET_T_*):
//	                                0 CT_NEW, 1 CT_UPD, 2 CT_DEL,
//	                                3 EXP_NEW, 4 EXP_UPD, 5 EXP_DEL, 10 CTL
//	byte 1   flags (NET_F_*)        0x02 RESYNC, 0x04 NACK, 0x08 ACK,
//	                                0x10 ALIVE, 0x20 HELLO, 0x40 HELLO_BACK
//	2..3     length u16             of the whole message, header included
//	4..7     seq u32                sequence number
//	8..11    from u32               only ACK, NACK and RESYNC (CTL): the
//	12..15   to u32                 range, inclusive; RESYNC sends 0, 0
//
// A control message is 8 bytes (ALIVE) or 16 (ACK, NACK, RESYNC). A state
// message is the header and its attributes; its flags may only be HELLO
// and HELLO_BACK, else conntrackd counts it malformed. Every message, ACK
// and ALIVE included, takes the next sequence number; the first is the
// sender's time(NULL) at start, so both ends' numbers are unrelated.
// A message of another version is skipped; a length out of bounds ends
// the datagram.
//
// # Attributes
//
//	length u16   4 + value length (not padded), big-endian
//	type   u16   NTA_* (flows) or NTA_EXP_* (expectations), big-endian
//	value        padded with zeros to a multiple of 4
//
// conntrackd rejects the whole message for an attribute of an unknown
// type or of a wrong fixed size. Flow attributes (State):
//
//	 0 IPV4         src, dst (4 bytes each)     1 IPV6   src, dst (16 each)
//	 2 L4PROTO      u8                          3 PORT   sport, dport u16
//	 4 TCP_STATE    u8                          5 STATUS u32 (IPS_*)
//	 6 TIMEOUT      u32 seconds (not sent with CommitTimeout)
//	 7 MARK         u32 (always sent)
//	 8..11          the master's IPV4/IPV6, L4PROTO, PORT (related flows)
//	12 SNAT_IPV4    reply destination       13 DNAT_IPV4  reply source
//	14 SPAT_PORT    reply destination port  15 DPAT_PORT  reply source port
//	16 NAT_SEQ_ADJ  6 x u32: orig position, offset before, after; reply's
//	17 SCTP_STATE u8, 18/19 SCTP_VTAG_ORIG/REPL u32
//	20 DCCP_STATE u8, 21 DCCP_ROLE u8
//	22 ICMP_TYPE u8, 23 ICMP_CODE u8, 24 ICMP_ID u16 (instead of PORT)
//	25/26 TCP_WSCALE_ORIG/REPL u8 (only with TCPWindowTracking on)
//	27 HELPER_NAME  NUL-terminated; at most 11 characters (the limit of
//	                16 bytes counts the attribute header)
//	28 LABELS       u32 words, word i holds labels 32i..32i+31
//	29 SNAT_IPV6, 30 DNAT_IPV6   16 bytes each
//	31 SYNPROXY     its, isn, tsoff u32; conntrackd sends it for every
//	                flow, zeros unless the flow went through SYNPROXY
//	32 ZONE         u16, only for a zone other than 0 (the kernel reports
//	                no zone 0); 1.4.7 has it (TestConntrackd: zone both
//	                ways), and rejects 33 and above
//
// There is no reply tuple: the receiver rebuilds it as the original one
// inverted (as the kernel does), with the NAT attributes applied.
//
// Byte order: every integer is big-endian, except SPAT_PORT, DPAT_PORT
// and ICMP_ID. conntrackd byte-swaps these values although
// libnetfilter_conntrack already holds them in network order, so on x86
// they travel little-endian (port 61000 = 0xee48 is sent 48 ee). Peers of
// the same endianness agree; this package writes and reads them as x86
// conntrackd does (testdata/golden/ipv4-tcp-snat.hex).
//
// Expectation attributes (ExpectState): 0..3 the master's IPV4, IPV6,
// L4PROTO, PORT; 4..7 the expected tuple's; 8..11 the mask's; 12 TIMEOUT,
// 13 FLAGS, 14 CLASS (u32); 15 NAT_IPV4, 16 NAT_PORT, 17 NAT_L4PROTO,
// 18 NAT_DIR; 19 HELPER_NAME, 20 FN (strings). Ports are sent only when
// the master is TCP, UDP, SCTP or DCCP.
//
// # Mapping to ct.Flow
//
// State.Flow and StateOf map both ways; what one side cannot carry is
// reported as Dropped bits, which the caller counts:
//
//   - from conntrackd: a master tuple (DroppedMaster), non-zero SYNPROXY
//     offsets (DroppedSynproxy), labels above 127 (DroppedLabels);
//     attributes of another protocol are ignored.
//   - to conntrackd: TCP window flags (DroppedTCPFlags:
//     conntrackd does not carry them), the DCCP handshake sequence
//     (DroppedDCCPSeq), a reply tuple NAT attributes cannot express, such
//     as an ICMP identifier changed by NAT (DroppedReply), a helper name
//     over 11 characters (DroppedHelper).
//   - expectations: the NAT tuple (DroppedExpectNAT); a zone other than
//     0 (DroppedZone: expectation messages have no zone attribute, the
//     expectation would land in zone 0; refuse it).
//
// # FTFW: what a conntrackd peer does
//
// Sender: every change of a flow queues the object; when it goes out it
// carries the flow's current state, and the object remembers the
// sequence number it went with. An ACK from..to forgets the objects (and
// the control messages) sent with a number in the range; a NACK from..to
// sends those objects again, with their state of now and new numbers,
// and the ACK/NACK/RESYNC messages in the range again. Nothing is resent
// on a timer. The resend queue holds ResendQueueSize entries (default
// 131072); when it is full the oldest is forgotten. An ACK or NACK whose
// to is before its from is malformed. A deleted flow stays in
// conntrackd's cache, sent as CT_DEL, until acknowledged and purged.
//
// Receiver: a message with the expected number, or after a gap, is
// applied at once; a gap is answered with an ACK of what came in order
// before it and a NACK of the missing range. A message numbered before
// the last one taken (late or duplicate) is dropped. An ACK from..to goes
// after every ACKWindowSize messages (default 300) and, when nothing has
// been sent for a second, instead of the ALIVE; otherwise an ALIVE goes
// every second: since it takes a number, a lost last message is noticed
// within a second.
//
// HELLO: a daemon flags every message HELLO from its start until a
// message with HELLO_BACK comes; it flags the next message it sends
// HELLO_BACK after each HELLO it receives. A message with HELLO is taken
// whatever its number (the receiver's tracking restarts from it), and the
// receiver empties its whole resend queue (objects and control messages
// it waited to have acknowledged: it will not resend them). So while a
// peer says HELLO, gaps in its numbers go unnoticed. A restarted
// conntrackd does not ask for the table nor send its own: that is
// StartupResync, or conntrackd -n (RESYNC) and -B (send the internal
// cache, unasked) in its primary-backup.sh.
//
// RESYNC: the peer answers by queuing every object of its internal cache
// (dead ones as CT_DEL); the answer is ordinary state messages. There is
// no marker at the end: BulkWatch decides a bulk is complete after Quiet
// (default 2 s) without a state message, counted from the request or the
// last message since.
//
// conntrackd needs nothing before it accepts data: no handshake, no
// registration of the peer. It does not check who sends (any address,
// any port), only that the number is not before the last one it took,
// and a HELLO flag skips even that.
//
// # Endpoint
//
// Endpoint does the same on ctha's side, with additions a conntrackd
// peer does not see:
//
//   - objects unacknowledged for Config.ResendAfter are sent again
//     (conntrackd loses a message sent while its peer still says HELLO,
//     or whose NACK went missing for good);
//   - a HELLO is taken whatever its number only as first contact, or when
//     the peer had stopped saying HELLO: if it is numbered before what we
//     took (a restart with lower numbers, or a straggler of the handshake
//     reordered), it counts as a restart after Config.MaxReorder of
//     silence or at the fourth in a row, and the dropped ones are NACKed;
//     a single straggler is dropped, so it cannot bring back an old state;
//   - HELLO_BACK answers a HELLO only once the message is taken, so a
//     restarted peer goes on saying HELLO until it is.
//
// PeerRestarted reports first contact and restarts, ResyncRequested a
// RESYNC; both leave the answer (queue every object, and on a restart ask
// for the peer's table with RequestResync and a BulkWatch) to the caller.
// TestSimLossyLink does that between two Endpoints over a link that
// loses, duplicates and reorders, with a restart, and checks that both
// copies end exact.
//
// # Authentication
//
// There is none, and this link cannot have any: conntrackd 1.4 has no
// key, no MAC and no sender check, so anything that can send a UDP
// datagram to its port can create, change or delete flows in its table
// (with HELLO, even without guessing a sequence number), ask for the
// whole table to be sent to the configured peer, or reset its sequence
// tracking. ctha's authenticated envelope (package auth) cannot be used
// towards conntrackd. Run this protocol only on a dedicated link or VLAN
// (as conntrackd's documentation assumes), filter the port to the peer's
// address with nftables on both nodes, and prefer ctha's own protocol
// between ctha nodes.
package ctdwire
