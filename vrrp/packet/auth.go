package packet

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"net/netip"
)

// VRRP version 2's authentication types (RFC 2338 5.3.6). Version 3
// has none (RFC 5798 removed them).
const (
	AuthNone = 0
	AuthPass = 1 // a clear-text password in the advert's auth data
	AuthAH   = 2 // an IP Authentication Header in front of the advert
)

// ProtocolAH is the IP protocol number of the Authentication Header.
const ProtocolAH = 51

// Lengths of an AH-authenticated advert's headers, as keepalived sends
// them: a 20-byte IPv4 header without options, and an AH carrying a
// 96-bit HMAC-MD5 (RFC 2403).
const (
	IPv4HeaderLen = 20
	AHLen         = 24
	icvLen        = 12
	// ahPayloadLen is the AH's length field: its length in 32-bit words
	// minus 2 (RFC 2402 2.2).
	ahPayloadLen = AHLen/4 - 2
)

// ErrAuth is wrapped by the errors of a packet that fails
// authentication: a wrong ICV (another password, or a field changed on
// the way) or an SPI that is not the sender's address.
var ErrAuth = errors.New("authentication failed")

// Password is a VRRPv2 password as it goes on the wire, and as keepalived
// keys AH with it: the first 8 bytes of what the user wrote, padded with
// zeros.
type Password [authDataLen]byte

// NewPassword returns s as a Password; it reports whether s was longer
// than a Password and is cut (keepalived cuts it, and warns).
func NewPassword(s string) (p Password, truncated bool) {
	copy(p[:], s)
	return p, len(s) > len(p)
}

// AH authenticates adverts with an IP Authentication Header as keepalived
// does: HMAC-MD5 keyed with the 8-byte password, cut to 96 bits, over the
// IPv4 header (its TOS, fragment offset and checksum zeroed; the TTL too
// in unicast mode), the AH with a zero ICV, and the advert. The SPI is the
// sender's IPv4 address. An AH is not safe for concurrent use.
type AH struct {
	mac hash.Hash
	sum [md5.Size]byte
}

// NewAH returns an AH keyed with p.
func NewAH(p Password) *AH {
	return &AH{mac: hmac.New(md5.New, p[:])}
}

// IPv4 is the IPv4 header of an AH-authenticated advert.
type IPv4 struct {
	TOS uint8
	// ID must not be 0: the kernel fills a zero ID in, after the ICV was
	// computed over it.
	ID       uint16
	TTL      uint8
	Src, Dst netip.Addr
}

// AHHeader is what an Authentication Header says besides its ICV.
type AHHeader struct {
	SPI uint32
	Seq uint32
}

// Append appends a whole IPv4 packet: the header ip, an AH with sequence
// number seq, and ad (a version 2 advert, sent with auth type AH and zero
// auth data). The IP checksum is left zero (the kernel fills it in on a
// raw socket with IP_HDRINCL). unicast says the TTL is left out of the
// ICV, as keepalived does for unicast peers. Append allocates nothing
// when b has room.
func (h *AH) Append(b []byte, ip IPv4, seq uint32, ad *Advert, unicast bool) ([]byte, error) {
	if !ip.Src.Is4() || !ip.Dst.Is4() {
		return b, fmt.Errorf("AH from %v to %v: %w", ip.Src, ip.Dst, ErrFamily)
	}
	if ad.Version != 2 {
		return b, fmt.Errorf("AH with %w %d", ErrVersion, ad.Version)
	}
	a := *ad
	a.AuthType, a.AuthData = AuthAH, [authDataLen]byte{}
	start := len(b)
	total := IPv4HeaderLen + AHLen + a.Len()
	src, dst := ip.Src.As4(), ip.Dst.As4()
	b = append(b, 0x45, ip.TOS)
	b = binary.BigEndian.AppendUint16(b, uint16(total))
	b = binary.BigEndian.AppendUint16(b, ip.ID)
	b = append(b, 0, 0, ip.TTL, ProtocolAH, 0, 0)
	b = append(b, src[:]...)
	b = append(b, dst[:]...)
	b = append(b, Protocol, ahPayloadLen, 0, 0)
	b = append(b, src[:]...) // SPI
	b = binary.BigEndian.AppendUint32(b, seq)
	b = append(b, make([]byte, icvLen)...)
	b, err := a.Append(b, ip.Src, ip.Dst)
	if err != nil {
		return b[:start], err
	}
	pkt := b[start:]
	h.compute(pkt, unicast)
	copy(pkt[IPv4HeaderLen+12:IPv4HeaderLen+AHLen], h.sum[:icvLen])
	return b, nil
}

