// Package packet encodes and decodes VRRP advertisements: version 3
// (RFC 5798) over IPv4 and IPv6, and version 2 (RFC 3768) over IPv4.
//
// It is pure code: no sockets, clocks or logging. Checksums are computed as
// keepalived computes them, so both interoperate: version 3 includes the IP
// pseudo-header (over IPv4 as over IPv6), version 2 covers the VRRP message
// alone. Parse is strict: anything malformed is an error wrapping one of the
// exported sentinels, so a receiver can count drops by reason.
//
// Everything here is safe for concurrent use.
package packet
