package vrrp

import (
	"sync"
	"time"
)

// GroupStatus is a sync group's state, as `ctha status` shows it.
type GroupStatus struct {
	Name            string
	State           State
	Since           time.Time
	Reason          Reason
	PreemptDeferred bool
	Demoted         string
}

// InstanceStatus is an instance's state, as `ctha status` shows it.
type InstanceStatus struct {
	Name              string
	Group             string // "" for a lone instance
	State             State
	Priority          uint8
	EffectivePriority uint8
	Master            string // "" when unknown
	// TimerToGARP is how long the last takeover took from Master_Down (or
	// the preemption) to the first gratuitous ARP / NA on the wire.
	TimerToGARP time.Duration
}

// statusBox holds the latest status each group published, for readers on
// other goroutines.
type statusBox struct {
	mu        sync.Mutex
	groups    map[string]GroupStatus
	instances map[string]InstanceStatus
}

// set stores a group's status and reports whether a state changed.
func (b *statusBox) set(g GroupStatus, implicit bool, ins []InstanceStatus) (changed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !implicit {
		changed = b.groups[g.Name].State != g.State
		b.groups[g.Name] = g
	}
	for _, in := range ins {
		old, ok := b.instances[in.Name]
		changed = changed || !ok || old.State != in.State
		b.instances[in.Name] = in
	}
	return changed
}

func (g *Group) publishStatus() {
	if g.publish == nil {
		return
	}
	ins := g.status[:0] // the box copies what it keeps
	deferred := false
	for _, mb := range g.members {
		s := InstanceStatus{
			Name:              mb.cfg.Name,
			State:             mb.m.State,
			Priority:          mb.cfg.Priority,
			EffectivePriority: mb.m.EffPriority,
			TimerToGARP:       mb.lastGARP,
		}
		if s.EffectivePriority == 0 {
			s.EffectivePriority = mb.cfg.Priority
		}
		if !g.implicit {
			s.Group = g.name
		}
		if mb.m.Master != mb.masterAddr {
			mb.masterAddr, mb.masterStr = mb.m.Master, ""
			if mb.m.Master.IsValid() {
				mb.masterStr = mb.m.Master.String()
			}
		}
		s.Master = mb.masterStr
		deferred = deferred || mb.m.Deferred
		ins = append(ins, s)
	}
	g.status = ins
	g.publish(GroupStatus{
		Name: g.name, State: g.state, Since: g.since, Reason: g.reason,
		PreemptDeferred: deferred, Demoted: g.demoted,
	}, ins)
}
