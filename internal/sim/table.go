package sim

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/ctha/ctha/ctsync"
	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
	"golang.org/x/sys/unix"
)

// eventQueue is how many events a subscription holds before an overrun,
// as a netlink socket's receive buffer would.
const eventQueue = 1 << 16

// Table is a node's conntrack table. Traffic (Add, Remove) and the
// engine's writes change it; every change is an event for the
// subscriptions, except those caused by a connection they ignore.
type Table struct {
	// WriteDelay is how long each flow of a write takes (0: none): a
	// commit of n flows takes n times as long, on the clock.
	WriteDelay time.Duration
	// Max is the table's size (nf_conntrack_max); 0: 1<<20.
	Max int
	// DumpDelay is how long each flow of a dump takes (0: none), on the
	// clock; the flows are those of the dump's start.
	DumpDelay time.Duration

	mu    sync.Mutex
	flows map[ct.Key]*entry
	subs  []*events
	ports uint32
}

// entry is a flow in the table, with what decides whether its next packet
// passes the kernel's TCP window check.
type entry struct {
	flow ct.Flow
	// liberal: written by ctha with the liberal window
	// (WriteOptions.Liberal); the window of the others is only as recent
	// as the last packet the table saw (seen).
	liberal bool
	seen    time.Time
	// expires is when the flow times out, as the kernel's timer: a write
	// or traffic (Add, Forward) sets it to the flow's timeout from now;
	// zero for a flow without a timeout, which never expires.
	expires time.Time
}

// Entry is what the table holds of a flow.
type Entry struct {
	Flow    ct.Flow
	Liberal bool      // written with the liberal TCP window
	Seen    time.Time // when traffic last passed (Add, Forward); zero: never
}

// NewTable returns an empty table.
func NewTable() *Table { return &Table{flows: map[ct.Key]*entry{}} }

var _ ctsync.Kernel = (*Table)(nil)

// Add is traffic: a new flow, or a flow's change.
func (t *Table) Add(f ct.Flow) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.put(0, f, false).seen = time.Now()
}

// Forward is traffic through the table: the flows it holds of keys see a
// packet, which moves their window on and restarts their timeout,
// without an event.
func (t *Table) Forward(keys []ct.Key) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	for _, k := range keys {
		if e, ok := t.flows[k]; ok {
			e.seen = now
			e.restart(now)
		}
	}
}

// restart starts the flow's timeout again from now.
func (e *entry) restart(now time.Time) {
	if e.flow.Timeout > 0 {
		e.expires = now.Add(time.Duration(e.flow.Timeout) * time.Second)
	}
}

// Expire removes the flows whose timeout has passed, each with its
// destroy event, as the kernel's timers do. Dumps and Get expire first.
func (t *Table) Expire() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expire(time.Now())
}

func (t *Table) expire(now time.Time) {
	for k, e := range t.flows {
		if !e.expires.IsZero() && !now.Before(e.expires) {
			t.del(0, k)
		}
	}
}

// remaining is what the kernel reports as a flow's timeout: the whole
// seconds left.
func (e *entry) remaining(now time.Time) ct.Flow {
	f := e.flow
	if !e.expires.IsZero() {
		f.Timeout = uint32(e.expires.Sub(now) / time.Second)
	}
	return f
}

// Remove is traffic: a flow ends. It reports whether it was there.
func (t *Table) Remove(k ct.Key) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.del(0, k)
}

// Get returns what the table holds of flow k.
func (t *Table) Get(k ct.Key) (Entry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	t.expire(now)
	e, ok := t.flows[k]
	if !ok {
		return Entry{}, false
	}
	return Entry{Flow: e.remaining(now), Liberal: e.liberal, Seen: e.seen}, true
}

// Flows returns every flow the table holds, by key.
func (t *Table) Flows() map[ct.Key]ct.Flow {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	t.expire(now)
	out := make(map[ct.Key]ct.Flow, len(t.flows))
	for k, e := range t.flows {
		out[k] = e.remaining(now)
	}
	return out
}

// Len is how many flows the table holds.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.flows)
}

// Clear empties the table without events (a node rebooted).
func (t *Table) Clear() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.flows)
}

