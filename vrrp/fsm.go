package vrrp

import (
	"net/netip"
	"time"
)

// State is an instance's VRRP state.
type State uint8

// States of RFC 5798 section 6.4, and FAULT (keepalived's): a tracked link
// or check is down, so the instance neither sends nor takes over.
const (
	Init State = iota
	Backup
	Master
	Fault
)

func (s State) String() string {
	switch s {
	case Init:
		return "INIT"
	case Backup:
		return "BACKUP"
	case Master:
		return "MASTER"
	case Fault:
		return "FAULT"
	}
	return "UNKNOWN"
}

// Params are an instance's fixed protocol settings.
type Params struct {
	Version        int // 2 or 3
	Priority       uint8
	AdvertInterval time.Duration
	Preempt        bool
	PreemptDelay   time.Duration
	// Primary is the address adverts are sent from; it breaks ties between
	// masters of equal priority.
	Primary netip.Addr
}

// Machine is one instance's protocol state. The zero value plus Params is
// an instance in INIT. It is a value: Step returns the next one.
type Machine struct {
	Params
	State State

	// EffPriority is Priority adjusted by trackers (1..254; 255 only for an
	// address owner at full health).
	EffPriority uint8
	// MasterAdverInterval is learned from the master's adverts (v3).
	MasterAdverInterval time.Duration
	// Master is the current master's address (Primary when master) and
	// MasterPriority its last advertised priority.
	Master         netip.Addr
	MasterPriority uint8

	// Timers, as deadlines; zero when not armed.
	MasterDownAt time.Time
	AdvertAt     time.Time
	// PreemptAt is when a deferred preemption may happen (preempt_delay).
	PreemptAt time.Time

	// Deferred holds preemption back (a rejoining node's bulk sync).
	Deferred bool
	// Undeferred: a deferral was lifted before a lower-priority master
	// was heard; its first advert preempts at once, as the lifting would
	// have, rather than Master_Down later.
	Undeferred bool
	// Taking is set from Master_Down (or a permitted preemption) until the
	// group's go-ahead (EvGoMaster) or an abort: the takeover is pending.
	Taking bool
}

// EventKind says what happened.
type EventKind uint8

// Events.
const (
	EvStartup      EventKind = iota + 1
	EvShutdown               // stop: a master resigns with priority 0
	EvAdvert                 // an advert passed the receive checks
	EvTimer                  // a deadline of the machine has passed
	EvFault                  // a tracker with weight 0 failed, or the group is in FAULT
	EvFaultCleared           // every fault is gone
	EvPriority               // the effective priority changed (Event.Priority)
	EvGoMaster               // the group's go-ahead: the kernel table is complete
	EvGoBackup               // the group steps down (another member lost)
	EvResign                 // planned handover: a master resigns with priority 0
	EvDefer                  // preemption deferred (Event.Defer) or allowed again
)

var eventNames = [...]string{"", "startup", "shutdown", "advert", "timer", "fault", "fault-cleared",
	"priority", "go-master", "go-backup", "resign", "defer"}

func (k EventKind) String() string {
	if int(k) < len(eventNames) && k > 0 {
		return eventNames[k]
	}
	return "unknown"
}

// Event is an input of Step.
type Event struct {
	Kind EventKind
	// EvAdvert: sender, advertised priority and interval.
	From     netip.Addr
	Priority uint8 // also EvPriority: the new effective priority
	Interval time.Duration
	// EvDefer: whether preemption is deferred.
	Defer bool
}

// ActionKind says what the runner must do.
type ActionKind uint8

// Actions, in the order Step emits them.
const (
	// ActSend sends an advert with Action.Priority (0 = resign).
	ActSend ActionKind = iota + 1
	// ActWantMaster asks the group to take over; it answers EvGoMaster once
	// the takeover hook is done, or EvGoBackup.
	ActWantMaster
	// ActAbortTakeover: a better master appeared while the takeover was
	// pending; the hook must be cancelled.
	ActAbortTakeover
	// ActAddVIPs adds the virtual IPs and sends gratuitous ARP / NA.
	ActAddVIPs
	// ActRemoveVIPs removes the virtual IPs.
	ActRemoveVIPs
	// ActAnnounce repeats gratuitous ARP / NA (a lower master was heard).
	ActAnnounce
	// ActTransition reports a state change From -> To for Reason.
	ActTransition
)

var actionNames = [...]string{"", "send", "want-master", "abort-takeover", "add-vips", "remove-vips",
	"announce", "transition"}

func (k ActionKind) String() string {
	if int(k) < len(actionNames) && k > 0 {
		return actionNames[k]
	}
	return "unknown"
}

// Reason says why a transition happened.
type Reason uint8

// Reasons.
const (
	ReasonNone Reason = iota
	ReasonStartup
	ReasonMasterDown     // no advert from a master for Master_Down_Interval
	ReasonPreempt        // a lower-priority master was heard
	ReasonHigherPriority // a better master was heard
	ReasonMasterResigned // a priority-0 advert: the master left
	ReasonFault          // a tracker failed
	ReasonFaultCleared   // trackers recovered
	ReasonGroup          // another member of the sync group moved
	ReasonShutdown       // the daemon stops
	ReasonResign         // planned handover
)

