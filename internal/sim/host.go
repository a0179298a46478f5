package sim

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/ctha/ctha/internal/linkwatch"
)

// Host is a node's network links (linkwatch.Host): each one up unless
// SetLink took it down. Its addresses never change on their own.
type Host struct {
	// Addresses are the node's own (not its VIPs).
	Addresses []netip.Addr
	// OnDelete, if set, runs when a link is deleted (Recreate), after the
	// watchers are told: the addresses on it go with it.
	OnDelete func(name string)

	mu    sync.Mutex
	links map[string]linkwatch.Update
	subs  []chan linkwatch.Update
	next  int // the next interface index
}

var _ linkwatch.Host = (*Host)(nil)

// NewHost returns a host with the named links, up.
func NewHost(links ...string) *Host {
	h := &Host{links: map[string]linkwatch.Update{}, next: 2}
	for _, name := range links {
		h.links[name] = linkwatch.Update{Name: name, Index: h.next, Up: true}
		h.next++
	}
	return h
}

// SetLink takes a link down or brings it up, and tells the watchers.
func (h *Host) SetLink(name string, up bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	u, ok := h.links[name]
	if !ok {
		panic("sim: no link " + name)
	}
	u.Up = up
	h.links[name] = u
	for _, c := range h.subs {
		c <- u // buffered beyond any test's changes
	}
}

// Delete deletes a link (as ifupdown or networkd rebuilding a VLAN or a
// bond): the watchers see it go, and the addresses on it go with it.
func (h *Host) Delete(name string) {
	h.SetLink(name, false)
	if h.OnDelete != nil {
		h.OnDelete(name)
	}
}

// Create creates a deleted link again under its name, up, with a new
// index.
func (h *Host) Create(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	u := linkwatch.Update{Name: name, Index: h.next, Up: true}
	h.next++
	h.links[name] = u
	for _, c := range h.subs {
		c <- u
	}
}

// Link implements linkwatch.Host.
func (h *Host) Link(name string) (linkwatch.Update, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	u, ok := h.links[name]
	if !ok {
		return linkwatch.Update{Name: name}, fmt.Errorf("link %s not found", name)
	}
	return u, nil
}

// Watch implements linkwatch.Host.
func (h *Host) Watch(ctx context.Context, fn func(linkwatch.Update), _ func(error)) error {
	c := make(chan linkwatch.Update, 1024)
	h.mu.Lock()
	existing := make([]linkwatch.Update, 0, len(h.links))
	for _, u := range h.links {
		existing = append(existing, u)
	}
	h.subs = append(h.subs, c)
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.subs = slices.DeleteFunc(h.subs, func(x chan linkwatch.Update) bool { return x == c })
		h.mu.Unlock()
	}()
	slices.SortFunc(existing, func(a, b linkwatch.Update) int { return a.Index - b.Index })
	for _, u := range existing {
		fn(u)
	}
	for {
		select {
		case u := <-c:
			fn(u)
		case <-ctx.Done():
			return nil
		}
	}
}

// WatchAddrs implements linkwatch.Host: nobody else changes the
// addresses here.
func (h *Host) WatchAddrs(ctx context.Context, _ func(), _ func(error)) error {
	<-ctx.Done()
	return nil
}

// Addrs implements linkwatch.Host.
func (h *Host) Addrs() ([]netip.Addr, error) { return slices.Clone(h.Addresses), nil }
