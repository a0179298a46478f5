// Package ct models a kernel connection-tracking entry as ctha replicates
// it: everything ctnetlink lets a program set to recreate a flow on another
// node (both tuples and so the NAT binding, status bits, timeout, mark,
// zone, protocol state, labels, helper, sequence adjustment), in a compact,
// comparable form shared by the kernel layer, the caches and the wire
// codec.
//
// Addresses are stored as 16-byte arrays (IPv4 as v4-mapped) rather than
// netip.Addr, so that a Tuple is 40 bytes, has no pointers, and a Key is a
// cheap map key: the caches hold hundreds of thousands of them.
//
// Values of this package are plain data and safe to copy; nothing here is
// safe for concurrent mutation.
package ct
