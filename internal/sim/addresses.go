package sim

import (
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/ctha/ctha/vrrp"
)

// Addresses is who holds the virtual IPs, for every node.
type Addresses struct {
	mu   sync.Mutex
	held map[netip.Prefix][]string // the nodes holding each prefix
	// OnUp, if set, runs when a node adds an instance's VIPs, before Up
	// returns: the moment the node starts to attract the traffic.
	OnUp func(node, instance string)
}

// NewAddresses returns addresses nobody holds.
func NewAddresses() *Addresses { return &Addresses{held: map[netip.Prefix][]string{}} }

// Holders returns the nodes that hold p.
func (a *Addresses) Holders(p netip.Prefix) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.held[p])
}

// Manager returns a node's vrrp.Options.NewVIPs.
func (a *Addresses) Manager(node string) func(vrrp.Instance, *slog.Logger) (vrrp.VIPs, error) {
	return func(in vrrp.Instance, _ *slog.Logger) (vrrp.VIPs, error) {
		return &vips{a: a, node: node, in: in.Name, prefixes: slices.Clone(in.VIPs)}, nil
	}
}

// Drop removes every address a node holds (its interface was deleted).
func (a *Addresses) Drop(node string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for p := range a.held {
		a.set(node, p, false)
	}
}

func (a *Addresses) set(node string, p netip.Prefix, on bool) {
	h := slices.DeleteFunc(a.held[p], func(n string) bool { return n == node })
	if on {
		h = append(h, node)
	}
	a.held[p] = h
}

// vips is one instance's virtual addresses on one node.
type vips struct {
	a        *Addresses
	node, in string
	prefixes []netip.Prefix
}

func (v *vips) Up() (time.Time, error) {
	v.a.mu.Lock()
	for _, p := range v.prefixes {
		v.a.set(v.node, p, true)
	}
	onUp := v.a.OnUp
	v.a.mu.Unlock()
	if onUp != nil {
		onUp(v.node, v.in)
	}
	return time.Now(), nil
}

func (v *vips) Down() error {
	v.a.mu.Lock()
	defer v.a.mu.Unlock()
	for _, p := range v.prefixes {
		v.a.set(v.node, p, false)
	}
	return nil
}

func (v *vips) Announce() error { return nil }

func (v *vips) Present() ([]netip.Prefix, error) {
	v.a.mu.Lock()
	defer v.a.mu.Unlock()
	var out []netip.Prefix
	for _, p := range v.prefixes {
		if slices.Contains(v.a.held[p], v.node) {
			out = append(out, p)
		}
	}
	return out, nil
}

func (v *vips) RemoveStale() ([]netip.Prefix, error) {
	present, _ := v.Present()
	return present, v.Down()
}

func (v *vips) Retire(next vrrp.Instance) error {
	keep := append([]netip.Prefix(nil), next.VIPs...)
	for _, e := range next.ExtraVIPs {
		keep = append(keep, e.Prefix)
	}
	v.a.mu.Lock()
	defer v.a.mu.Unlock()
	for _, p := range v.prefixes {
		if !slices.Contains(keep, p) {
			v.a.set(v.node, p, false)
		}
	}
	return nil
}

func (v *vips) Close() error { return nil }
