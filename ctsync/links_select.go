package ctsync

import (
	"encoding/binary"
	"time"
)

// Link selection. Every configured link is open and received on; the
// first one that is up carries the traffic. A link is up when its
// interface has carrier and the peer is heard on it, and says it hears
// this node there, within linkSilence: a link broken in one direction
// only is down for both nodes, so they never send on different links.
// What was in flight on a link that went down is resent over the next one
// by the reliable protocol (the receiver NACKs the gap).
//
// Both nodes learn this from probes: every probeEvery each node sends, on
// every link with carrier, a payload holding one LINK_PROBE message (type
// 0x20, which the protocol skips as unknown): link index u8, flags u8
// (probeHears: the sender heard the peer on this link within
// linkSilence). Probes go through the same authenticated envelope and
// replay guard as everything else.

const (
	probeEvery  = 250 * time.Millisecond // the protocol's keep-alive interval
	linkSilence = 4 * probeEvery         // a link the peer is silent on this long is down

	typeLinkProbe = 0x20
	probeHears    = 0x01
)

// linkView is what the engine knows of one link.
type linkView struct {
	carrier   bool      // the interface is up with carrier (rtnetlink)
	heard     time.Time // the last datagram from the peer on it; zero: never
	peerHears bool      // the peer's last probe on it said it hears this node
	ifindex   int       // the interface's index now (rtnetlink); 0: unknown
}

// hears reports whether the peer was heard on the link within silence.
func (v linkView) hears(now time.Time, silence time.Duration) bool {
	return v.carrier && !v.heard.IsZero() && now.Sub(v.heard) < silence
}

// up reports whether the link works both ways.
func (v linkView) up(now time.Time, silence time.Duration) bool {
	return v.hears(now, silence) && v.peerHears
}

// linkReason says why the active link changed.
type linkReason uint8

const (
	reasonNone      linkReason = iota
	reasonCarrier              // the active link lost its carrier
	reasonSilence              // the peer fell silent on the active link
	reasonPreferred            // a link before the active one is up (again)
)

func (r linkReason) String() string {
	switch r {
	case reasonCarrier:
		return "carrier lost"
	case reasonSilence:
		return "peer silent"
	case reasonPreferred:
		return "preferred link up"
	}
	return "none"
}

// chooseLink returns the link that carries traffic: the first one that is
// up. When none is (the peer is away, or not met yet), the first one with
// carrier, so that the peer hears this node as soon as it can; when none
// has carrier, the current one. The reason is reasonNone when the choice
// does not change.
func chooseLink(views []linkView, cur int, now time.Time, silence time.Duration) (int, linkReason) {
	next := -1
	for i, v := range views {
		if v.up(now, silence) {
			next = i
			break
		}
	}
	if next < 0 {
		for i, v := range views {
			if v.carrier {
				next = i
				break
			}
		}
	}
	if next < 0 || next == cur {
		return cur, reasonNone
	}
	switch c := views[cur]; {
	case !c.carrier:
		return next, reasonCarrier
	case next > cur:
		return next, reasonSilence
	}
	return next, reasonPreferred
}

// appendProbe appends a link probe payload.
func appendProbe(b []byte, index int, hears bool) []byte {
	var flags byte
	if hears {
		flags |= probeHears
	}
	return append(b, typeLinkProbe, 2, byte(index), flags)
}

// parseProbe finds a link probe in a payload (the protocol's framing: type
// u8, length uvarint, body) and returns its flags.
func parseProbe(p []byte) (flags byte, ok bool) {
	for len(p) > 0 {
		typ := p[0]
		n, k := binary.Uvarint(p[1:])
		if k <= 0 || n > uint64(len(p)-1-k) {
			return 0, false
		}
		body := p[1+k : 1+k+int(n)]
		p = p[1+k+int(n):]
		if typ == typeLinkProbe && len(body) >= 2 {
			return body[1], true
		}
	}
	return 0, false
}
