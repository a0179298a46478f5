package cfg

import (
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Advertisement interval limits (RFC 3768 and RFC 5798).
const (
	v3IntervalStep = 10 * time.Millisecond
	v3IntervalMax  = 4095 * v3IntervalStep // 12 bits of centiseconds
	v2IntervalMax  = 255 * time.Second
)

func (v *validator) instance(s *instanceSyntax) Instance {
	const kind = "vrrp_instance"
	in := Instance{
		Name:         s.Name,
		Priority:     uint8(v.intIn(s.Priority, "priority", DefaultPriority, 1, 255)),
		Version:      DefaultVersion,
		Preempt:      boolOr(s.Preempt, DefaultPreempt),
		PreemptDelay: v.duration(s.PreemptDelay, "preempt_delay", DefaultPreemptDelay, nonNegative),
		VirtualMAC:   boolOr(s.VirtualMAC, false),
		TrackScripts: s.TrackScripts.Val,
		GARP:         v.garp(s.GARP),
		Notify:       v.notify(s.Notify),
	}
	if v.required(s.Interface.Set, s.block, kind, "interface") && s.Interface.ok() {
		in.Interface = s.Interface.Val
		v.ifaceName(s.Interface.Range, in.Interface)
	}
	if v.required(s.VRID.Set, s.block, kind, "vrid") {
		in.VRID = uint8(v.intIn(s.VRID, "vrid", 0, 1, 255))
	}
	if s.Version.ok() {
		if s.Version.Val != 2 && s.Version.Val != 3 {
			v.errorf(s.Version.Range, "version must be 2 or 3, got %d", s.Version.Val)
		} else {
			in.Version = s.Version.Val
		}
	}
	in.AdvertInterval = v.advertInterval(s.AdvertInterval, in.Version)
	if s.PreemptDelay.ok() && in.PreemptDelay > 0 && !in.Preempt {
		v.warnf(s.PreemptDelay.Range, "preempt_delay has no effect with preempt = false")
	}
	in.VIPs, in.ExtraVIPs, in.Family = v.vips(s)
	v.instanceExtras(s, &in)
	if in.Family == IPv6 && in.Version == 2 {
		r := s.block.DefRange
		if s.Version.Set {
			r = s.Version.Range
		}
		v.errorf(r, "VRRP version 2 carries IPv4 only; IPv6 virtual IPs need version = 3")
	}
	for i, p := range s.UnicastPeers.Val {
		a, err := netip.ParseAddr(p)
		switch {
		case err != nil:
			v.errorf(s.UnicastPeers.elem(i), "unicast peer %q is not an IP address", p)
		case !a.IsGlobalUnicast() && !a.IsLinkLocalUnicast():
			v.errorf(s.UnicastPeers.elem(i), "unicast peer %s is not a unicast address", a)
		case in.Family != 0 && familyOf(a) != in.Family:
			v.errorf(s.UnicastPeers.elem(i), "unicast peer %s is %s but the virtual IPs are %s", a, familyOf(a), in.Family)
		default:
			in.UnicastPeers = append(in.UnicastPeers, a.Unmap())
		}
	}
	in.Auth = v.auth(s, in.Version)
	for _, t := range s.TrackIfaces {
		v.ifaceName(t.NameRange, t.Name)
		in.TrackInterface = append(in.TrackInterface, TrackInterface{
			Name:   t.Name,
			Weight: v.intIn(t.Weight, "weight", 0, -254, 254),
		})
	}
	return in
}

// advertInterval checks the interval against what the version can carry.
func (v *validator) advertInterval(a attr[string], version int) time.Duration {
	d := v.duration(a, "advert_interval", DefaultAdvertInterval, positive)
	if !a.ok() {
		return d
	}
	switch version {
	case 2:
		if d%time.Second != 0 || d > v2IntervalMax {
			v.errorf(a.Range, "advert_interval for VRRP version 2 must be whole seconds from 1s to 255s, got %q", a.Val)
			return DefaultAdvertInterval
		}
	case 3:
		if d%v3IntervalStep != 0 || d > v3IntervalMax {
			v.errorf(a.Range, "advert_interval for VRRP version 3 must be a multiple of 10ms from 10ms to 40.95s, got %q", a.Val)
			return DefaultAdvertInterval
		}
	}
	return d
}

// vips parses the virtual IPs; the advertised ones (all but the
// excluded) must all be of one family. An entry "ADDR/LEN dev IFACE"
// puts the address on another interface than the instance's.
func (v *validator) vips(s *instanceSyntax) ([]netip.Prefix, []ExtraVIP, Family) {
	a := s.VirtualIPs
	if !v.required(a.Set, s.block, "vrrp_instance", "virtual_ips") || a.Bad {
		return nil, nil, 0
	}
	if len(a.Val) == 0 {
		v.errorf(a.Range, "virtual_ips must hold at least one address")
		return nil, nil, 0
	}
	var (
		out    []netip.Prefix
		extras []ExtraVIP
		family Family
		first  netip.Prefix
		seen   = map[netip.Addr]bool{}
	)
	for i, str := range a.Val {
		p, dev, ok := v.vipEntry(a.elem(i), "virtual IP", str, seen)
		if !ok {
			continue
		}
		f := familyOf(p.Addr())
		if family == 0 {
			family, first = f, p
		} else if f != family {
			v.errorf(a.elem(i), "virtual IP %s is %s but %s is %s; one instance's virtual IPs are all of one family (use a second instance)",
				p, f, first, family)
			continue
		}
		seen[p.Addr()] = true
		if dev != "" && (!s.Interface.ok() || dev != s.Interface.Val) {
			extras = append(extras, ExtraVIP{Prefix: p, Interface: dev})
		} else {
			out = append(out, p)
		}
	}
	extras = append(extras, v.excludedVIPs(s, seen)...)
	return out, extras, family
}

// vipEntry parses one entry of virtual_ips or excluded_virtual_ips:
// "ADDR/LEN", a bare address, or either followed by "dev IFACE".
func (v *validator) vipEntry(r hcl.Range, what, str string, seen map[netip.Addr]bool) (netip.Prefix, string, bool) {
	words := strings.Fields(str)
	var dev string
	switch {
	case len(words) == 3 && words[1] == "dev":
		dev = words[2]
		if !validIfaceName(dev) {
			v.errorf(r, "%s %q: %q is not a valid interface name (1-15 characters, no '/', ':' or spaces)", what, str, dev)
			return netip.Prefix{}, "", false
		}
	case len(words) != 1:
		v.errorf(r, "%s %q: write \"ADDR/LEN\" or \"ADDR/LEN dev IFACE\", e.g. \"203.0.113.5/32 dev eth3\"", what, str)
		return netip.Prefix{}, "", false
	}
	p, err := parsePrefix(words[0])
	switch {
	case err != nil:
		v.errorf(r, "%s %q is not an address or prefix (write e.g. \"192.0.2.1/24\" or \"2001:db8::1/64\")", what, str)
		return netip.Prefix{}, "", false
	case !p.Addr().IsGlobalUnicast() && !p.Addr().IsLinkLocalUnicast():
		v.errorf(r, "%s %s is not a unicast address", what, p.Addr())
		return netip.Prefix{}, "", false
	case seen[p.Addr().Unmap()]:
		v.errorf(r, "%s %s is listed twice", what, p.Addr())
		return netip.Prefix{}, "", false
	}
	return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()), dev, true
}

