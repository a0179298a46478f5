package vrrp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// routeSet is an instance's virtual routes and rules in the kernel
// (rtnetlink). Its methods are called from the instance's group
// goroutine only, except check (the group's route checker), which has
// handles of its own.
type routeSet struct {
	rtnl   // up's and down's; nl nil once closed
	routes []Route
	rules  []Rule
	chk    routeCheck
}

// routeCheck is the route checker's handles; close takes them away.
type routeCheck struct {
	mu sync.Mutex
	h  rtnl // nl nil once closed
}

// rtnl is a pair of rtnetlink handles: nl for changes and rule dumps,
// dump for route dumps (with strict checking, so that the kernel
// filters them; rule dumps fail with it).
type rtnl struct {
	nl, dump *vnl.Handle
}

// openRtnl opens a pair with a timeout of 5 s on each request.
func openRtnl() (p rtnl, err error) {
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	for _, h := range []**vnl.Handle{&p.nl, &p.dump} {
		if *h, err = vnl.NewHandle(unix.NETLINK_ROUTE); err != nil {
			return p, fmt.Errorf("open rtnetlink: %w", err)
		}
		if err := (*h).SetSocketTimeout(5 * time.Second); err != nil {
			return p, fmt.Errorf("set rtnetlink timeout: %w", err)
		}
	}
	// Since 4.20 the kernel then dumps only the table and protocol asked
	// for; older ones dump all, and the library filters.
	_ = p.dump.SetStrictCheck(true)
	return p, nil
}

func (p *rtnl) close() {
	if p.nl != nil {
		p.nl.Close()
	}
	if p.dump != nil {
		p.dump.Close()
	}
	p.nl, p.dump = nil, nil
}

// newRouteSet opens the handles of in's routes and rules.
func newRouteSet(in Instance) (*routeSet, error) {
	s := &routeSet{routes: in.Routes, rules: in.Rules}
	var err error
	if s.rtnl, err = openRtnl(); err != nil {
		return nil, err
	}
	if s.chk.h, err = openRtnl(); err != nil {
		s.rtnl.close()
		return nil, err
	}
	return s, nil
}

// close closes both pairs; it waits for a check under way.
func (s *routeSet) close() {
	s.rtnl.close()
	s.chk.mu.Lock()
	defer s.chk.mu.Unlock()
	s.chk.h.close()
}

// routeReport is what a check found, as text: the routes and rules the
// kernel lacks, and those it holds.
type routeReport struct {
	missing, present []string
}

