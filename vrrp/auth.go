package vrrp

import (
	"crypto/subtle"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ctha/ctha/vrrp/packet"
)

// VRRPv2 authentication, as keepalived implements it (RFC 2338 5.3.6;
// RFC 5798 removed it from version 3).
//
// PASS puts the password, its first 8 bytes, in the advert's auth data:
// it is sent in clear text and protects against misconfiguration, not an
// attacker. AH puts an IP Authentication Header (protocol 51) in front of
// the advert, whose ICV is an HMAC-MD5-96 keyed with the password, and
// whose sequence number keepalived checks: an instance keeps one counter,
// the last sequence number it sent or accepted; it accepts an advert only
// above it and sends the next one above it. A new master therefore
// continues above the numbers of the master it heard, and a peer that
// restarts from 1 is dropped until it has heard a higher number itself.

// AuthType is a VRRPv2 authentication type.
type AuthType uint8

// Authentication types.
const (
	AuthNone AuthType = packet.AuthNone
	AuthPass AuthType = packet.AuthPass
	AuthAH   AuthType = packet.AuthAH
)

func (a AuthType) String() string {
	switch a {
	case AuthNone:
		return "none"
	case AuthPass:
		return "pass"
	case AuthAH:
		return "ah"
	}
	return "unknown"
}

// Auth is an instance's authentication: version 2 only, AH over IPv4
// only (the configuration checks both).
type Auth struct {
	Type     AuthType
	Password packet.Password
}

// ahState is a member's AH: the keys and keepalived's sequence counter.
// It outlives reloads and rebinds, as the counter must.
type ahState struct {
	// seq is the last sequence number sent or accepted.
	seq atomic.Uint32
	// id is the IPv4 ID of the last advert sent, and seal the AH that
	// sends: the group's lock guards both.
	id   uint16
	seal *packet.AH
	// mu guards open, the AH that verifies (the socket reader's).
	mu   sync.Mutex
	open *packet.AH
}

func newAHState(p packet.Password) *ahState {
	return &ahState{seal: packet.NewAH(p), open: packet.NewAH(p)}
}

// maxSeq: keepalived stops counting above 0xFFFFFFFD (136 years of
// adverts at the shortest version 2 interval).
const maxSeq = 0xfffffffd

// nextSeq returns the sequence number of the next advert: one above the
// last sent or accepted.
func (s *ahState) nextSeq() uint32 {
	for {
		c := s.seq.Load()
		n := c
		if c <= maxSeq {
			n = c + 1
		}
		if s.seq.CompareAndSwap(c, n) {
			return n
		}
	}
}

// acceptSeq records n if it is above the last sequence number sent or
// accepted, and reports whether it was.
func (s *ahState) acceptSeq(n uint32) bool {
	for {
		c := s.seq.Load()
		if n <= c {
			return false
		}
		if s.seq.CompareAndSwap(c, n) {
			return true
		}
	}
}

// nextID returns the IPv4 ID of the next advert; never 0, which the
// kernel would replace after the ICV was computed. The caller holds the
// group's lock.
func (s *ahState) nextID() uint16 {
	s.id++
	if s.id == 0 {
		s.id = 1
	}
	return s.id
}

// openPacket verifies the AH of an IPv4 packet (header included).
func (s *ahState) openPacket(pkt []byte, unicast bool) ([]byte, packet.AHHeader, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open.Open(pkt, unicast)
}

// ahVRID returns the VRID of the advert behind an AH, unverified: a
// packet of another virtual router is dropped as that, not as failing
// our authentication.
func ahVRID(pkt []byte) (uint8, bool) {
	if len(pkt) < packet.IPv4HeaderLen {
		return 0, false
	}
	off := int(pkt[0]&0x0f)*4 + packet.AHLen + 1
	if off >= len(pkt) {
		return 0, false
	}
	return pkt[off], true
}

// checkAuth applies r's authentication to an advert's auth fields.
func (r *receiver) checkAuth(ad *packet.Advert) bool {
	if ad.AuthType != uint8(r.auth.Type) {
		return false
	}
	return r.auth.Type != AuthPass || subtle.ConstantTimeCompare(ad.AuthData[:], r.auth.Password[:]) == 1
}

// authDrop classifies an error of packet.AH.Open.
func authDrop(err error) Drop {
	if errors.Is(err, packet.ErrAuth) {
		return DropAuth
	}
	return parseDrop(err)
}

// dropLogEvery is how often an instance logs adverts it drops for
// failed authentication: a peer with another password sends one a
// second, an attacker many more.
const dropLogEvery = 10 * time.Second

// dropLog rate-limits the log of dropped adverts: one line per interval,
// with the count since the last line.
type dropLog struct {
	mu     sync.Mutex
	last   time.Time
	missed uint64
}

// allow reports whether to log a drop at now, and how many drops went
// unlogged before it.
func (l *dropLog) allow(now time.Time) (bool, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < dropLogEvery {
		l.missed++
		return false, 0
	}
	missed := l.missed
	l.last, l.missed = now, 0
	return true, missed
}

// logAuthDrop logs an advert dropped for failed authentication, at most
// once per dropLogEvery (the drops are counted regardless).
func (mb *member) logAuthDrop(d Drop, from netip.Addr, now time.Time) {
	ok, missed := mb.authLog.allow(now)
	if !ok {
		return
	}
	msg := "advert failed authentication (another authentication type or password, or a forged AH); dropped"
	if d == DropSequence {
		msg = "AH advert with a sequence number not above the last one (a replay, or a peer that restarted; it is heard again once it sends above); dropped"
	}
	mb.log.Warn(msg, "from", from, "reason", d, "auth", mb.recv.Load().auth.Type, "unlogged_before", missed)
}
