package packet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Protocol is VRRP's IP protocol number.
const Protocol = 112

// TTL is the only TTL / hop limit an advertisement may carry.
const TTL = 255

// Multicast destinations of advertisements.
var (
	Group4 = netip.MustParseAddr("224.0.0.18")
	Group6 = netip.MustParseAddr("ff02::12")
)

// typeAdvertisement is the only VRRP packet type.
const typeAdvertisement = 1

// Lengths.
const (
	headerLen   = 8
	authDataLen = 8 // version 2 only
	// MaxAddrs is the most addresses an advertisement can list.
	MaxAddrs = 255
)

// Interval limits by version.
const (
	v3Unit = 10 * time.Millisecond // centiseconds, 12 bits
	v3Max  = 0xfff * v3Unit
	v2Unit = time.Second // 8 bits
	v2Max  = 0xff * v2Unit
)

// Errors returned by Parse and Append. Parse errors wrap one of these.
var (
	ErrTruncated = errors.New("truncated")
	ErrVersion   = errors.New("unsupported version")
	ErrType      = errors.New("not an advertisement")
	ErrLength    = errors.New("length does not match the address count")
	ErrChecksum  = errors.New("bad checksum")
	ErrFamily    = errors.New("address family mismatch")
	ErrInterval  = errors.New("invalid advertisement interval")
	ErrAddrs     = errors.New("address count out of range (1-255)")
)

// Advert is a VRRP advertisement.
type Advert struct {
	Version  int // 2 or 3
	VRID     uint8
	Priority uint8 // 0 = the master is leaving
	// Interval is the (maximum) advertisement interval: whole seconds in
	// version 2, 10 ms steps in version 3.
	Interval time.Duration
	// AuthType and AuthData are version 2's authentication fields; ctha
	// sends type 0 (none) and zero data.
	AuthType uint8
	AuthData [authDataLen]byte
	// Addrs are the virtual addresses (1 to 255), all of the family of the
	// IP header.
	Addrs []netip.Addr
}

// Len returns the encoded length of a.
func (a *Advert) Len() int {
	n := headerLen
	if len(a.Addrs) > 0 {
		n += len(a.Addrs) * a.Addrs[0].BitLen() / 8
	}
	if a.Version == 2 {
		n += authDataLen
	}
	return n
}

// Append appends the encoded advertisement to b, with the checksum for an
// IP header from src to dst (whose family must be that of the addresses).
func (a *Advert) Append(b []byte, src, dst netip.Addr) ([]byte, error) {
	is6 := src.Is6() && !src.Is4In6()
	if err := a.validate(is6); err != nil {
		return b, err
	}
	start := len(b)
	var interval uint16
	if a.Version == 3 {
		interval = uint16(a.Interval / v3Unit)
	} else {
		interval = uint16(a.Interval / v2Unit)
	}
	b = append(b, byte(a.Version)<<4|typeAdvertisement, a.VRID, a.Priority, byte(len(a.Addrs)))
	if a.Version == 3 {
		b = binary.BigEndian.AppendUint16(b, interval&0x0fff)
	} else {
		b = append(b, a.AuthType, byte(interval))
	}
	b = append(b, 0, 0) // checksum
	for _, ip := range a.Addrs {
		b = append(b, ip.AsSlice()...)
	}
	if a.Version == 2 {
		b = append(b, a.AuthData[:]...)
	}
	sum := Checksum(b[start:], a.Version, src, dst)
	binary.BigEndian.PutUint16(b[start+6:], sum)
	return b, nil
}

func (a *Advert) validate(is6 bool) error {
	switch a.Version {
	case 2:
		if is6 {
			return fmt.Errorf("version 2 over IPv6: %w", ErrFamily)
		}
		if a.Interval < v2Unit || a.Interval > v2Max || a.Interval%v2Unit != 0 {
			return fmt.Errorf("%w: %v for version 2", ErrInterval, a.Interval)
		}
	case 3:
		if a.Interval < v3Unit || a.Interval > v3Max || a.Interval%v3Unit != 0 {
			return fmt.Errorf("%w: %v for version 3", ErrInterval, a.Interval)
		}
	default:
		return fmt.Errorf("%w %d", ErrVersion, a.Version)
	}
	if len(a.Addrs) == 0 || len(a.Addrs) > MaxAddrs {
		return fmt.Errorf("%w: %d", ErrAddrs, len(a.Addrs))
	}
	for _, ip := range a.Addrs {
		if ip.Is6() != is6 { // a v4-mapped address is a 16-byte IPv6 address here
			return fmt.Errorf("address %s over IPv%d: %w", ip, map[bool]int{false: 4, true: 6}[is6], ErrFamily)
		}
	}
	return nil
}

