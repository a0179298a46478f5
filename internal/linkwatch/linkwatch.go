// Package linkwatch follows the kernel's network links (and addresses) through
// rtnetlink: the state of every link of the namespace first, then every
// change. The VRRP trackers and the sync links' carrier watch both use it.
package linkwatch

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Update is a link's state as the kernel reports it.
type Update struct {
	Name  string
	Index int
	// Up: administratively up with carrier (IFF_UP and IFF_LOWER_UP), and
	// not deleted.
	Up bool
}

// Up reports whether l is administratively up with carrier.
func Up(l netlink.Link) bool {
	a := l.Attrs()
	return a.RawFlags&unix.IFF_UP != 0 && a.RawFlags&unix.IFF_LOWER_UP != 0
}

// Watch calls fn with every link of the namespace, then with each change,
// until ctx is done; fn runs on the caller's goroutine. It subscribes
// before it lists, so that no change between the two is missed (a link
// may then be reported twice in the same state). It lists through a
// socket of its own: a dump request sent on the subscription's socket (as
// vishvananda/netlink's ListExisting does) is addressed to the link group
// too, so every other listener of the namespace receives it, and reports
// a message from a wrong sender. onErr (may be nil) gets the errors of
// the subscription, which goes on after them. Watch returns an error only
// when it could not start.
func Watch(ctx context.Context, fn func(Update), onErr func(error)) error {
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) {
			if ctx.Err() == nil && onErr != nil { // not the socket closed at the end
				onErr(err)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("subscribe to link changes: %w", err)
	}
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		fn(Update{Name: l.Attrs().Name, Index: l.Attrs().Index, Up: Up(l)})
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-updates:
			if !ok {
				return nil
			}
			a := u.Link.Attrs()
			fn(Update{Name: a.Name, Index: a.Index, Up: Up(u.Link) && u.Header.Type != unix.RTM_DELLINK})
		}
	}
}

// Host is what the engines watch of the kernel's links and addresses.
// Kernel is the namespace's rtnetlink; tests give a fake.
type Host interface {
	// Link returns an interface's current state.
	Link(name string) (Update, error)
	// Watch is the package's Watch.
	Watch(ctx context.Context, fn func(Update), onErr func(error)) error
	// WatchAddrs calls fn after each change of the namespace's addresses
	// until ctx is done; fn runs on the caller's goroutine. onErr (may be
	// nil) gets the subscription's errors; WatchAddrs returns an error
	// only when it could not start.
	WatchAddrs(ctx context.Context, fn func(), onErr func(error)) error
	// Addrs returns the addresses of every interface.
	Addrs() ([]netip.Addr, error)
}

// Kernel is the Host of the namespace the process runs in.
var Kernel Host = kernel{}

type kernel struct{}

func (kernel) Link(name string) (Update, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return Update{Name: name}, err
	}
	return Update{Name: name, Index: l.Attrs().Index, Up: Up(l)}, nil
}

func (kernel) Watch(ctx context.Context, fn func(Update), onErr func(error)) error {
	return Watch(ctx, fn, onErr)
}

func (kernel) WatchAddrs(ctx context.Context, fn func(), onErr func(error)) error {
	updates := make(chan netlink.AddrUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	err := netlink.AddrSubscribeWithOptions(updates, done, netlink.AddrSubscribeOptions{
		ErrorCallback: func(err error) {
			if onErr != nil && ctx.Err() == nil {
				onErr(err)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("address watch: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-updates:
			if !ok {
				return nil
			}
			fn()
		}
	}
}

func (kernel) Addrs() ([]netip.Addr, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}