// put and del change the table and tell the subscriptions; t.mu is held.
func (t *Table) put(port uint32, f ct.Flow, liberal bool) *entry {
	typ := kernel.EventNew
	e, ok := t.flows[f.Key()]
	if ok {
		typ = kernel.EventUpdate
	} else {
		e = &entry{}
		t.flows[f.Key()] = e
	}
	if f.Timeout == 0 && ok {
		f.Timeout = e.flow.Timeout // an update without a timeout keeps the flow's
	} else {
		e.flow.Timeout = f.Timeout
		e.restart(time.Now())
	}
	e.flow, e.liberal = f, liberal
	t.publish(port, kernel.Event{Type: typ, Flow: f})
	return e
}

func (t *Table) del(port uint32, k ct.Key) bool {
	e, ok := t.flows[k]
	if ok {
		delete(t.flows, k)
		t.publish(port, kernel.Event{Type: kernel.EventDestroy, Flow: e.flow})
	}
	return ok
}

func (t *Table) publish(port uint32, ev kernel.Event) {
	for _, s := range t.subs {
		s.offer(port, ev)
	}
}

// EnsureEvents implements ctsync.Kernel.
func (t *Table) EnsureEvents() error { return nil }

// TableCount implements ctsync.Kernel.
func (t *Table) TableCount() (int, int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	max := t.Max
	if max == 0 {
		max = 1 << 20
	}
	return len(t.flows), max, nil
}

// Dial implements ctsync.Kernel.
func (t *Table) Dial() (ctsync.KernelConn, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ports++
	return &tableConn{t: t, port: 1000 + t.ports}, nil
}