// Parse decodes the advertisement in b, the payload of an IP packet from
// src to dst. It verifies the checksum unless skipChecksum is set (for
// IPv6 sockets on which the kernel has verified it already).
func Parse(b []byte, src, dst netip.Addr, skipChecksum bool) (Advert, error) {
	if len(b) < headerLen {
		return Advert{}, fmt.Errorf("%d bytes: %w", len(b), ErrTruncated)
	}
	a := Advert{
		Version:  int(b[0] >> 4),
		VRID:     b[1],
		Priority: b[2],
	}
	if t := b[0] & 0x0f; t != typeAdvertisement {
		return Advert{}, fmt.Errorf("type %d: %w", t, ErrType)
	}
	is6 := src.Is6() && !src.Is4In6()
	alen := 4
	if is6 {
		alen = 16
	}
	count := int(b[3])
	if count == 0 { // RFC 5798 5.2.5: the minimum is 1
		return Advert{}, fmt.Errorf("%w: 0", ErrAddrs)
	}
	want := headerLen + count*alen
	switch a.Version {
	case 3:
		a.Interval = time.Duration(binary.BigEndian.Uint16(b[4:])&0x0fff) * v3Unit
	case 2:
		if is6 {
			return Advert{}, fmt.Errorf("version 2 over IPv6: %w", ErrFamily)
		}
		a.AuthType = b[4]
		a.Interval = time.Duration(b[5]) * v2Unit
		want += authDataLen
	default:
		return Advert{}, fmt.Errorf("%w %d", ErrVersion, a.Version)
	}
	if len(b) < want {
		return Advert{}, fmt.Errorf("%d bytes for %d addresses: %w", len(b), count, ErrTruncated)
	}
	if len(b) > want {
		return Advert{}, fmt.Errorf("%d bytes for %d addresses: %w", len(b), count, ErrLength)
	}
	if a.Interval == 0 {
		return Advert{}, fmt.Errorf("%w: 0", ErrInterval)
	}
	if !skipChecksum {
		if got := Checksum(b, a.Version, src, dst); got != 0 {
			return Advert{}, fmt.Errorf("%w (%#04x)", ErrChecksum, binary.BigEndian.Uint16(b[6:]))
		}
	}
	a.Addrs = make([]netip.Addr, count)
	for i := range count {
		off := headerLen + i*alen
		if is6 {
			a.Addrs[i] = netip.AddrFrom16([16]byte(b[off : off+16]))
		} else {
			a.Addrs[i] = netip.AddrFrom4([4]byte(b[off : off+4]))
		}
	}
	if a.Version == 2 {
		copy(a.AuthData[:], b[headerLen+count*alen:])
	}
	return a, nil
}

// Checksum computes the Internet checksum of the VRRP message b as version
// does: version 3 with the IP pseudo-header of src and dst, version 2
// without. Over a message holding its checksum the result is 0 when the
// checksum is right; over one whose checksum field is zero it is the value
// to store there.
func Checksum(b []byte, version int, src, dst netip.Addr) uint16 {
	var sum uint32
	if version == 3 {
		sum = pseudoHeaderSum(src, dst, len(b))
	}
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func pseudoHeaderSum(src, dst netip.Addr, length int) uint32 {
	var sum uint32
	add := func(ip netip.Addr) {
		s := ip.Unmap().AsSlice()
		for i := 0; i+1 < len(s); i += 2 {
			sum += uint32(s[i])<<8 | uint32(s[i+1])
		}
	}
	add(src)
	add(dst)
	// IPv4: zero, protocol, length (16 bits). IPv6: length (32 bits),
	// zeros, next header. Both sum to the same 16-bit words.
	sum += Protocol + uint32(length)
	return sum
}
