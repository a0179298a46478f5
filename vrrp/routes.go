package vrrp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/mdlayher/netlink"
	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// routeSet is an instance's virtual routes and rules in the kernel
// (rtnetlink). Its methods are called from the instance's group
// goroutine only.
type routeSet struct {
	nl     *vnl.Handle
	dump   *vnl.Handle // route dumps (strict checking)
	routes []Route
	rules  []Rule
}

func (r Route) text() string {
	s := r.To.String()
	if r.Via.IsValid() {
		s += " via " + r.Via.String()
	}
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	if r.Table != 0 {
		s += fmt.Sprintf(" table %d", r.Table)
	}
	if r.Metric != 0 {
		s += fmt.Sprintf(" metric %d", r.Metric)
	}
	return s
}

func (r Rule) text() string {
	s := "rule"
	if r.From.IsValid() {
		s += " from " + r.From.String()
	}
	if r.To.IsValid() {
		s += " to " + r.To.String()
	}
	s += fmt.Sprintf(" table %d", r.Table)
	if r.Priority != 0 {
		s += fmt.Sprintf(" priority %d", r.Priority)
	}
	return s
}

func ipNet(p netip.Prefix) *net.IPNet {
	if !p.IsValid() {
		return nil
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func familyOfPrefix(p netip.Prefix) int {
	if p.Addr().Is4() {
		return vnl.FAMILY_V4
	}
	return vnl.FAMILY_V6
}

func tableOrMain(t int) int {
	if t == 0 {
		return unix.RT_TABLE_MAIN
	}
	return t
}

// nlRoute builds the kernel's form of r.
func (s *routeSet) nlRoute(r Route) (*vnl.Route, error) {
	nr := &vnl.Route{Dst: ipNet(r.To), Table: tableOrMain(r.Table), Priority: r.Metric, Family: familyOfPrefix(r.To)}
	if r.Via.IsValid() {
		nr.Gw = r.Via.AsSlice()
	}
	if r.Dev != "" {
		l, err := s.nl.LinkByName(r.Dev)
		if err != nil {
			return nil, fmt.Errorf("route %s: interface %s: %w", r.text(), r.Dev, err)
		}
		nr.LinkIndex = l.Attrs().Index
	}
	return nr, nil
}

func (s *routeSet) nlRule(r Rule) *vnl.Rule {
	nr := vnl.NewRule()
	p := r.From
	if !p.IsValid() {
		p = r.To
	}
	nr.Family = familyOfPrefix(p)
	nr.Src, nr.Dst = ipNet(r.From), ipNet(r.To)
	nr.Table = r.Table
	if r.Priority != 0 {
		nr.Priority = r.Priority
	}
	return nr
}

// hasRoute reports whether the kernel holds r (same destination, table,
// gateway, interface when given, metric when given).
func (s *routeSet) hasRoute(r Route) (bool, error) {
	want, err := s.nlRoute(r)
	if err != nil {
		return false, nil // its interface is gone: so is the route
	}
	list, err := s.dump.RouteListFiltered(want.Family, &vnl.Route{Table: want.Table}, vnl.RT_FILTER_TABLE)
	if err != nil {
		return false, fmt.Errorf("list routes: %w", err)
	}
	for _, got := range list {
		if prefixOf(got.Dst, want.Family) != r.To {
			continue
		}
		if r.Via.IsValid() && !got.Gw.Equal(want.Gw) && !viaMultipath(got, want.Gw) {
			continue
		}
		if want.LinkIndex != 0 && got.LinkIndex != want.LinkIndex {
			continue
		}
		if r.Metric != 0 && got.Priority != r.Metric {
			continue
		}
		return true, nil
	}
	return false, nil
}

func viaMultipath(r vnl.Route, gw net.IP) bool {
	for _, nh := range r.MultiPath {
		if nh.Gw.Equal(gw) {
			return true
		}
	}
	return false
}

// prefixOf converts a route's destination (nil: the default route).
func prefixOf(n *net.IPNet, family int) netip.Prefix {
	if n == nil {
		if family == vnl.FAMILY_V4 {
			return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		}
		return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits)
}

// hasRule reports whether the kernel holds r.
func (s *routeSet) hasRule(r Rule) (bool, error) {
	want := s.nlRule(r)
	list, err := s.nl.RuleListFiltered(want.Family, &vnl.Rule{Table: r.Table}, vnl.RT_FILTER_TABLE)
	if err != nil {
		return false, fmt.Errorf("list rules: %w", err)
	}
	for _, got := range list {
		if prefixOf2(got.Src) != r.From || prefixOf2(got.Dst) != r.To {
			continue
		}
		if r.Priority != 0 && got.Priority != r.Priority {
			continue
		}
		return true, nil
	}
	return false, nil
}

// prefixOf2 converts a rule's selector (nil: any).
func prefixOf2(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.Prefix{}
	}
	return prefixOf(n, 0)
}

// missing returns the routes and rules the kernel lacks, as text.
func (s *routeSet) missing() ([]string, error) {
	return s.filter(false)
}

// present returns the routes and rules the kernel holds, as text.
func (s *routeSet) present() ([]string, error) {
	return s.filter(true)
}

func (s *routeSet) filter(held bool) ([]string, error) {
	var out []string
	var errs []error
	for _, r := range s.routes {
		ok, err := s.hasRoute(r)
		if err != nil {
			errs = append(errs, err)
		} else if ok == held {
			out = append(out, r.text())
		}
	}
	for _, r := range s.rules {
		ok, err := s.hasRule(r)
		if err != nil {
			errs = append(errs, err)
		} else if ok == held {
			out = append(out, r.text())
		}
	}
	return out, errors.Join(errs...)
}

// up installs every route (replacing, so it is idempotent) and every rule
// the kernel lacks. Every one is tried; the errors are joined.
func (s *routeSet) up() error {
	var errs []error
	for _, r := range s.routes {
		nr, err := s.nlRoute(r)
		if err == nil {
			err = s.nl.RouteReplace(nr)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("add route %s: %w", r.text(), err))
		}
	}
	for _, r := range s.rules {
		ok, err := s.hasRule(r)
		if err == nil && !ok {
			if err = s.nl.RuleAdd(s.nlRule(r)); errors.Is(err, unix.EEXIST) {
				err = nil
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("add %s: %w", r.text(), err))
		}
	}
	return errors.Join(errs...)
}

