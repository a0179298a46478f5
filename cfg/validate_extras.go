package cfg

import (
	"net/netip"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Limits of keepalived's extras.
const (
	maxTable    = 1<<32 - 1
	maxMetric   = 1<<32 - 1
	maxRulePrio = 1<<32 - 1
	// maxComm is the longest process name the kernel keeps (comm,
	// TASK_COMM_LEN 16 with its NUL).
	maxComm   = 15
	maxQuorum = 65535
)

// instanceExtras checks keepalived's everyday extras of an instance:
// routes, rules, track_file and track_process.
func (v *validator) instanceExtras(s *instanceSyntax, in *Instance) {
	s.routeObjs = nil
	for j, o := range s.VirtualRoutes.Objs {
		if r, ok := v.route(o); ok {
			in.Routes = append(in.Routes, r)
			s.routeObjs = append(s.routeObjs, j)
		}
	}
	for _, o := range s.VirtualRules.Objs {
		if r, ok := v.rule(o); ok {
			in.Rules = append(in.Rules, r)
		}
	}
	for _, t := range s.TrackFiles {
		tf := TrackFile{
			Path:    filepath.Clean(t.Name),
			Weight:  v.intIn(t.Weight, "weight", DefaultTrackFileWeight, -254, 254),
			Reverse: boolOr(t.Reverse, false),
		}
		if !filepath.IsAbs(t.Name) {
			v.errorf(t.NameRange, "track_file %q: the file must be an absolute path, e.g. \"/run/ctha/weight\"", t.Name)
			continue
		}
		in.TrackFiles = append(in.TrackFiles, tf)
	}
	for _, t := range s.TrackProcesses {
		p := TrackProcess{
			Name:        t.Name,
			FullCommand: boolOr(t.FullCommand, false),
			Weight:      v.intIn(t.Weight, "weight", 0, -254, 254),
			Reverse:     boolOr(t.Reverse, false),
			Quorum:      v.intIn(t.Quorum, "quorum", DefaultProcessQuorum, 0, maxQuorum),
			QuorumMax:   v.intIn(t.QuorumMax, "quorum_max", -1, 0, maxQuorum),
		}
		switch {
		case strings.TrimSpace(p.Name) == "":
			v.errorf(t.NameRange, "track_process needs a process name, e.g. track_process \"bird\" { weight = -50 }")
			continue
		case !p.FullCommand && len(p.Name) > maxComm:
			v.errorf(t.NameRange, "track_process %q: a process name (comm) is at most %d characters; set full_command = true to match the command line instead", p.Name, maxComm)
			continue
		case t.QuorumMax.ok() && p.QuorumMax >= 0 && p.QuorumMax < p.Quorum:
			v.errorf(t.QuorumMax.Range, "quorum_max (%d) must not be less than quorum (%d)", p.QuorumMax, p.Quorum)
			continue
		}
		in.TrackProcesses = append(in.TrackProcesses, p)
	}
}

// excludedVIPs parses excluded_virtual_ips: addresses that follow the
// role but are not listed in adverts, of either family, on the
// instance's interface unless "dev IFACE" says otherwise.
func (v *validator) excludedVIPs(s *instanceSyntax, seen map[netip.Addr]bool) []ExtraVIP {
	a := s.ExcludedVIPs
	var out []ExtraVIP
	for i, str := range a.Val {
		p, dev, ok := v.vipEntry(a.elem(i), "excluded virtual IP", str, seen)
		if !ok {
			continue
		}
		seen[p.Addr()] = true
		if dev == "" {
			dev = s.Interface.Val
		}
		out = append(out, ExtraVIP{Prefix: p, Interface: dev, Excluded: true})
	}
	return out
}

var (
	routeKeys = []string{"to", "via", "dev", "table", "metric"}
	ruleKeys  = []string{"from", "to", "table", "priority"}
)

// unknownKeys reports the keys of o that are not in known.
func (v *validator) unknownKeys(o obj, what string, known []string) {
	for _, k := range o.Keys {
		if !slices.Contains(known, k) {
			v.errorf(o.Fields[k].KeyRange, "%s has no key %q (it takes %s)", what, k, strings.Join(known, ", "))
		}
	}
}

// objPrefix parses a prefix field; a bare address is a host prefix.
func (v *validator) objPrefix(o obj, key string) (netip.Prefix, bool) {
	str, r, ok := v.objStr(o, key)
	if !ok {
		return netip.Prefix{}, false
	}
	p, err := parsePrefix(str)
	switch {
	case err != nil:
		v.errorf(r, "%s %q is not a prefix (write e.g. \"198.51.100.0/24\" or \"2001:db8:1::/48\")", key, str)
		return netip.Prefix{}, false
	case p.Masked() != p:
		v.errorf(r, "%s %q has host bits set; write %s", key, str, p.Masked())
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()), true
}

func (v *validator) route(o obj) (Route, bool) {
	const what = "a virtual route"
	v.unknownKeys(o, what, routeKeys)
	var rt Route
	ok := true
	if _, has := o.Fields["to"]; !has {
		v.errorf(o.Range, "%s needs to, e.g. { to = \"198.51.100.0/24\", via = \"192.0.2.254\" }", what)
		ok = false
	} else if rt.To, ok = v.objPrefix(o, "to"); !ok {
		return rt, false
	}
	if str, r, has := v.objStr(o, "via"); has {
		a, err := netip.ParseAddr(str)
		switch {
		case err != nil:
			v.errorf(r, "via %q is not an IP address", str)
			ok = false
		case rt.To.IsValid() && familyOf(a) != familyOf(rt.To.Addr()):
			v.errorf(r, "via %s is %s but to %s is %s", a, familyOf(a), rt.To, familyOf(rt.To.Addr()))
			ok = false
		default:
			rt.Via = a.Unmap()
		}
	}
	if str, r, has := v.objStr(o, "dev"); has {
		if !validIfaceName(str) {
			v.ifaceName(r, str)
			ok = false
		}
		rt.Dev = str
	}
	if _, has := o.Fields["via"]; !has && rt.Dev == "" && ok {
		v.errorf(o.Range, "%s needs via, dev or both", what)
		ok = false
	}
	if n, has := v.objInt(o, "table", 1, maxTable); has {
		rt.Table = n
	}
	if n, has := v.objInt(o, "metric", 0, maxMetric); has {
		rt.Metric = n
	}
	return rt, ok && !v.badField(o, "table", "metric")
}

func (v *validator) rule(o obj) (Rule, bool) {
	const what = "a virtual rule"
	v.unknownKeys(o, what, ruleKeys)
	var r Rule
	ok := true
	if _, has := o.Fields["from"]; has {
		r.From, ok = v.objPrefix(o, "from")
	}
	if _, has := o.Fields["to"]; has {
		var okTo bool
		r.To, okTo = v.objPrefix(o, "to")
		ok = ok && okTo
	}
	_, hasFrom := o.Fields["from"]
	_, hasTo := o.Fields["to"]
	switch {
	case !hasFrom && !hasTo:
		v.errorf(o.Range, "%s needs from, to or both, e.g. { from = \"192.0.2.0/24\", table = 100 }", what)
		ok = false
	case r.From.IsValid() && r.To.IsValid() && familyOf(r.From.Addr()) != familyOf(r.To.Addr()):
		v.errorf(o.Fields["to"].Range, "to %s is %s but from %s is %s", r.To, familyOf(r.To.Addr()), r.From, familyOf(r.From.Addr()))
		ok = false
	}
	if _, has := o.Fields["table"]; !has {
		v.errorf(o.Range, "%s needs a table, e.g. { from = \"192.0.2.0/24\", table = 100 }", what)
		ok = false
	} else if n, has := v.objInt(o, "table", 1, maxTable); has {
		r.Table = n
	}
	if n, has := v.objInt(o, "priority", 1, maxRulePrio); has {
		r.Priority = n
	}
	return r, ok && !v.badField(o, "table", "priority")
}

// badField reports whether one of the keys is present but was not
// accepted (objInt reported it).
func (v *validator) badField(o obj, keys ...string) bool {
	for _, k := range keys {
		f, has := o.Fields[k]
		if !has {
			continue
		}
		for _, d := range v.diags {
			if d.Subject != nil && *d.Subject == f.Range && d.Severity == hcl.DiagError {
				return true
			}
		}
	}
	return false
}

// hostExtras holds the extras against the machine: a virtual IP's
// interface that does not exist is an error (ctha run cannot add it), a
// route's a warning (the route fails until the interface appears), as is
// a track file's directory that does not exist (the file counts as 0).
func (v *validator) hostExtras(f *fileSyntax, c *Config, h Host, ifs map[string][]netip.Prefix) {
	for i, in := range c.Instances {
		s := f.Instances[i]
		for _, e := range in.ExtraVIPs {
			if _, ok := ifs[e.Interface]; ok || !validIfaceName(e.Interface) || e.Interface == in.Interface {
				continue
			}
			what, r := "virtual IP", s.VirtualIPs.Range
			if e.Excluded {
				what, r = "excluded virtual IP", s.ExcludedVIPs.Range
			}
			r = elemWith(s, e, r)
			v.errorf(r, "%s %s: interface %q does not exist on this machine", what, e.Prefix, e.Interface)
		}
		for j, rt := range in.Routes {
			if _, ok := ifs[rt.Dev]; ok || rt.Dev == "" || j >= len(s.routeObjs) {
				continue
			}
			v.warnf(s.VirtualRoutes.Objs[s.routeObjs[j]].Fields["dev"].Range, "interface %q does not exist on this machine; the route to %s fails until it appears", rt.Dev, rt.To)
		}
		v.routeConflicts(s, in, h)
		for _, t := range in.TrackFiles {
			dir := filepath.Dir(t.Path)
			fi, err := h.Stat(dir)
			if err == nil && fi.IsDir() {
				continue
			}
			for _, ts := range s.TrackFiles {
				if filepath.Clean(ts.Name) == t.Path {
					v.warnf(ts.NameRange, "directory %s does not exist; the file counts as 0 (keepalived's value for a missing file)", dir)
				}
			}
		}
	}
}

// routeConflicts warns about each virtual route whose place a route of
// someone else's holds on this machine, when h can list routes.
func (v *validator) routeConflicts(s *instanceSyntax, in Instance, h Host) {
	rh, ok := h.(RouteHost)
	if !ok {
		return
	}
	tables := map[int][]HostRoute{}
	for j, rt := range in.Routes {
		if j >= len(s.routeObjs) {
			break
		}
		table := rt.Table
		if table == 0 {
			table = 254 // main
		}
		list, seen := tables[table]
		if !seen {
			list, _ = rh.ForeignRoutes(table) // unreadable: nothing to say
			tables[table] = list
		}
		metric := rt.Metric
		if metric == 0 && rt.To.Addr().Is6() {
			metric = 1024
		}
		for _, hr := range list {
			if hr.To == rt.To && hr.Metric == metric {
				v.warnf(s.VirtualRoutes.Objs[s.routeObjs[j]].Range,
					"a route to %s with metric %d, not ctha's, is in table %d on this machine: ctha will not replace it, nor add this route while it is there (give one of them another metric)",
					rt.To, metric, table)
				break
			}
		}
	}
}

// elemWith finds the list element that wrote e, or returns r.
func elemWith(s *instanceSyntax, e ExtraVIP, r hcl.Range) hcl.Range {
	a := s.VirtualIPs
	if e.Excluded {
		a = s.ExcludedVIPs
	}
	for i, str := range a.Val {
		if w := strings.Fields(str); len(w) > 0 {
			if p, err := parsePrefix(w[0]); err == nil && p.Addr().Unmap() == e.Prefix.Addr() {
				return a.elem(i)
			}
		}
	}
	return r
}
