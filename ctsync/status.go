package ctsync

import (
	"time"

	"github.com/ctha/ctha/ctsync/proto"
)

// Status is the engine's state for `ctha status`.
type Status struct {
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
}

func (e *Engine) publish(now time.Time) {
	s := Status{
		PeerUp: e.ep.PeerUp(now), BulkComplete: e.bulkComplete, PeerRole: roleOf(e.ep.PeerRole()),
		BulkReceived: e.bulkReceived, BulkExpected: e.bulkExpected,
		Internal: e.internal.len(), External: e.external.len(), LastCommit: e.lastCommit,
		ExpectInternal: len(e.exp.internal), ExpectExternal: len(e.exp.external),
		Links: e.linkStatus(now),
	}
	if e.bulkSeen != nil {
		s.BulkReceived = len(e.bulkSeen)
	}
	active := e.ls.links[e.ls.active].cfg
	s.Link, s.Interface = active.Name, active.Interface
	// Both masters for a moment is a normal preemption: the old master
	// steps down when it hears the new one's advert, and its keep-alives
	// say so a little later. Longer than splitGrace is a split brain.
	if s.PeerUp && e.role == proto.RoleMaster && s.PeerRole == RoleMaster {
		if e.splitSince.IsZero() {
			e.splitSince = now
		}
		s.SplitBrain = now.Sub(e.splitSince) >= splitGrace
	} else {
		e.splitSince = time.Time{}
	}
	if s.SplitBrain && !e.status.SplitBrain {
		e.stats.splitBrains.Add(1)
		e.log.Error("split brain: the peer is master too")
	}
	e.statusMu.Lock()
	old := e.status
	e.status = s
	e.statusMu.Unlock()
	if s.PeerUp != old.PeerUp || s.BulkComplete != old.BulkComplete || s.SplitBrain != old.SplitBrain || s.PeerRole != old.PeerRole {
		select {
		case e.changed <- struct{}{}:
		default:
		}
	}
}

// Changed is signalled when the peer's reachability or role, the
// completeness of its copy or a split brain change (Status): whoever acts
// on those waits on it instead of polling. One signal stands for any
// number of changes; read Status after it.
func (e *Engine) Changed() <-chan struct{} { return e.changed }

// Status returns the engine's last published state.
func (e *Engine) Status() Status {
	e.statusMu.Lock()
	defer e.statusMu.Unlock()
	return e.status
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
