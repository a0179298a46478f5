package events

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Event types. The README's table documents each one and its fields.
const (
	// GroupTransition: a sync group moved (Group, From, To, Reason).
	GroupTransition = "group_transition"
	// InstanceTransition: a VRRP instance moved (Instance, Group if it is
	// in one, From, To, Reason, Priority).
	InstanceTransition = "instance_transition"
	// PeerUp, PeerDown: a sync peer became reachable, or stopped being
	// (Peer, Address).
	PeerUp   = "peer_up"
	PeerDown = "peer_down"
	// BulkComplete: this node holds a complete copy of a peer's table
	// (Peer, Address, Entries, Expected).
	BulkComplete = "bulk_complete"
	// SplitBrainBegin, SplitBrainEnd: another node claims MASTER of a
	// group this node is master of, or no longer does (Group).
	SplitBrainBegin = "split_brain_begin"
	SplitBrainEnd   = "split_brain_end"
	// VIPRestored: virtual IPs removed under the master by someone else
	// were put back (Instance, Group, VIPs).
	VIPRestored = "vip_restored"
	// DemotionSet, DemotionCleared: a group's priorities were lowered for
	// a reason, or that demotion was lifted (Group, Reason, Priority: the
	// adjustment).
	DemotionSet     = "demotion_set"
	DemotionCleared = "demotion_cleared"
	// ReloadApplied, ReloadFailed: a SIGHUP reload applied the file (or
	// what of it can change without a restart: Changes, Error), or was
	// refused (Error).
	ReloadApplied = "reload_applied"
	ReloadFailed  = "reload_failed"
	// Stopping: the daemon is stopping (Reason); the stream ends once it
	// has stopped.
	Stopping = "stopping"
	// Error is the last event of a stream the daemon ends: a reader too
	// slow to keep up (Error, Dropped).
	Error = "error"
)

// Event is one thing that happened. Fields that do not apply to the type
// are left out of the JSON.
type Event struct {
	Time     time.Time `json:"time"`
	Type     string    `json:"type"`
	Group    string    `json:"group,omitempty"`
	Instance string    `json:"instance,omitempty"`
	From     string    `json:"from,omitempty"`
	To       string    `json:"to,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Priority int       `json:"priority,omitempty"`
	Peer     string    `json:"peer,omitempty"`
	Address  string    `json:"address,omitempty"`
	Entries  *int      `json:"entries,omitempty"`
	Expected int       `json:"expected,omitempty"`
	VIPs     []string  `json:"vips,omitempty"`
	Changes  []string  `json:"changes,omitempty"`
	Error    string    `json:"error,omitempty"`
	Dropped  int       `json:"dropped,omitempty"`
}

// DefaultBuffer is how many events a subscriber may fall behind before
// it is dropped.
const DefaultBuffer = 1024

// Bus hands every published event to every subscriber.
type Bus struct {
	now  func() time.Time
	done chan struct{} // closed by Close

	mu     sync.Mutex // guards subs and closed
	subs   map[*Sub]struct{}
	closed bool
}

// New returns an open bus.
func New() *Bus {
	return &Bus{now: time.Now, done: make(chan struct{}), subs: map[*Sub]struct{}{}}
}

// Publish hands e to every subscriber; a zero Time is set to now. It
// never blocks: a subscriber whose buffer is full is dropped (it misses
// this event and every later one).
func (b *Bus) Publish(e Event) {
	if e.Time.IsZero() {
		e.Time = b.now()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	for s := range b.subs {
		if s.dropped.Load() > 0 {
			s.dropped.Add(1)
			continue
		}
		select {
		case s.ch <- e:
		default:
			s.dropped.Add(1)
		}
	}
}

// Subscribe returns a subscription that gets every event published from
// now on; buffer is how many it may fall behind (<= 0: DefaultBuffer).
// Close it when done.
func (b *Bus) Subscribe(buffer int) *Sub {
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	s := &Sub{bus: b, ch: make(chan Event, buffer)}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.subs[s] = struct{}{}
	}
	return s
}

// Subscribers is how many subscriptions are open.
func (b *Bus) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// Close ends the bus: publishing does nothing any more, and each
// subscription ends once it has handed over what it holds.
func (b *Bus) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		close(b.done)
	}
}

// Sub is one reader's subscription.
type Sub struct {
	bus     *Bus
	ch      chan Event
	dropped atomic.Int64 // events missed since the buffer filled up
	ended   bool         // Next returned the final error event; only Next's goroutine uses it
}

// Next returns the next event, waiting for it until ctx is done. A
// dropped subscription returns what its buffer holds, then one event of
// type Error, then io.EOF; so does a subscription of a closed bus, without
// the error event. Call Next from one goroutine at a time.
func (s *Sub) Next(ctx context.Context) (Event, error) {
	if s.ended {
		return Event{}, io.EOF
	}
	select {
	case e := <-s.ch: // what is buffered comes first
		return e, nil
	default:
	}
	if n := s.dropped.Load(); n > 0 {
		s.ended = true
		return Event{Time: s.bus.now(), Type: Error, Dropped: int(n),
			Error: fmt.Sprintf("reader too slow: %d events dropped; reconnect", n)}, nil
	}
	select {
	case e := <-s.ch:
		return e, nil
	case <-s.bus.done:
		select {
		case e := <-s.ch:
			return e, nil
		default:
		}
		return Event{}, io.EOF
	case <-ctx.Done():
		return Event{}, ctx.Err()
	}
}

// Close ends the subscription: the bus forgets it.
func (s *Sub) Close() {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	delete(s.bus.subs, s)
}