func (v *validator) garp(s *garpSyntax) GARP {
	g := GARP{
		Repeat:   DefaultGARPRepeat,
		Interval: DefaultGARPInterval,
		Delay:    DefaultGARPDelay,
		Refresh:  DefaultGARPRefresh,
	}
	if s == nil {
		return g
	}
	g.Repeat = v.intIn(s.Repeat, "repeat", DefaultGARPRepeat, 1, 100)
	g.Interval = v.duration(s.Interval, "interval", DefaultGARPInterval, nonNegative)
	g.Delay = v.duration(s.Delay, "delay", DefaultGARPDelay, nonNegative)
	g.Refresh = v.duration(s.Refresh, "refresh", DefaultGARPRefresh, nonNegative)
	return g
}

func (v *validator) trackScript(s *trackScriptSyntax) TrackScript {
	t := TrackScript{
		Name:     s.Name,
		Interval: v.duration(s.Interval, "interval", DefaultScriptInterval, positive),
		Rise:     v.intIn(s.Rise, "rise", DefaultScriptRise, 1, 100),
		Fall:     v.intIn(s.Fall, "fall", DefaultScriptFall, 1, 100),
		Weight:   v.intIn(s.Weight, "weight", 0, -254, 254),
	}
	t.Timeout = v.hookTimeout(s.Timeout, min(DefaultScriptTimeout, t.Interval))
	if s.Timeout.ok() && t.Timeout > t.Interval {
		v.errorf(s.Timeout.Range, "timeout (%s) must not exceed interval (%s)", t.Timeout, t.Interval)
	}
	if v.required(s.Command.Set, s.block, "track_script", "command") && s.Command.ok() {
		t.Command = s.Command.Val
		switch {
		case len(t.Command) == 0:
			v.errorf(s.Command.Range, "command must name a program, e.g. [\"/usr/bin/ping\", \"-c1\", \"192.0.2.254\"]")
		case !filepath.IsAbs(t.Command[0]):
			v.errorf(s.Command.elem(0), "command must start with an absolute path, got %q", t.Command[0])
		}
	}
	return t
}

