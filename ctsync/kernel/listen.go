package kernel

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// ErrOverrun is returned (wrapped) by Receive when the kernel reported
// ENOBUFS: its events did not fit the socket's receive buffer and some are
// lost. The caller must resync from a dump; the Listener stays usable.
var ErrOverrun = errors.New("conntrack events lost (ENOBUFS): resync from a dump")

// DefaultReadBuffer is ListenOptions.ReadBuffer when it is 0: it held a
// burst of 100k events in the lab.
const DefaultReadBuffer = 64 << 20

// ListenOptions tune Listen.
type ListenOptions struct {
	// ReadBuffer is the socket's receive buffer in bytes (DefaultReadBuffer
	// if 0). It is forced past net.core.rmem_max when the process has
	// CAP_NET_ADMIN.
	ReadBuffer int
	// IgnorePortID is the port id of our write socket (Conn.PortID): events
	// caused by its writes are dropped, in the kernel (a socket filter) and
	// again on receipt. 0 drops nothing.
	IgnorePortID uint32
	// IgnorePortIDs are more port ids to drop, for several write Conns.
	IgnorePortIDs []uint32
	// Filter drops, in the kernel, the flow events it excludes.
	Filter EventFilter
	// Expectations also joins the expectation groups (NEW and DESTROY):
	// Receive then returns expectation events too, in order with the
	// flow events.
	Expectations bool
}

// Listener receives NEW, UPDATE and DESTROY events of flows.
type Listener struct {
	nl     *netlink.Conn
	ignore []uint32
	closed atomic.Bool
	batch  *mmsgBatch // Receive's buffers
}

// flowGroups are the groups of flow events.
var flowGroups = []netfilter.NetlinkGroup{netfilter.GroupCTNew, netfilter.GroupCTUpdate, netfilter.GroupCTDestroy}

// Listen opens a NETLINK_NETFILTER socket in the calling thread's network
// namespace and joins the conntrack NEW, UPDATE and DESTROY groups. It
// never sets NETLINK_NO_ENOBUFS: a lost event must be known. The kernel
// emits events only for flows created while a listener exists unless
// net.netfilter.nf_conntrack_events is 1 (see EnsureEvents).
func Listen(opts ListenOptions) (*Listener, error) {
	var ignore []uint32
	for _, id := range append([]uint32{opts.IgnorePortID}, opts.IgnorePortIDs...) {
		if id != 0 {
			ignore = append(ignore, id)
		}
	}
	nl, err := dialNetfilter()
	if err != nil {
		return nil, fmt.Errorf("listen for conntrack events: %w", err)
	}
	l := &Listener{nl: nl, ignore: ignore}
	if err := l.setup(opts); err != nil {
		nl.Close()
		return nil, fmt.Errorf("listen for conntrack events: %w", err)
	}
	return l, nil
}

func (l *Listener) setup(opts ListenOptions) error {
	size := opts.ReadBuffer
	if size <= 0 {
		size = DefaultReadBuffer
	}
	if err := setReadBuffer(l.nl, size); err != nil {
		return err
	}
	if len(l.ignore) > 0 || !opts.Filter.empty() {
		prog, err := opts.Filter.program(l.ignore)
		if err != nil {
			return fmt.Errorf("assemble event filter: %w", err)
		}
		if err := l.nl.SetBPF(prog); err != nil {
			return fmt.Errorf("set event filter: %w", err)
		}
	}
	groups := flowGroups
	if opts.Expectations {
		groups = append(groups, netfilter.GroupCTExpNew, netfilter.GroupCTExpDestroy)
	}
	for _, g := range groups {
		if err := l.nl.JoinGroup(uint32(g)); err != nil {
			return fmt.Errorf("join group %d: %w", g, err)
		}
	}
	return nil
}

// portIDFilter is a socket filter that drops messages whose nlmsg_pid is
// one of ids. Every event is a datagram of its own, so the filter sees its
// netlink header at offset 0. nlmsg_pid is in host byte order; BPF loads
// words big-endian.
func portIDFilter(ids []uint32) []bpf.RawInstruction {
	raw, err := EventFilter{}.program(ids)
	if err != nil {
		panic(fmt.Sprintf("assemble port id filter: %v", err)) // static program
	}
	return raw
}

// Pause leaves the flow event groups (not the expectation groups): while
// no socket in the namespace is subscribed to them, the kernel builds no
// flow events at all, and writes a large batch of flows two to four times
// faster. The flow events of the pause are lost, not queued: the caller
// must resync from a dump after Resume. Events received before Pause are
// still returned by Receive. Safe to call while Receive blocks.
func (l *Listener) Pause() error {
	var errs []error
	for _, g := range flowGroups {
		if err := l.nl.LeaveGroup(uint32(g)); err != nil {
			errs = append(errs, fmt.Errorf("leave group %d: %w", g, err))
		}
	}
	return errors.Join(errs...)
}

