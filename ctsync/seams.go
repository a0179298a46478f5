package ctsync

import (
	"context"
	"net/netip"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
)

// The engine's seams: what it needs of the kernel's conntrack table and
// of the sync links' sockets. Package kernel's netlink sockets and UDP
// sockets by default (Options); tests give a table and a network of their
// own, so that a pair of engines runs in one process.

// Kernel is the conntrack table.
type Kernel interface {
	// EnsureEvents turns the kernel's conntrack events on.
	EnsureEvents() error
	// Dial opens a connection for dumps and writes.
	Dial() (KernelConn, error)
	// Listen subscribes to the flow (and expectation) events.
	Listen(opts kernel.ListenOptions) (KernelEvents, error)
	// TableCount returns how many entries the table holds, and how many
	// it can.
	TableCount() (count, max int, err error)
}

// KernelConn dumps and writes the table (a *kernel.Conn).
type KernelConn interface {
	Dump(ctx context.Context, fn func(ct.Flow) bool) error
	// Get calls fn with the entry of each key the table holds, and
	// returns how many it lacks.
	Get(ctx context.Context, keys []ct.Key, fn func(ct.Flow)) (missing int, err error)
	DumpExpect(ctx context.Context) ([]ct.Expect, error)
	Write(ctx context.Context, op kernel.Op, flows []ct.Flow, opts kernel.WriteOptions) (kernel.WriteResult, error)
	WriteExpect(ctx context.Context, op kernel.Op, exps []ct.Expect) ([]error, error)
	// PortID is the connection's netlink port: the events its writes
	// cause carry it (ListenOptions.IgnorePortID).
	PortID() uint32
	Close() error
}

// KernelEvents is the table's event subscription (a *kernel.Listener).
type KernelEvents interface {
	// Receive blocks until events arrive, the read deadline passes or the
	// subscription is closed; an overrun is kernel.ErrOverrun.
	Receive(buf []kernel.Event) ([]kernel.Event, error)
	SetReadDeadline(t time.Time) error
	// Pause stops the events (a large write of the engine's own); Resume
	// starts them again.
	Pause() error
	Resume() error
	Close() error
}

// PacketConn is a sync link's socket (a *net.UDPConn).
type PacketConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
	Close() error
}

// netlinkKernel is the kernel's table through package kernel.
type netlinkKernel struct{}

func (netlinkKernel) EnsureEvents() error { return kernel.EnsureEvents() }

func (netlinkKernel) Dial() (KernelConn, error) {
	c, err := kernel.Dial()
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (netlinkKernel) Listen(opts kernel.ListenOptions) (KernelEvents, error) {
	l, err := kernel.Listen(opts)
	if err != nil {
		return nil, err
	}
	return l, nil
}

func (netlinkKernel) TableCount() (int, int, error) { return kernel.TableCount() }