var reasonNames = [...]string{"", "startup", "master-down", "preempt", "higher-priority", "master-resigned",
	"fault", "fault-cleared", "group", "shutdown", "resign"}

func (r Reason) String() string {
	if int(r) < len(reasonNames) && r > 0 {
		return reasonNames[r]
	}
	return "none"
}

// Action is an output of Step.
type Action struct {
	Kind     ActionKind
	Priority uint8 // ActSend
	From, To State // ActTransition
	Reason   Reason
}

// SkewTime is RFC 5798's Skew_Time for the machine's priority: how much
// later than a better backup this one declares the master down.
func (m *Machine) SkewTime() time.Duration {
	if m.Version == 2 {
		return time.Duration(256-int(m.EffPriority)) * time.Second / 256
	}
	return time.Duration(256-int(m.EffPriority)) * m.MasterAdverInterval / 256
}

// MasterDownInterval is RFC 5798's Master_Down_Interval.
func (m *Machine) MasterDownInterval() time.Duration {
	return 3*m.MasterAdverInterval + m.SkewTime()
}

// Deadline returns the earliest armed timer, or the zero time.
func (m *Machine) Deadline() time.Time {
	var d time.Time
	for _, t := range []time.Time{m.MasterDownAt, m.AdvertAt, m.PreemptAt} {
		if !t.IsZero() && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	return d
}

// mayPreempt reports whether a lower-priority master may be displaced now.
func (m *Machine) mayPreempt(now time.Time) bool {
	return m.Preempt && !m.Deferred && (m.PreemptAt.IsZero() || !now.Before(m.PreemptAt))
}

// Step applies ev at time now and returns the next machine and what to do.
func (m Machine) Step(ev Event, now time.Time) (Machine, []Action) {
	return m.step(ev, now, nil)
}

// step is Step appending the actions to acts.
func (m Machine) step(ev Event, now time.Time, acts []Action) (Machine, []Action) {
	transition := func(to State, r Reason) {
		acts = append(acts, Action{Kind: ActTransition, From: m.State, To: to, Reason: r})
		m.State = to
		if to == Master {
			m.Undeferred = false
		}
	}
	send := func(prio uint8) { acts = append(acts, Action{Kind: ActSend, Priority: prio}) }
	do := func(k ActionKind) { acts = append(acts, Action{Kind: k}) }
	toBackup := func(r Reason) {
		m.AdvertAt = time.Time{}
		m.MasterDownAt = now.Add(m.MasterDownInterval())
		transition(Backup, r)
	}
	startTakeover := func() {
		m.Taking = true
		m.MasterDownAt, m.PreemptAt = time.Time{}, time.Time{}
		do(ActWantMaster)
	}
	abortTakeover := func() {
		if m.Taking {
			m.Taking = false
			do(ActAbortTakeover)
		}
	}

	switch ev.Kind {
	case EvStartup:
		if m.State != Init {
			break
		}
		if m.EffPriority == 0 {
			m.EffPriority = m.Priority
		}
		m.MasterAdverInterval = m.AdvertInterval
		if m.PreemptDelay > 0 {
			m.PreemptAt = now.Add(m.PreemptDelay)
		}
		toBackup(ReasonStartup)
		if m.EffPriority == 255 { // the address owner takes over at once
			startTakeover()
		}

	case EvShutdown, EvResign:
		if m.State == Init {
			break
		}
		abortTakeover()
		if m.State == Master {
			send(0)
			do(ActRemoveVIPs)
		}
		if ev.Kind == EvShutdown {
			m.MasterDownAt, m.AdvertAt, m.PreemptAt = time.Time{}, time.Time{}, time.Time{}
			transition(Init, ReasonShutdown)
		} else if m.State == Master {
			toBackup(ReasonResign)
		}

	case EvTimer:
		m, acts = m.timer(now, acts)

	case EvAdvert:
		m, acts = m.advert(ev, now, acts)

	case EvFault:
		if m.State == Fault || m.State == Init {
			break
		}
		abortTakeover()
		if m.State == Master {
			send(0)
			do(ActRemoveVIPs)
		}
		m.MasterDownAt, m.AdvertAt, m.PreemptAt = time.Time{}, time.Time{}, time.Time{}
		transition(Fault, ReasonFault)

	case EvFaultCleared:
		if m.State == Fault {
			m.MasterAdverInterval = m.AdvertInterval
			toBackup(ReasonFaultCleared)
		}

	case EvPriority:
		old := m.EffPriority
		m.EffPriority = ev.Priority
		if m.State == Master && ev.Priority < old {
			// Tell a better backup at once, rather than at the next advert.
			send(m.EffPriority)
			m.AdvertAt = now.Add(m.AdvertInterval)
		}
		if m.State == Backup && !m.Taking && m.Master.IsValid() && m.MasterPriority < m.EffPriority && m.mayPreempt(now) {
			startTakeover()
		}

	case EvDefer:
		lifted := m.Deferred && !ev.Defer
		m.Deferred, m.Undeferred = ev.Defer, false
		if lifted && m.State == Backup && !m.Taking && m.Master.IsValid() &&
			m.MasterPriority < m.EffPriority && m.mayPreempt(now) {
			startTakeover() // the copy is complete: preempt now, not at Master_Down
		} else if lifted && m.State != Master {
			m.Undeferred = true
		}

	case EvGoMaster:
		if m.State != Backup {
			break
		}
		reason := ReasonGroup
		if m.Taking {
			switch {
			case m.Master.IsValid() && m.MasterPriority == 0:
				reason = ReasonMasterResigned
			case m.Master.IsValid() && m.MasterPriority < m.EffPriority:
				reason = ReasonPreempt
			default:
				reason = ReasonMasterDown
			}
		}
		m.Taking = false
		m.MasterDownAt, m.PreemptAt = time.Time{}, time.Time{}
		send(m.EffPriority)
		do(ActAddVIPs)
		m.AdvertAt = now.Add(m.AdvertInterval)
		m.Master, m.MasterPriority = m.Primary, m.EffPriority
		transition(Master, reason)

	case EvGoBackup:
		switch {
		case m.State == Master:
			do(ActRemoveVIPs)
			toBackup(ReasonGroup)
		case m.State == Backup && m.Taking:
			abortTakeover()
			m.MasterDownAt = now.Add(m.MasterDownInterval())
		}
	}
	return m, acts
}

// timer handles the deadlines that have passed at now.
func (m Machine) timer(now time.Time, acts []Action) (Machine, []Action) {
	due := func(t time.Time) bool { return !t.IsZero() && !now.Before(t) }
	switch m.State {
	case Backup:
		if due(m.PreemptAt) {
			m.PreemptAt = time.Time{}
			if !m.Taking && m.Master.IsValid() && m.MasterPriority < m.EffPriority && m.mayPreempt(now) {
				m.Taking = true
				m.MasterDownAt = time.Time{}
				acts = append(acts, Action{Kind: ActWantMaster})
			}
		}
		if due(m.MasterDownAt) && !m.Taking {
			m.Taking = true
			m.MasterDownAt = time.Time{}
			acts = append(acts, Action{Kind: ActWantMaster})
		}
	case Master:
		if due(m.AdvertAt) {
			acts = append(acts, Action{Kind: ActSend, Priority: m.EffPriority})
			m.AdvertAt = now.Add(m.AdvertInterval)
		}
	}
	return m, acts
}

// advert handles a received advertisement (RFC 5798 section 6.4.2/6.4.3).
func (m Machine) advert(ev Event, now time.Time, acts []Action) (Machine, []Action) {
	switch m.State {
	case Backup:
		if ev.Priority == 0 {
			m.MasterPriority = 0
			if !m.Taking {
				m.MasterDownAt = now.Add(m.SkewTime())
			}
			return m, acts
		}
		m.Master, m.MasterPriority = ev.From, ev.Priority
		if m.Undeferred && !m.Taking && ev.Priority < m.EffPriority && m.mayPreempt(now) {
			m.Undeferred, m.Taking = false, true
			m.MasterDownAt, m.PreemptAt = time.Time{}, time.Time{}
			return m, append(acts, Action{Kind: ActWantMaster})
		}
		if !m.mayPreempt(now) || ev.Priority >= m.EffPriority {
			if m.Version == 3 {
				m.MasterAdverInterval = ev.Interval
			}
			m.MasterDownAt = now.Add(m.MasterDownInterval())
			if m.Taking {
				m.Taking = false
				acts = append(acts, Action{Kind: ActAbortTakeover})
			}
		}
		// Otherwise a lower-priority master: let Master_Down expire.
	case Master:
		switch {
		case ev.Priority == 0:
			acts = append(acts, Action{Kind: ActSend, Priority: m.EffPriority})
			m.AdvertAt = now.Add(m.AdvertInterval)
		case ev.Priority > m.EffPriority || (ev.Priority == m.EffPriority && ev.From.Compare(m.Primary) > 0):
			if m.Version == 3 {
				m.MasterAdverInterval = ev.Interval
			}
			m.Master, m.MasterPriority = ev.From, ev.Priority
			acts = append(acts, Action{Kind: ActRemoveVIPs})
			m.AdvertAt = time.Time{}
			m.MasterDownAt = now.Add(m.MasterDownInterval())
			acts = append(acts, Action{Kind: ActTransition, From: Master, To: Backup, Reason: ReasonHigherPriority})
			m.State = Backup
		default:
			// Another master with a lower priority (split brain healing):
			// assert ourselves at once so it steps down.
			acts = append(acts, Action{Kind: ActSend, Priority: m.EffPriority}, Action{Kind: ActAnnounce})
			m.AdvertAt = now.Add(m.AdvertInterval)
		}
	}
	return m, acts
}