// check compares the kernel with the set, on the checker's handles: it
// may run on another goroutine than up and down. After close it reports
// nothing.
func (s *routeSet) check() (routeReport, error) {
	s.chk.mu.Lock()
	defer s.chk.mu.Unlock()
	if s.chk.h.nl == nil {
		return routeReport{}, nil
	}
	h, err := s.chk.h.snapshot(s.routes, s.rules)
	if err != nil {
		return routeReport{}, err
	}
	var rep routeReport
	add := func(ok bool, text string) {
		if ok {
			rep.present = append(rep.present, text)
		} else {
			rep.missing = append(rep.missing, text)
		}
	}
	for _, r := range s.routes {
		ifindex, ok := s.chk.h.ifindex(r)
		if ok {
			_, ok = h.route(r, ifindex)
		}
		add(ok, r.text())
	}
	for _, r := range s.rules {
		add(h.hasRule(r), r.text())
	}
	return rep, nil
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

// nlRoute builds the kernel's form of r, tagged with ctha's protocol.
func (s *routeSet) nlRoute(r Route) (*vnl.Route, error) {
	nr := &vnl.Route{Dst: ipNet(r.To), Table: tableOrMain(r.Table), Priority: r.Metric,
		Family: familyOfPrefix(r.To), Protocol: RouteProtocol}
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

// nlRule builds the kernel's form of r, tagged with ctha's protocol
// (FRA_PROTOCOL: the kernel keeps it since 4.17).
func (s *routeSet) nlRule(r Rule) *vnl.Rule {
	nr := vnl.NewRule()
	nr.Family = ruleFamily(r)
	nr.Src, nr.Dst = ipNet(r.From), ipNet(r.To)
	nr.Table = r.Table
	nr.Protocol = RouteProtocol
	if r.Priority != 0 {
		nr.Priority = r.Priority
	}
	return nr
}

// ifindex is the index of r's interface: 0 when r names none, false when
// it is gone (and so are its routes).
func (p rtnl) ifindex(r Route) (int, bool) {
	if r.Dev == "" {
		return 0, true
	}
	l, err := p.nl.LinkByName(r.Dev)
	if err != nil {
		return 0, false
	}
	return l.Attrs().Index, true
}

// held is the kernel's routes and rules that carry ctha's protocol, in
// the tables and families of the set: one dump per family and table (the
// kernel filters route dumps by table and protocol since 4.20/5.3 with
// strict checking; older ones send all and the library filters), and
// one rule dump per family.
type held struct {
	routes []vnl.Route
	rules  []vnl.Rule
}

func (p rtnl) snapshot(routes []Route, rules []Rule) (held, error) {
	type key struct{ family, table int }
	var h held
	var errs []error
	seen := map[key]bool{}
	for _, r := range routes {
		k := key{familyOfPrefix(r.To), tableOrMain(r.Table)}
		if seen[k] {
			continue
		}
		seen[k] = true
		list, err := p.dump.RouteListFiltered(k.family, &vnl.Route{Table: k.table, Protocol: RouteProtocol},
			vnl.RT_FILTER_TABLE|vnl.RT_FILTER_PROTOCOL)
		if errors.Is(err, unix.ENOENT) {
			continue // a strict dump of a table that does not exist
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("list routes of table %d: %w", k.table, err))
			continue
		}
		h.routes = append(h.routes, list...)
	}
	fams := map[int]bool{}
	for _, r := range rules {
		f := ruleFamily(r)
		if fams[f] {
			continue
		}
		fams[f] = true
		list, err := p.nl.RuleListFiltered(f, nil, 0)
		if err != nil {
			errs = append(errs, fmt.Errorf("list rules: %w", err))
			continue
		}
		for _, got := range list {
			if got.Protocol == RouteProtocol {
				h.rules = append(h.rules, got)
			}
		}
	}
	return h, errors.Join(errs...)
}

// route returns the kernel's route that is r, if any.
func (h held) route(r Route, ifindex int) (vnl.Route, bool) {
	for _, got := range h.routes {
		if routeMatches(r, ifindex, got) {
			return got, true
		}
	}
	return vnl.Route{}, false
}

func (h held) hasRule(r Rule) bool {
	for _, got := range h.rules {
		if ruleMatches(r, got) {
			return true
		}
	}
	return false
}

// slot returns a route of ctha's where r goes (same family, table,
// destination and metric) but with another gateway or interface.
func (h held) slot(r Route) (vnl.Route, bool) {
	for _, got := range h.routes {
		if got.Family == familyOfPrefix(r.To) && got.Table == tableOrMain(r.Table) && prefixOf(got.Dst, got.Family) == r.To &&
			got.Priority == kernelMetric(r) {
			return got, true
		}
	}
	return vnl.Route{}, false
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

// prefixOf2 converts a rule's selector (nil: any).
func prefixOf2(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.Prefix{}
	}
	return prefixOf(n, 0)
}

// up installs every route and rule the kernel lacks, tagged with ctha's
// protocol. A route is added, never replaced: where someone else's route
// holds the same table, destination and metric, the kernel refuses it
// (EEXIST) and it is left alone (ErrRouteConflict); a route of ctha's
// there (an earlier configuration's gateway) is replaced. Every one is
// tried; the errors are joined.
func (s *routeSet) up() error {
	h, err := s.snapshot(s.routes, s.rules)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range s.routes {
		nr, err := s.nlRoute(r)
		if err == nil {
			if _, ok := h.route(r, nr.LinkIndex); ok {
				continue
			}
			err = s.nl.RouteAdd(nr)
			if errors.Is(err, unix.EEXIST) {
				if old, ok := h.slot(r); ok {
					if err = s.nl.RouteDel(delRoute(old)); err == nil {
						err = s.nl.RouteAdd(nr)
					}
				} else {
					err = ErrRouteConflict
				}
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("add route %s: %w", r.text(), err))
		}
	}
	for _, r := range s.rules {
		if h.hasRule(r) {
			continue
		}
		if err := s.nl.RuleAdd(s.nlRule(r)); err != nil {
			errs = append(errs, fmt.Errorf("add %s: %w", r.text(), err))
		}
	}
	return errors.Join(errs...)
}

// down removes the rules and routes of ctha's that are the set's: only
// objects listed with ctha's protocol and exactly the set's selectors,
// each deleted by all its fields (absent ones are fine).
func (s *routeSet) down() error {
	h, err := s.snapshot(s.routes, s.rules)
	if err != nil {
		return err
	}
	var errs []error
	for _, got := range h.rules {
		if !slices.ContainsFunc(s.rules, func(r Rule) bool { return ruleMatches(r, got) }) {
			continue
		}
		err := s.nl.RuleDel(delRule(got))
		if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("remove rule %v: %w", got, err))
		}
	}
	for _, r := range s.routes {
		ifindex, ok := s.rtnl.ifindex(r)
		if !ok {
			continue
		}
		got, ok := h.route(r, ifindex)
		if !ok {
			continue
		}
		err := s.nl.RouteDel(delRoute(got))
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

// watchMaxBackoff bounds the pause after a receive error of the route
// watch.
const watchMaxBackoff = 5 * time.Second

// routeKey identifies a route in a change message: what the kernel
// deletes a route by.
type routeKey struct {
	table int
	to    netip.Prefix
}

// watchRoutes calls fn after each change that may concern routes: a
// route added or deleted where one of routes goes, any rule
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
	var backoff time.Duration
	for {
		msgs, err := c.Receive()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && !errors.Is(err, unix.ENOBUFS) {
			if errors.Is(err, net.ErrClosed) {
				if onErr != nil {
					onErr(err)
				}
				return nil
			}
			// An error that stays would spin: report the first of a run,
			// then wait longer each time (the 5 s checks go on).
			if backoff == 0 && onErr != nil {
				onErr(err)
			}
			backoff = min(max(2*backoff, 10*time.Millisecond), watchMaxBackoff)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		if err != nil || slices.ContainsFunc(msgs, func(m netlink.Message) bool { return concerns(m, routes) }) {
			fn()
		}
	}
}

// concerns reports whether a change message may concern the routes.
func concerns(m netlink.Message, routes []routeKey) bool {
	switch m.Header.Type {
	case unix.RTM_NEWROUTE, unix.RTM_DELROUTE:
		// A route added where one of ours goes may have replaced it
		// (`ip route replace`); elsewhere, it is somebody else's churn.
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