// Listen implements ctsync.Kernel.
func (t *Table) Listen(opts kernel.ListenOptions) (ctsync.KernelEvents, error) {
	s := &events{t: t, ignore: map[uint32]bool{}, wake: make(chan struct{}, 1), closed: make(chan struct{})}
	if opts.IgnorePortID != 0 {
		s.ignore[opts.IgnorePortID] = true
	}
	for _, p := range opts.IgnorePortIDs {
		s.ignore[p] = true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.subs = append(t.subs, s)
	return s, nil
}

// tableConn is a connection that dumps and writes the table.
type tableConn struct {
	t    *Table
	port uint32
}

func (c *tableConn) PortID() uint32 { return c.port }
func (c *tableConn) Close() error   { return nil }

func (c *tableConn) Dump(ctx context.Context, fn func(ct.Flow) bool) error {
	c.t.mu.Lock()
	now := time.Now()
	c.t.expire(now)
	flows := make([]ct.Flow, 0, len(c.t.flows))
	for _, e := range c.t.flows {
		flows = append(flows, e.remaining(now))
	}
	c.t.mu.Unlock()
	for i, f := range flows {
		if err := ctx.Err(); err != nil {
			return err
		}
		if d := c.t.DumpDelay; d > 0 && i%100 == 0 {
			select {
			case <-time.After(d * time.Duration(min(100, len(flows)-i))):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if !fn(f) {
			return nil
		}
	}
	return nil
}

func (c *tableConn) Get(ctx context.Context, keys []ct.Key, fn func(ct.Flow)) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	// Expired once for all: per key it made a check of 5k mirrors
	// quadratic in the table.
	c.t.mu.Lock()
	now := time.Now()
	c.t.expire(now)
	found := make([]ct.Flow, 0, len(keys))
	for _, k := range keys {
		if e, ok := c.t.flows[k]; ok {
			found = append(found, e.remaining(now))
		}
	}
	c.t.mu.Unlock()
	for _, f := range found {
		fn(f)
	}
	return len(keys) - len(found), nil
}

func (c *tableConn) DumpExpect(context.Context) ([]ct.Expect, error) { return nil, nil }

func (c *tableConn) WriteExpect(_ context.Context, _ kernel.Op, exps []ct.Expect) ([]error, error) {
	return make([]error, len(exps)), nil
}

func (c *tableConn) Write(ctx context.Context, op kernel.Op, flows []ct.Flow, opts kernel.WriteOptions) (kernel.WriteResult, error) {
	var res kernel.WriteResult
	// A slow table writes a chunk at a time, so that its progress shows.
	const chunk = 100
	for start := 0; start < len(flows); start += chunk {
		batch := flows[start:min(start+chunk, len(flows))]
		if d := c.t.WriteDelay * time.Duration(len(batch)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				err := fmt.Errorf("%v conntrack flows: %w", op, ctx.Err())
				for _, f := range flows[start:] {
					res.Failed = append(res.Failed, kernel.WriteError{Key: f.Key(), Err: err})
				}
				return res, err
			}
		}
		if err := c.write(op, batch, opts.Liberal, &res); err != nil {
			return res, err
		}
	}
	return res, nil
}

func (c *tableConn) write(op kernel.Op, flows []ct.Flow, liberal bool, res *kernel.WriteResult) error {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	for _, f := range flows {
		_, exists := c.t.flows[f.Key()]
		switch op {
		case kernel.Create:
			if exists {
				c.t.del(c.port, f.Key())
				res.Replaced++
			}
			c.t.put(c.port, f, liberal)
			res.OK++
		case kernel.Update:
			if !exists {
				res.Failed = append(res.Failed, kernel.WriteError{Key: f.Key(), Err: fmt.Errorf("update: %w", unix.ENOENT)})
				continue
			}
			c.t.put(c.port, f, liberal)
			res.OK++
		case kernel.Delete:
			if !c.t.del(c.port, f.Key()) {
				res.Failed = append(res.Failed, kernel.WriteError{Key: f.Key(), Err: fmt.Errorf("delete: %w", unix.ENOENT)})
				continue
			}
			res.OK++
		default:
			return fmt.Errorf("unknown write operation %v", op)
		}
	}
	return nil
}

// events is a subscription to the table's events.
type events struct {
	t      *Table
	ignore map[uint32]bool
	wake   chan struct{} // something to receive
	closed chan struct{}

	mu       sync.Mutex // held after t.mu when both are
	queue    []kernel.Event
	overrun  bool
	paused   bool
	deadline time.Time
	isClosed bool
}

func (s *events) offer(port uint32, ev kernel.Event) {
	if s.ignore[port] {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.paused || s.isClosed:
		return
	case len(s.queue) >= eventQueue:
		s.overrun = true
	default:
		s.queue = append(s.queue, ev)
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Receive blocks until events arrive, the deadline passes or the
// subscription is closed.
func (s *events) Receive(buf []kernel.Event) ([]kernel.Event, error) {
	for {
		s.mu.Lock()
		switch {
		case s.isClosed:
			s.mu.Unlock()
			return buf, net.ErrClosed
		case s.overrun:
			s.overrun, s.queue = false, nil
			s.mu.Unlock()
			return buf, kernel.ErrOverrun
		case len(s.queue) > 0:
			n := min(len(s.queue), 256)
			buf = append(buf, s.queue[:n]...)
			s.queue = s.queue[n:]
			s.mu.Unlock()
			return buf, nil
		}
		deadline := s.deadline
		s.mu.Unlock()
		var expired <-chan time.Time
		if !deadline.IsZero() {
			d := time.Until(deadline)
			if d <= 0 {
				return buf, os.ErrDeadlineExceeded
			}
			expired = time.After(d)
		}
		select {
		case <-s.wake:
		case <-s.closed:
		case <-expired:
			return buf, os.ErrDeadlineExceeded
		}
	}
}

func (s *events) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deadline = t
	select {
	case s.wake <- struct{}{}: // a Receive under way looks again
	default:
	}
	return nil
}

func (s *events) Pause() error  { return s.setPaused(true) }
func (s *events) Resume() error { return s.setPaused(false) }

func (s *events) setPaused(p bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.paused = p
	if p {
		s.queue = nil // what the socket held is gone with it
	}
	return nil
}

func (s *events) Close() error {
	s.t.mu.Lock()
	s.t.subs = slices.DeleteFunc(s.t.subs, func(x *events) bool { return x == s })
	s.t.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.isClosed {
		s.isClosed = true
		close(s.closed)
	}
	return nil
}
