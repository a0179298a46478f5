package vrrp

import (
	"errors"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/ctha/ctha/vrrp/packet"
)

// Drop says why a received packet was discarded.
type Drop uint8

// Drop reasons, each counted.
const (
	DropNone      Drop = iota
	DropInterface      // arrived on another interface
	DropTTL            // TTL / hop limit not 255
	DropLength         // truncated, or longer than its address count says
	DropVersion        // not the instance's VRRP version
	DropType           // not an advertisement
	DropChecksum       // bad checksum
	DropFamily         // version 2 over IPv6, or addresses of the wrong family
	DropInterval       // zero, or (version 2) not our interval
	DropVRID           // another virtual router on this link (normal on shared links)
	DropAuth           // version 2 authentication failed: another type or password, a bad AH
	DropSource         // IPv6 sent from a non-link-local address
	DropPeer           // unicast mode: not from a configured peer
	DropOwn            // our own advert looped back
	DropSequence       // AH: sequence number not above the last one sent or accepted (a replay, or a restarted peer)
	numDrops
)

var dropNames = [...]string{"none", "interface", "ttl", "length", "version", "type", "checksum",
	"family", "interval", "vrid", "auth", "source", "peer", "own", "sequence"}

func (d Drop) String() string {
	if int(d) < len(dropNames) {
		return dropNames[d]
	}
	return "unknown"
}

// receiver holds what the receive checks compare a packet with.
type receiver struct {
	version      int
	vrid         uint8
	interval     time.Duration
	ifindex      int
	own          netip.Addr
	vips         []netip.Addr
	unicastPeers []netip.Addr
	skipChecksum bool // IPv6: the kernel verified it
	auth         Auth
	ah           *ahState // with AuthAH: the member's, shared by its receivers
}

// check applies RFC 5798 section 7.1's receive checks. The advert is valid
// when the Drop is DropNone; mismatch reports an address list different from
// ours, which is counted and logged but not a reason to drop (a rolling
// configuration change must not make the pair flap).
func (r *receiver) check(p PacketIn) (ad packet.Advert, drop Drop, mismatch bool) {
	switch {
	case p.Ifindex != 0 && p.Ifindex != r.ifindex:
		return ad, DropInterface, false
	case p.Src == r.own:
		return ad, DropOwn, false
	case p.TTL != packet.TTL:
		return ad, DropTTL, false
	}
	payload := p.Payload
	var ah packet.AHHeader
	if r.auth.Type == AuthAH {
		if vrid, ok := ahVRID(p.IP); ok && vrid != r.vrid {
			return ad, DropVRID, false
		}
		var err error
		if payload, ah, err = r.ah.openPacket(p.IP, len(r.unicastPeers) > 0); err != nil {
			return ad, authDrop(err), false
		}
	}
	ad, err := packet.Parse(payload, p.Src, p.Dst, r.skipChecksum)
	if err != nil {
		return ad, parseDrop(err), false
	}
	switch {
	case ad.VRID != r.vrid:
		return ad, DropVRID, false
	case ad.Version != r.version:
		return ad, DropVersion, false
	case ad.Version == 2 && !r.checkAuth(&ad):
		return ad, DropAuth, false
	case ad.Version == 2 && ad.Interval != r.interval:
		return ad, DropInterval, false
	case p.Src.Is6() && !p.Src.IsLinkLocalUnicast():
		return ad, DropSource, false
	case len(r.unicastPeers) > 0 && !slices.Contains(r.unicastPeers, p.Src):
		return ad, DropPeer, false
	// Last: only a valid advert moves the counter on.
	case r.auth.Type == AuthAH && !r.ah.acceptSeq(ah.Seq):
		return ad, DropSequence, false
	}
	return ad, DropNone, !sameAddrs(ad.Addrs, r.vips)
}

func parseDrop(err error) Drop {
	for _, m := range []struct {
		err  error
		drop Drop
	}{
		{packet.ErrTruncated, DropLength}, {packet.ErrLength, DropLength},
		{packet.ErrVersion, DropVersion}, {packet.ErrType, DropType},
		{packet.ErrChecksum, DropChecksum}, {packet.ErrFamily, DropFamily},
		{packet.ErrInterval, DropInterval}, {packet.ErrAddrs, DropLength},
		{packet.ErrAuth, DropAuth},
	} {
		if errors.Is(err, m.err) {
			return m.drop
		}
	}
	return DropLength
}

// sameAddrs compares address lists as sets.
func sameAddrs(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// counters are an instance's statistics, updated by its goroutines and
// read by Stats.
type counters struct {
	advertsSent, advertsReceived, sendErrors atomic.Uint64
	addrMismatch, transitions                atomic.Uint64
	vipErrors, vipsRestored, vipsRemoved     atomic.Uint64
	drops                                    [numDrops]atomic.Uint64
}

// InstanceStats are an instance's counters.
type InstanceStats struct {
	Group           string            `json:"group"`
	Instance        string            `json:"instance"`
	AdvertsSent     uint64            `json:"adverts_sent"`
	AdvertsReceived uint64            `json:"adverts_received"`
	SendErrors      uint64            `json:"send_errors"`
	AddrMismatch    uint64            `json:"address_list_mismatch"`
	Transitions     uint64            `json:"transitions"`
	VIPErrors       uint64            `json:"vip_errors"`
	VIPsRestored    uint64            `json:"vips_restored"` // removed under a master by someone else, put back
	VIPsRemoved     uint64            `json:"vips_removed"`  // found on a node that is not master, removed
	Drops           map[string]uint64 `json:"drops"`
}

func (c *counters) snapshot() InstanceStats {
	s := InstanceStats{
		AdvertsSent:     c.advertsSent.Load(),
		AdvertsReceived: c.advertsReceived.Load(),
		SendErrors:      c.sendErrors.Load(),
		AddrMismatch:    c.addrMismatch.Load(),
		Transitions:     c.transitions.Load(),
		VIPErrors:       c.vipErrors.Load(),
		VIPsRestored:    c.vipsRestored.Load(),
		VIPsRemoved:     c.vipsRemoved.Load(),
		Drops:           map[string]uint64{},
	}
	for d := DropInterface; d < numDrops; d++ {
		s.Drops[d.String()] = c.drops[d].Load()
	}
	return s
}