// Open verifies the AH of pkt, a whole IPv4 packet as a raw socket
// delivers it (header first), and returns the advert it carries, still
// to be parsed, and the AH's SPI and sequence number. unicast must be
// what the sender used (keepalived: whether the instance has unicast
// peers). The sequence number is the caller's to check. Open changes
// pkt while it runs and restores it before it returns.
func (h *AH) Open(pkt []byte, unicast bool) ([]byte, AHHeader, error) {
	if len(pkt) < IPv4HeaderLen {
		return nil, AHHeader{}, fmt.Errorf("IPv4 header of %d bytes: %w", len(pkt), ErrTruncated)
	}
	if v := pkt[0] >> 4; v != 4 {
		return nil, AHHeader{}, fmt.Errorf("IP version %d: %w", v, ErrFamily)
	}
	hl := int(pkt[0]&0x0f) * 4
	switch {
	case hl < IPv4HeaderLen:
		return nil, AHHeader{}, fmt.Errorf("IPv4 header length %d: %w", hl, ErrLength)
	case pkt[9] != ProtocolAH:
		return nil, AHHeader{}, fmt.Errorf("IP protocol %d, not AH: %w", pkt[9], ErrType)
	case len(pkt) < hl+AHLen:
		return nil, AHHeader{}, fmt.Errorf("%d bytes for an IPv4 header of %d and an AH: %w", len(pkt), hl, ErrTruncated)
	case int(binary.BigEndian.Uint16(pkt[2:])) != len(pkt):
		return nil, AHHeader{}, fmt.Errorf("IPv4 total length %d, received %d: %w", binary.BigEndian.Uint16(pkt[2:]), len(pkt), ErrLength)
	}
	ah := pkt[hl : hl+AHLen]
	switch {
	case ah[0] != Protocol:
		return nil, AHHeader{}, fmt.Errorf("AH next header %d, not VRRP: %w", ah[0], ErrType)
	case ah[1] != ahPayloadLen:
		return nil, AHHeader{}, fmt.Errorf("AH length %d, want %d (HMAC-MD5-96): %w", ah[1], ahPayloadLen, ErrLength)
	}
	var icv [icvLen]byte
	copy(icv[:], ah[12:])
	clear(ah[12:])
	// The mutable fields: TOS, fragment offset and flags, checksum, and
	// the TTL in unicast mode.
	tos, frag, sum, ttl := pkt[1], [2]byte(pkt[6:8]), [2]byte(pkt[10:12]), pkt[8]
	pkt[1], pkt[6], pkt[7], pkt[10], pkt[11] = 0, 0, 0, 0, 0
	if unicast {
		pkt[8] = 0
	}
	h.compute(pkt, false)
	pkt[1], pkt[8] = tos, ttl
	copy(pkt[6:8], frag[:])
	copy(pkt[10:12], sum[:])
	copy(ah[12:], icv[:])
	if subtle.ConstantTimeCompare(icv[:], h.sum[:icvLen]) != 1 {
		return nil, AHHeader{}, fmt.Errorf("ICV does not match (another password?): %w", ErrAuth)
	}
	hdr := AHHeader{SPI: binary.BigEndian.Uint32(ah[4:]), Seq: binary.BigEndian.Uint32(ah[8:])}
	if src := binary.BigEndian.Uint32(pkt[12:]); hdr.SPI != src {
		return nil, AHHeader{}, fmt.Errorf("SPI %#08x is not the source address: %w", hdr.SPI, ErrAuth)
	}
	return pkt[hl+AHLen:], hdr, nil
}

// compute sets h.sum to the HMAC of pkt, an IPv4 packet whose TOS,
// fragment field, checksum and ICV are zero, with its TTL zeroed too if
// zeroTTL (restored before it returns).
func (h *AH) compute(pkt []byte, zeroTTL bool) {
	tos, ttl := pkt[1], pkt[8]
	pkt[1] = 0
	if zeroTTL {
		pkt[8] = 0
	}
	h.mac.Reset()
	h.mac.Write(pkt)
	h.mac.Sum(h.sum[:0])
	pkt[1], pkt[8] = tos, ttl
}
