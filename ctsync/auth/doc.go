// Package auth owns the shared secret that authenticates ctha's sync
// protocol and what it protects: the key file format, key generation and
// the key's fingerprint; the authenticated envelope around every datagram
// (Seal, Open); replay protection (ReplayGuard) and the epochs that make
// it survive restarts (NextEpoch, LoadPeerEpoch, SavePeerEpoch).
//
// # Key file
//
// A key file is text. Blank lines and lines starting with '#' are ignored;
// exactly one other line holds the key, 64 hexadecimal digits (32 bytes):
//
//	# ctha sync key; identical on every node of the pair; keep it mode 0600
//	9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//
// `ctha keygen FILE` writes such a file.
//
// # Envelope
//
// Every datagram is a header, the payload and a tag:
//
//	version u8      1 (Version); it versions the payload format too
//	sender  u32     the sending process's random ID (NewSenderID)
//	epoch   u32     the sender's boot epoch (NextEpoch)
//	seq     u64     the sender's datagram counter within the epoch
//	payload ...
//	tag     16 bytes
//
// Integers are big-endian. The tag is HMAC-SHA256 over header and
// payload, truncated to 128 bits as in IPsec's HMAC-SHA-256-128 (RFC
// 4868): half the bytes of a full tag on every datagram, while a forgery
// still succeeds with probability 2^-128 per try. The HMAC
// key is not the sync key itself but HKDF-SHA256(sync key, info "ctha
// sync v1 datagram hmac-sha256"), so that other uses of the sync key get
// independent keys. Tags are compared in constant time (hmac.Equal).
// There is no encryption: flows cross the sync link in clear, which is
// meant to be private.
//
// # Replay protection
//
// A receiver keeps a ReplayGuard per peer and, for every datagram Open
// accepted, asks Check, handles the payload, and if that was valid calls
// Accept. The guard holds the highest epoch seen from the peer and, in it,
// a window of the last ReplayWindow (1024) sequence numbers: a datagram
// reordered within the window is accepted once; a duplicate, one older
// than the window, or one of an older epoch is rejected (ErrReplay). A
// newer epoch means the peer restarted: the window starts afresh.
//
// Restarts do not reopen old datagrams. The sender draws its epoch from a
// file (NextEpoch) that only grows, so its sequence numbers, which restart
// at each boot, never repeat an (epoch, seq) pair. The receiver saves the
// highest peer epoch it accepted (SavePeerEpoch, when ReplayGuard.Epoch
// changes) and restores it at start (LoadPeerEpoch, NewReplayGuard), so
// datagrams of the peer's earlier runs stay rejected.
//
// Both nodes hold the same key, so a datagram a node sent is as valid to
// itself as to its peer: an attacker could send a node's ACKs back to it.
// The sender ID defeats that: each process draws a random one, and a
// guard told its own (SetSelf) rejects it (ErrReflected).
//
// # Threat model
//
// An attacker on the sync link may drop, delay, reorder, duplicate,
// truncate, corrupt, forge, replay and reflect datagrams, of any size.
// Open accepts any input without panicking or allocating; what it did not
// get from a holder of the key fails with ErrMAC, ErrShort or ErrVersion,
// including a truncated datagram (a read into a buffer smaller than the
// datagram). The caller enforces a maximum datagram size (its read
// buffer). ReplayGuard rejects replayed and reflected datagrams. Limits:
//
//   - After a receiver restart, the guard knows the peer's epoch but not
//     how far its sequence numbers went: until the first datagram of that
//     epoch arrives, a datagram recorded earlier in the epoch is accepted
//     once, and afterwards any not yet seen within the window. The protocol
//     above (resync on restart) bounds the effect to a stale state that the
//     next update or resync replaces.
//   - A node whose epoch file is lost starts again at epoch 1, which its
//     peer refuses until the peer's saved epoch is removed: this fails
//     closed, and the error (ErrReplay) says so.
//   - Flooding with forged datagrams costs one HMAC each; rate limits
//     belong to the caller.
//   - A node that has the key can impersonate the other.
//
// Everything here is safe for concurrent use, except a ReplayGuard, which
// one goroutine owns; a Key is an immutable value. Seal and Open allocate
// nothing given room in dst.
package auth
