package ctsync

import (
	"slices"
	"time"

	"github.com/ctha/ctha/ctsync/proto"
)

// Status is the engine's state for `ctha status`.
type Status struct {
	Topology Topology
	// PeerUp: every peer is up. SplitBrain (primary-backup): both nodes
	// are master; in multiprimary, see SplitGroups.
	PeerUp, BulkComplete, SplitBrain bool
	PeerRole                         Role
	// BulkReceived: entries of the peer's copy under way, or else of its
	// last complete one; BulkExpected: how many it announced (0: unknown).
	BulkReceived, BulkExpected     int
	Internal, External             int
	ExpectInternal, ExpectExternal int // expectations
	LastCommit                     *CommitResult
	Link                           string // the active link
	Interface                      string // the active link's
	Links                          []LinkStatus
	// Peers are the peers one by one (one in primary-backup).
	Peers []PeerStatus
	// SNATPorts is this node's SNAT port range; SNATOverlap, whether a
	// peer's overlaps it.
	SNATPorts   PortRange
	SNATOverlap bool
	// SplitGroups (multiprimary) are the sync groups this node is master
	// of while a peer claims them too, for longer than a preemption
	// takes; sorted.
	SplitGroups []string
	// Defer is multiprimary's defer (nil when off); filled by Status.
	Defer *DeferStatus
}

// PeerStatus is one peer in Status.
type PeerStatus struct {
	// Node is the peer's node_name, as it announces it ("" until heard).
	Node    string
	Address string // the peer's address on the active link
	Up      bool
	// BulkComplete: this node holds a complete copy of the peer's table.
	BulkComplete bool
	// Entries: the peer's flows this node holds.
	Entries int
	// BulkReceived, BulkExpected: as Status's, for this peer.
	BulkReceived, BulkExpected int
	// LastSeen is when the peer was last heard from; zero: never.
	LastSeen time.Time
	// Role (primary-backup) is the peer's announced role.
	Role Role
	// MasterOf (multiprimary) are the sync groups the peer claims to be
	// master of; sorted.
	MasterOf []string
	// SNATPorts is the SNAT port range the peer announces.
	SNATPorts PortRange
	// Copies is how many complete copies of its table the peer has sent
	// this node.
	Copies int
}

func (e *Engine) publish(now time.Time) {
	s := Status{
		Topology: e.cfg.Topology, SNATPorts: e.cfg.SNATPorts,
		PeerUp: e.peersUp(now), BulkComplete: e.copiesComplete(now),
		Internal: e.internal.len(), External: e.external.len(), LastCommit: e.lastCommit,
		ExpectInternal: len(e.exp.internal), ExpectExternal: len(e.exp.external),
		Links: e.linkStatus(now),
	}
	for _, p := range e.peers {
		ps := PeerStatus{Node: p.node.name, Up: p.up(now), BulkComplete: p.bulkComplete,
			Entries: e.external.held(p.bit), BulkReceived: p.bulkReceived, BulkExpected: p.bulkExpected,
			LastSeen: p.heard, Role: roleOf(p.ep.PeerRole()), MasterOf: p.node.masterOf, SNATPorts: p.node.snat,
			Copies: p.copies}
		s.SNATOverlap = s.SNATOverlap || e.cfg.SNATPorts.Overlaps(p.node.snat)
		if p.bulkSeen != nil {
			ps.BulkReceived = len(p.bulkSeen)
		}
		switch {
		case p.addrs[p.active].IsValid():
			ps.Address = p.addrs[p.active].String()
		case p.addr.IsValid(): // a multicast link: where the peer was heard from
			ps.Address = p.addr.String()
		}
		s.Peers = append(s.Peers, ps)
		s.BulkReceived += ps.BulkReceived
		s.BulkExpected += ps.BulkExpected
	}
	active := e.ls.links[e.peers[0].active].cfg
	s.Link, s.Interface = active.Name, active.Interface
	if e.cfg.Topology == Multiprimary {
		up := e.upMask(now)
		s.SplitGroups = e.splitGroups(now, up)
		for _, g := range s.SplitGroups {
			if !slices.Contains(e.status.SplitGroups, g) {
				e.stats.splitBrains.Add(1)
				name := ""
				if p := e.claimedBy(g, up); p != nil {
					name = p.name()
				}
				e.log.Error("split brain: a peer is master of this node's group too", "group", g, "peer", name)
			}
		}
	} else {
		// Primary-backup: one peer. Both masters for a moment is a
		// normal preemption: the old master steps down when it hears
		// the new one's advert, and its keep-alives say so a little
		// later. Longer than splitGrace is a split brain.
		p := e.peers[0]
		s.PeerRole = s.Peers[0].Role
		if s.PeerUp && e.role == proto.RoleMaster && s.PeerRole == RoleMaster {
			if p.splitSince.IsZero() {
				p.splitSince = now
			}
			s.SplitBrain = now.Sub(p.splitSince) >= splitGrace
		} else {
			p.splitSince = time.Time{}
		}
		if s.SplitBrain && !e.status.SplitBrain {
			e.stats.splitBrains.Add(1)
			e.log.Error("split brain: the peer is master too")
		}
	}
	e.statusMu.Lock()
	old := e.status
	e.status = s
	e.statusMu.Unlock()
	if s.PeerUp != old.PeerUp || s.BulkComplete != old.BulkComplete || s.SplitBrain != old.SplitBrain || s.PeerRole != old.PeerRole ||
		!slices.Equal(s.SplitGroups, old.SplitGroups) {
		select {
		case e.changed <- struct{}{}:
		default:
		}
	}
	if e.opts.OnStatus != nil && peersMoved(old, s) {
		e.opts.OnStatus(old, s)
	}
}

// peersMoved reports whether the peers or a split brain changed between
// two published statuses (Options.OnStatus).
func peersMoved(a, b Status) bool {
	if a.PeerRole != b.PeerRole || a.SplitBrain != b.SplitBrain || !slices.Equal(a.SplitGroups, b.SplitGroups) ||
		len(a.Peers) != len(b.Peers) {
		return true
	}
	for i, p := range a.Peers {
		q := b.Peers[i]
		if p.Up != q.Up || p.BulkComplete != q.BulkComplete || p.Copies != q.Copies || p.Node != q.Node {
			return true
		}
	}
	return false
}

// Changed is signalled when the peer's reachability or role, the
// completeness of its copy or a split brain change (Status): whoever acts
// on those waits on it instead of polling. One signal stands for any
// number of changes; read Status after it.
func (e *Engine) Changed() <-chan struct{} { return e.changed }

// Status returns the engine's last published state.
func (e *Engine) Status() Status {
	e.statusMu.Lock()
	s := e.status
	e.statusMu.Unlock()
	if e.dq != nil {
		s.Defer = e.dq.status()
	}
	return s
}

// Role is a node's part in the pair, as its sync group's VRRP state sets
// it (SetRole) and as the peer announces it (Status.PeerRole).
type Role uint8

// Roles.
const (
	RoleUnknown Role = iota
	RoleBackup
	RoleMaster
)

func (r Role) String() string { return r.protoRole().String() }

// protoRole is r in the protocol's terms.
func (r Role) protoRole() proto.Role {
	switch r {
	case RoleBackup:
		return proto.RoleBackup
	case RoleMaster:
		return proto.RoleMaster
	}
	return proto.RoleUnknown
}

// roleOf is the protocol's r in the engine's terms.
func roleOf(r proto.Role) Role {
	switch r {
	case proto.RoleBackup:
		return RoleBackup
	case proto.RoleMaster:
		return RoleMaster
	}
	return RoleUnknown
}
