package ctsync

import (
	"encoding/binary"
	"maps"
	"slices"
	"time"
)

// Each node says who it is on the sync links: every link probe carries a
// NODE message (type 0x21, skipped as unknown by the protocol and by
// older versions): name length u8, node_name, then the number of sync
// groups the node is master of (u8) and each group's name (length u8,
// name), then its SNAT port range (lo u16, hi u16; 0-0 for none; absent
// from older versions). Multiprimary nodes compare the groups: two
// masters of one group for longer than splitGrace is that group's split
// brain; and the port ranges, whose overlap is reported.

const (
	typeNode = 0x21
	// maxNameLen bounds the names a NODE message carries (longer ones are
	// cut); maxNodeGroups the groups it lists.
	maxNameLen    = 64
	maxNodeGroups = 32
)

// nodeInfo is what a peer announced.
type nodeInfo struct {
	name     string
	masterOf []string // sorted
	snat     PortRange
}

// appendNode appends a NODE message.
func appendNode(b []byte, name string, masterOf []string, snat PortRange) []byte {
	body := appendName(nil, name)
	n := min(len(masterOf), maxNodeGroups)
	body = append(body, byte(n))
	for _, g := range masterOf[:n] {
		body = appendName(body, g)
	}
	body = binary.BigEndian.AppendUint16(body, snat.Lo)
	body = binary.BigEndian.AppendUint16(body, snat.Hi)
	b = append(b, typeNode)
	b = binary.AppendUvarint(b, uint64(len(body)))
	return append(b, body...)
}

func appendName(b []byte, s string) []byte {
	s = s[:min(len(s), maxNameLen)]
	return append(append(b, byte(len(s))), s...)
}

// parseNode finds a NODE message in a payload (the protocol's framing).
func parseNode(p []byte) (nodeInfo, bool) {
	for len(p) > 0 {
		typ := p[0]
		n, k := binary.Uvarint(p[1:])
		if k <= 0 || n > uint64(len(p)-1-k) {
			return nodeInfo{}, false
		}
		body := p[1+k : 1+k+int(n)]
		p = p[1+k+int(n):]
		if typ != typeNode {
			continue
		}
		var ni nodeInfo
		var ok bool
		if ni.name, body, ok = cutName(body); !ok || len(body) < 1 {
			return nodeInfo{}, false
		}
		count := int(body[0])
		if count > maxNodeGroups {
			return nodeInfo{}, false
		}
		body = body[1:]
		for range count {
			var g string
			if g, body, ok = cutName(body); !ok {
				return nodeInfo{}, false
			}
			ni.masterOf = append(ni.masterOf, g)
		}
		if len(body) >= 4 {
			ni.snat = PortRange{binary.BigEndian.Uint16(body), binary.BigEndian.Uint16(body[2:])}
			if ni.snat.Lo > ni.snat.Hi {
				ni.snat = PortRange{}
			}
		}
		slices.Sort(ni.masterOf)
		ni.masterOf = slices.Compact(ni.masterOf)
		return ni, true
	}
	return nodeInfo{}, false
}

func cutName(b []byte) (string, []byte, bool) {
	if len(b) < 1 || int(b[0]) > len(b)-1 || b[0] > maxNameLen {
		return "", nil, false
	}
	n := int(b[0])
	return string(b[1 : 1+n]), b[1+n:], true
}

// masterGroups returns the groups this node is master of, sorted.
func (e *Engine) masterGroups() []string {
	return slices.Sorted(maps.Keys(e.masterOf))
}

// claimedBy returns a peer among those up (their bits) that claims
// group g as master, or nil.
func (e *Engine) claimedBy(g string, up uint8) *peer {
	for _, p := range e.peers {
		if up&p.bit != 0 && slices.Contains(p.node.masterOf, g) {
			return p
		}
	}
	return nil
}

// splitGroups returns the groups this node and a peer among those up
// (their bits) both claim as master for longer than splitGrace.
func (e *Engine) splitGroups(now time.Time, up uint8) []string {
	var out []string
	for g := range e.masterOf {
		if e.claimedBy(g, up) == nil {
			delete(e.splitSince, g)
			continue
		}
		since, ok := e.splitSince[g]
		if !ok {
			e.splitSince[g] = now
			continue
		}
		if now.Sub(since) >= splitGrace {
			out = append(out, g)
		}
	}
	for g := range e.splitSince {
		if !e.masterOf[g] {
			delete(e.splitSince, g)
		}
	}
	slices.Sort(out)
	return out
}