// Resume joins the flow event groups again after Pause.
func (l *Listener) Resume() error {
	var errs []error
	for _, g := range flowGroups {
		if err := l.nl.JoinGroup(uint32(g)); err != nil {
			errs = append(errs, fmt.Errorf("join group %d: %w", g, err))
		}
	}
	return errors.Join(errs...)
}

// ReadBuffer returns the socket's receive buffer size as the kernel set it.
func (l *Listener) ReadBuffer() (int, error) { return l.nl.ReadBuffer() }

// SetReadDeadline makes a blocked or later Receive return an error wrapping
// os.ErrDeadlineExceeded at t; the zero time clears it.
func (l *Listener) SetReadDeadline(t time.Time) error { return l.nl.SetReadDeadline(t) }

// Batches of datagrams Receive reads with one system call: slots and the
// size of each. An event is a few hundred bytes; one that does not fit a
// slot is reported (truncated), never passed on cut.
const (
	batchSlots = 64
	slotSize   = 4096
)

// Receive blocks for the next events and appends them to buf: those of all
// the datagrams already queued (the kernel sends one event per datagram),
// read in batches, up to a few hundred events. Events caused by the
// ignored port ids are dropped. It returns an error wrapping ErrOverrun
// when the kernel reported lost events, and one wrapping net.ErrClosed
// after Close. A message that cannot be decoded is reported as an error
// after the events decoded with it; the Listener stays usable after
// either. Receive is not safe for concurrent use.
func (l *Listener) Receive(buf []Event) ([]Event, error) {
	rc, err := l.nl.SyscallConn()
	if err != nil {
		return buf, l.receiveError(err)
	}
	if l.batch == nil {
		l.batch = newMmsgBatch(batchSlots, slotSize)
	}
	var bad, rerr error
	got := 0
	err = rc.Read(func(fd uintptr) bool {
		for got < receiveMore {
			n, err := l.batch.recv(int(fd))
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return got > 0 // none yet: wait until readable
			case err != nil:
				rerr = err
				return true
			}
			for i := range n {
				d, trunc := l.batch.datagram(i)
				if trunc {
					bad = fmt.Errorf("event datagram truncated at %d bytes", len(d))
					continue
				}
				buf = l.decodeDatagram(buf, d, &bad)
			}
			got += n
			if n < batchSlots {
				return true
			}
		}
		return true
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return buf, l.receiveError(err)
	}
	if bad != nil {
		return buf, fmt.Errorf("receive conntrack events: %w", bad)
	}
	return buf, nil
}

// receiveMore bounds the datagrams Receive takes in one call.
const receiveMore = 256

func (l *Listener) receiveError(err error) error {
	switch {
	case l.closed.Load():
		return fmt.Errorf("receive conntrack events: %w", net.ErrClosed)
	case errors.Is(err, unix.ENOBUFS):
		return fmt.Errorf("receive conntrack events: %w", ErrOverrun)
	}
	return fmt.Errorf("receive conntrack events: %w", err)
}

// decode appends m's event to buf unless it is ignored; a message that is
// not an event of interest is skipped, one that cannot be decoded is
// recorded in bad.
func (l *Listener) decode(buf []Event, m netlink.Message, bad *error) []Event {
	if l.ignored(m.Header.PID) {
		return buf
	}
	ev, err := decodeEvent(m)
	switch {
	case errors.Is(err, errNotFlow):
	case err != nil:
		*bad = err
	default:
		buf = append(buf, ev)
	}
	return buf
}

// decodeDatagram appends the events of a datagram's netlink messages.
func (l *Listener) decodeDatagram(buf []Event, d []byte, bad *error) []Event {
	for len(d) > 0 {
		var m netlink.Message
		if err := m.UnmarshalBinary(d); err != nil {
			*bad = fmt.Errorf("netlink message in %d bytes: %w: %w", len(d), errMalformed, err)
			return buf
		}
		buf = l.decode(buf, m, bad)
		d = d[min(len(d), (int(m.Header.Length)+3)&^3):]
	}
	return buf
}

func (l *Listener) ignored(pid uint32) bool {
	for _, id := range l.ignore {
		if pid == id {
			return true
		}
	}
	return false
}

// Close closes the socket and unblocks Receive.
func (l *Listener) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	return l.nl.Close()
}