// down removes the rules and routes (absent ones are fine).
func (s *routeSet) down() error {
	var errs []error
	for _, r := range s.rules {
		// RuleDel removes one match; a rule added twice goes too.
		for range 8 {
			err := s.nl.RuleDel(s.nlRule(r))
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
				break
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", r.text(), err))
				break
			}
		}
	}
	for _, r := range s.routes {
		ok, err := s.hasRoute(r)
		if err != nil || !ok {
			continue
		}
		nr, err := s.nlRoute(r)
		if err == nil {
			err = s.nl.RouteDel(nr)
		}
		if err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("remove route %s: %w", r.text(), err))
		}
	}
	return errors.Join(errs...)
}

// rtnetlink multicast groups the route watch joins: links (a link that
// comes back needs its routes again), IPv4 and IPv6 routes and rules.
const routeGroups = unix.RTMGRP_LINK | unix.RTMGRP_IPV4_ROUTE | unix.RTMGRP_IPV6_ROUTE |
	unix.RTMGRP_IPV4_RULE | 1<<(unix.RTNLGRP_IPV6_RULE-1)

// routeKey identifies a route in a change message: what the kernel
// deletes a route by.
type routeKey struct {
	table int
	to    netip.Prefix
}

// watchRoutes calls fn after each change that may concern routes: a
// deletion of one of routes (in the kernel's change messages), any rule
// or link change, a lost message (ENOBUFS), until ctx is done. Other
// route changes (a BGP daemon's churn) do not wake anybody. It returns an
// error only when it could not start.
func watchRoutes(ctx context.Context, routes []routeKey, fn func(), onErr func(error)) error {
	c, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{Groups: routeGroups})
	if err != nil {
		return fmt.Errorf("route watch: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	defer c.Close()
	for {
		msgs, err := c.Receive()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && !errors.Is(err, unix.ENOBUFS) {
			if onErr != nil {
				onErr(err)
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			continue
		}
		if err != nil || slices.ContainsFunc(msgs, func(m netlink.Message) bool { return concerns(m, routes) }) {
			fn()
		}
	}
}

// concerns reports whether a change message may concern the routes.
func concerns(m netlink.Message, routes []routeKey) bool {
	switch m.Header.Type {
	case unix.RTM_NEWROUTE:
		return false // a route added never makes one of ours missing
	case unix.RTM_DELROUTE:
		k, ok := parseRouteKey(m.Data)
		return !ok || slices.Contains(routes, k)
	}
	return true // links and rules
}

// parseRouteKey reads a route message's table and destination.
func parseRouteKey(b []byte) (routeKey, bool) {
	if len(b) < unix.SizeofRtMsg {
		return routeKey{}, false
	}
	family, dstLen, table := b[0], int(b[1]), int(b[4])
	var dst netip.Addr
	if family == unix.AF_INET {
		dst = netip.IPv4Unspecified()
	} else {
		dst = netip.IPv6Unspecified()
	}
	ad, err := netlink.NewAttributeDecoder(b[unix.SizeofRtMsg:])
	if err != nil {
		return routeKey{}, false
	}
	for ad.Next() {
		switch ad.Type() {
		case unix.RTA_DST:
			a, ok := netip.AddrFromSlice(ad.Bytes())
			if !ok {
				return routeKey{}, false
			}
			dst = a
		case unix.RTA_TABLE:
			table = int(ad.Uint32())
		}
	}
	if ad.Err() != nil {
		return routeKey{}, false
	}
	return routeKey{table: table, to: netip.PrefixFrom(dst.Unmap(), dstLen)}, true
}
