package vrrp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/ctha/ctha/addr"
)

// routeHolder is what reconcileVIPs needs of an instance's routes and
// rules, when its VIPs manager holds some (extrasVIPs).
type routeHolder interface {
	// CheckRoutes describes the routes and rules the kernel lacks and
	// holds. It is safe to call from another goroutine than the group's
	// (the route checker), concurrently with the other methods.
	CheckRoutes() (routeReport, error)
	RoutesUp() error
	RoutesDown() error
}

// extraSet is the virtual IPs of one interface and family other than
// the instance's own list.
type extraSet struct {
	iface string
	vips  []netip.Prefix
	m     *addr.Manager
}

// extrasVIPs is an instance's addresses when it has keepalived's extras:
// VIPs on other interfaces, excluded VIPs, routes and rules. Up adds the
// VIPs, then the routes and rules; Down removes them in reverse order.
type extrasVIPs struct {
	main   VIPs
	noMain bool // the instance's own interface holds no VIP
	extras []*extraSet
	rs     *routeSet // nil: no routes nor rules
}

// newExtrasVIPs wraps main with the instance's extras; it owns main
// from then on.
func newExtrasVIPs(main VIPs, in Instance, log *slog.Logger) (_ VIPs, err error) {
	x := &extrasVIPs{main: main, noMain: len(in.VIPs) == 0}
	defer func() {
		if err != nil {
			x.Close()
		}
	}()
	for _, e := range in.ExtraVIPs {
		i := slices.IndexFunc(x.extras, func(s *extraSet) bool {
			return s.iface == e.Interface && s.vips[0].Addr().Is4() == e.Prefix.Addr().Is4()
		})
		if i < 0 {
			x.extras = append(x.extras, &extraSet{iface: e.Interface})
			i = len(x.extras) - 1
		}
		x.extras[i].vips = append(x.extras[i].vips, e.Prefix)
	}
	for _, s := range x.extras {
		s.m, err = addr.New(addr.Config{
			Interface: s.iface, VRID: in.VRID, VIPs: s.vips,
			GARP: addr.GARP{Repeat: in.GARP.Repeat, Interval: in.GARP.Interval,
				Delay: in.GARP.Delay, Refresh: in.GARP.Refresh},
		}, log)
		if err != nil {
			return nil, fmt.Errorf("virtual IPs on %s: %w", s.iface, err)
		}
	}
	if len(in.Routes)+len(in.Rules) > 0 {
		if x.rs, err = newRouteSet(in); err != nil {
			return nil, err
		}
	}
	return x, nil
}

func (x *extrasVIPs) Up() (time.Time, error) {
	first, err := x.main.Up()
	errs := []error{err}
	for _, s := range x.extras {
		t, err := s.m.Up()
		if first.IsZero() {
			first = t
		}
		errs = append(errs, err)
	}
	if x.rs != nil {
		errs = append(errs, x.rs.up())
	}
	return first, errors.Join(errs...)
}

func (x *extrasVIPs) Down() error {
	var errs []error
	if x.rs != nil {
		errs = append(errs, x.rs.down())
	}
	for _, s := range x.extras {
		errs = append(errs, s.m.Down())
	}
	return errors.Join(append(errs, x.main.Down())...)
}

func (x *extrasVIPs) Announce() error {
	var errs []error
	if err := x.main.Announce(); !x.noMain || !errors.Is(err, addr.ErrNotUp) {
		errs = append(errs, err)
	}
	for _, s := range x.extras {
		if err := s.m.Announce(); !errors.Is(err, addr.ErrNotUp) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (x *extrasVIPs) Present() ([]netip.Prefix, error) {
	out, err := x.main.Present()
	errs := []error{err}
	for _, s := range x.extras {
		p, err := s.m.Present()
		out = append(out, p...)
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

// RemoveStale removes what a crashed run left: addresses, then routes and
// rules (only the addresses are returned).
func (x *extrasVIPs) RemoveStale() ([]netip.Prefix, error) {
	out, err := x.main.RemoveStale()
	errs := []error{err}
	for _, s := range x.extras {
		p, err := addr.RemoveStale(s.iface, s.vips)
		out = append(out, p...)
		errs = append(errs, err)
	}
	if x.rs != nil {
		errs = append(errs, x.rs.down())
	}
	return out, errors.Join(errs...)
}

// Retire removes the addresses next does not place on the same
// interface (a VIP moved from wan to lan goes from wan) and closes. The
// routes and rules stay: a reload that changes them needs a restart.
func (x *extrasVIPs) Retire(next Instance) error {
	errs := []error{x.main.Retire(next)}
	for _, s := range x.extras {
		keep := next.vipsOn(s.iface)
		var drop []netip.Prefix
		for _, p := range s.vips {
			if !slices.Contains(keep, p) {
				drop = append(drop, p)
			}
		}
		if len(drop) > 0 {
			_, err := addr.RemoveStale(s.iface, drop)
			errs = append(errs, err)
		}
	}
	return errors.Join(append(errs, x.closeExtras())...)
}

func (x *extrasVIPs) Close() error {
	return errors.Join(x.main.Close(), x.closeExtras())
}

func (x *extrasVIPs) closeExtras() error {
	var errs []error
	for _, s := range x.extras {
		if s.m != nil {
			errs = append(errs, s.m.Close())
		}
	}
	if x.rs != nil {
		x.rs.close()
	}
	return errors.Join(errs...)
}

// CheckRoutes may run on another goroutine than the other methods.
func (x *extrasVIPs) CheckRoutes() (routeReport, error) {
	if x.rs == nil {
		return routeReport{}, nil
	}
	return x.rs.check()
}

func (x *extrasVIPs) RoutesUp() error {
	if x.rs == nil || x.rs.nl == nil {
		return nil
	}
	return x.rs.up()
}

func (x *extrasVIPs) RoutesDown() error {
	if x.rs == nil || x.rs.nl == nil {
		return nil
	}
	return x.rs.down()
}

var (
	_ VIPs        = (*extrasVIPs)(nil)
	_ routeHolder = (*extrasVIPs)(nil)
)
