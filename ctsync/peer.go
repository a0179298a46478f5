package ctsync

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/ctha/ctha/ctsync/auth"
	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/proto"
)

// MaxPeers is the most peers a node replicates with (eight nodes).
const MaxPeers = 7

// peer is one node this node replicates with, and everything the engine
// knows of it: the reliable protocol runs per peer (its own sequence
// numbers, acknowledgements, resends and bulk copies), over the link that
// works with that peer. In primary-backup there is one.
type peer struct {
	idx int
	bit uint8 // its mark among a flow's holders in the external cache
	// addrs is its address on each link; invalid on a multicast link
	// (there, where it was last heard from is addr).
	addrs     []netip.Addr
	ep        *proto.Endpoint
	ctd       *ctdPeer // protocol conntrackd (ctdpeer.go): used instead of ep; nil for a ctha peer
	guard     *auth.ReplayGuard
	epochPath string
	epoch     uint32 // of the last datagram accepted from it

	views  []linkView // per link: carrier (the link's), and whether the peer is heard there
	active int        // the link that carries the traffic to it

	node  nodeInfo   // what it announced (node.go)
	addr  netip.Addr // the source of its last accepted datagram
	heard time.Time  // when that came

	// Its bulk copy to this node.
	bulkSeen        map[ct.Key]bool // keys refreshed since its bulk began
	bulkID          uint32          // the id of its bulk in progress
	bulkComplete    bool
	copies          int       // complete copies received from the peer
	bulkAsked       time.Time // when its copy was last asked for; zero: not awaited
	bulkSent        uint32    // the id of this node's last copy to it
	bulkOwed        bool      // it asked for a copy that waits for the first dump (Engine.holdBulk)
	bulkExpected    int       // entries its last copy announced; 0: unknown
	bulkReceived    int       // entries of its last complete copy
	uncheckedLogged bool      // its copies carry no epoch echo: said once
	splitSince      time.Time // primary-backup: when both were first seen master
}

// newPeers makes the peers of links (every link lists them in the same
// order; a multicast link has one, found by its datagrams).
func newPeers(c Config, stateDir string) ([]*peer, error) {
	n := len(c.Links[0].Peers)
	if c.Links[0].MulticastGroup.IsValid() {
		n = 1
	}
	peers := make([]*peer, n)
	for i := range peers {
		p := &peer{idx: i, bit: 1 << i, views: make([]linkView, len(c.Links))}
		for _, l := range c.Links {
			var a netip.Addr
			if !l.MulticastGroup.IsValid() {
				a = l.Peers[i]
			}
			p.addrs = append(p.addrs, a)
		}
		// One peer keeps the file of the versions before multiprimary.
		p.epochPath = filepath.Join(stateDir, "sync-peer-epoch")
		if n > 1 {
			p.epochPath = filepath.Join(stateDir, fmt.Sprintf("sync-peer-epoch-%s", p.addrs[0]))
		}
		epoch, err := auth.LoadPeerEpoch(p.epochPath)
		if err != nil {
			return nil, fmt.Errorf("conntrack sync: %w", err)
		}
		p.guard = auth.NewReplayGuard(epoch)
		peers[i] = p
	}
	return peers, nil
}

// name is how logs and metrics call the peer: its node name once heard,
// else its address.
func (p *peer) name() string {
	if p.node.name != "" {
		return p.node.name
	}
	if p.addrs[0].IsValid() {
		return p.addrs[0].String()
	}
	if p.addr.IsValid() {
		return p.addr.String()
	}
	return fmt.Sprintf("peer%d", p.idx+1)
}

// up reports whether the protocol hears the peer.
func (p *peer) up(now time.Time) bool {
	if p.ctd != nil {
		return p.ctd.ep.PeerUp(now)
	}
	return p.ep.PeerUp(now)
}

// queue queues key k's latest state for every peer.
func (e *Engine) queue(k ct.Key) {
	for _, p := range e.peers {
		if p.ctd != nil {
			p.ctd.ep.Queue(k)
			continue
		}
		p.ep.Queue(k)
	}
}

// peersUp reports whether every peer is up.
func (e *Engine) peersUp(now time.Time) bool {
	for _, p := range e.peers {
		if !p.up(now) {
			return false
		}
	}
	return true
}

// upMask returns the holder bits of the peers that are up.
func (e *Engine) upMask(now time.Time) uint8 {
	var m uint8
	for _, p := range e.peers {
		if p.up(now) {
			m |= p.bit
		}
	}
	return m
}

// copiesComplete reports whether this node holds a complete copy from
// every live peer (and from one at least). A peer is live while it is
// up, and until firstDumpAlone after the start if it has not been heard
// yet: the first peer's copy may well be complete before another peer is
// heard at all.
func (e *Engine) copiesComplete(now time.Time) bool {
	any := false
	for _, p := range e.peers {
		switch {
		case p.bulkComplete:
			any = true
		case p.up(now), p.heard.IsZero() && now.Sub(e.started) < firstDumpAlone:
			return false
		}
	}
	return any
}

// peerOf returns the peer that a datagram on link i from src comes from,
// or nil.
func (e *Engine) peerOf(i int, src netip.Addr) *peer {
	l := e.ls.links[i]
	src = src.Unmap()
	if l.multicast() {
		if src == l.cfg.Local {
			return nil
		}
		return e.peers[0]
	}
	for _, p := range e.peers {
		if p.addrs[i] == src {
			return p
		}
	}
	return nil
}

// dst returns where datagrams to p go on link i.
func (p *peer) dst(l *link, i int) netip.AddrPort {
	if l.multicast() {
		return l.dst
	}
	return netip.AddrPortFrom(p.addrs[i], l.cfg.Port)
}
