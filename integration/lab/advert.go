package lab

import (
	"encoding/binary"
	"math"
	"net/netip"
	"slices"
	"time"
)

// Advert is one VRRP advertisement seen on the wire.
type Advert struct {
	At       time.Time  // the kernel's receive timestamp
	Src      netip.Addr // the IP source: the sender's primary address
	Version  int        // 2 or 3
	VRID     int
	Priority int
	// Interval is the advertised Max Adver Int of VRRPv3 (centiseconds
	// on the wire), or Adver Int of VRRPv2 (seconds).
	Interval time.Duration
}

// ParseIPv4Advert decodes a VRRP advertisement from an IPv4 packet (IP
// header first, as an AF_PACKET SOCK_DGRAM socket delivers it). It
// returns false for anything else: another protocol, a fragment, a
// truncated packet, a VRRP type other than ADVERTISEMENT. It checks no
// checksum and no TTL: a capture wants to see what was sent.
func ParseIPv4Advert(p []byte) (Advert, bool) {
	if len(p) < 20 || p[0]>>4 != 4 {
		return Advert{}, false
	}
	ihl := int(p[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(p[2:4]))
	fragment := binary.BigEndian.Uint16(p[6:8]) & 0x3fff // MF or an offset
	if ihl < 20 || total < ihl+8 || total > len(p) || p[9] != 112 || fragment != 0 {
		return Advert{}, false
	}
	v := p[ihl:total]
	a := Advert{
		Src:      netip.AddrFrom4([4]byte(p[12:16])),
		Version:  int(v[0] >> 4),
		VRID:     int(v[1]),
		Priority: int(v[2]),
	}
	if v[0]&0x0f != 1 { // not an ADVERTISEMENT
		return Advert{}, false
	}
	switch a.Version {
	case 3:
		a.Interval = time.Duration(binary.BigEndian.Uint16(v[4:6])&0x0fff) * 10 * time.Millisecond
	case 2:
		a.Interval = time.Duration(v[5]) * time.Second
	default:
		return Advert{}, false
	}
	return a, true
}

// Jitter summarises how far a sender's adverts stray from its interval:
// for each two consecutive adverts, |inter-arrival - interval|.
type Jitter struct {
	N   int           // inter-arrivals measured (adverts - 1)
	P50 time.Duration // median (nearest rank)
	P99 time.Duration // 99th percentile (nearest rank)
	Max time.Duration
	// Late counts the inter-arrivals of 2 intervals or more: an advert
	// that came a whole interval late or never came.
	Late int
}

// AdvertJitter computes the jitter of adverts sent every interval, from
// their timestamps (in any order; they are sorted). Fewer than two
// timestamps give the zero Jitter.
func AdvertJitter(times []time.Time, interval time.Duration) Jitter {
	if len(times) < 2 {
		return Jitter{}
	}
	ts := slices.Clone(times)
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	dev := make([]time.Duration, 0, len(ts)-1)
	var j Jitter
	for i := 1; i < len(ts); i++ {
		d := ts[i].Sub(ts[i-1])
		if d >= 2*interval {
			j.Late++
		}
		dev = append(dev, (d - interval).Abs())
	}
	slices.Sort(dev)
	j.N = len(dev)
	j.P50 = nearestRank(dev, 0.50)
	j.P99 = nearestRank(dev, 0.99)
	j.Max = dev[len(dev)-1]
	return j
}

// nearestRank is the p-quantile of sorted v by the nearest-rank method.
func nearestRank(v []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(v)))) - 1
	return v[max(0, min(i, len(v)-1))]
}

// AdvertTimes returns the timestamps of the adverts of src for vrid taken
// in [from, to).
func AdvertTimes(ads []Advert, src netip.Addr, vrid int, from, to time.Time) []time.Time {
	var ts []time.Time
	for _, a := range ads {
		if a.Src == src && a.VRID == vrid && !a.At.Before(from) && a.At.Before(to) {
			ts = append(ts, a.At)
		}
	}
	return ts
}