func (v *validator) syncGroup(s *syncGroupSyntax) SyncGroup {
	g := SyncGroup{
		Name:      s.Name,
		Conntrack: boolOr(s.Conntrack, false),
	}
	if v.required(s.Instances.Set, s.block, "sync_group", "instances") && s.Instances.ok() {
		g.Instances = s.Instances.Val
		if len(g.Instances) == 0 {
			v.errorf(s.Instances.Range, "instances must name at least one vrrp_instance")
		}
	}
	g.Notify = v.notify(s.Notify)
	return g
}

// notify checks a notify block (nil: none, the defaults).
func (v *validator) notify(n *notifySyntax) Notify {
	if n == nil {
		return Notify{Timeout: DefaultNotifyTimeout}
	}
	return Notify{
		Master:  v.commands(n.Master),
		Backup:  v.commands(n.Backup),
		Fault:   v.commands(n.Fault),
		Stop:    v.commands(n.Stop),
		Generic: v.commands(n.Notify),
		Timeout: v.hookTimeout(n.Timeout, DefaultNotifyTimeout),
	}
}

// hookTimeout parses the timeout of a command ctha runs: positive and at
// most MaxHookTimeout.
func (v *validator) hookTimeout(a attr[string], def time.Duration) time.Duration {
	d := v.duration(a, "timeout", def, positive)
	if a.ok() && d > MaxHookTimeout {
		v.errorf(a.Range, "timeout must be at most %s, got %q (a hung command is killed at its timeout)", shortDuration(MaxHookTimeout), a.Val)
		return def
	}
	return d
}

// shortDuration writes d as a user would: "1h", not "1h0m0s".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// commands checks a list of notify commands, each a command line whose
// first word is the absolute path of an executable, and splits them.
func (v *validator) commands(a attr[[]string]) [][]string {
	var out [][]string
	for i, c := range a.Val {
		argv, err := SplitCommand(c)
		switch {
		case errors.Is(err, ErrEmptyCommand):
			v.errorf(a.elem(i), "notify command is empty; write a command line, e.g. \"/etc/ctha/on-master.sh outside\"")
		case err != nil:
			v.errorf(a.elem(i), "notify command %q cannot be split into words: %v (quote with \"...\" or '...', escape with \\)", c, err)
		case !filepath.IsAbs(argv[0]):
			v.errorf(a.elem(i), "notify command must start with an absolute path, got %q", argv[0])
		default:
			out = append(out, argv)
		}
	}
	return out
}
