package cfg

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// validator turns the syntax structs into a Config, collecting diagnostics.
type validator struct {
	file    string // the config file, as named by the caller
	dir     string // its directory, for relative paths
	offline bool   // read nothing of this machine (the key file)
	diags   hcl.Diagnostics
}

func (v *validator) errorf(r hcl.Range, format string, args ...any) {
	v.diags = append(v.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError, Summary: fmt.Sprintf(format, args...), Subject: r.Ptr(),
	})
}

func (v *validator) warnf(r hcl.Range, format string, args ...any) {
	v.diags = append(v.diags, &hcl.Diagnostic{
		Severity: hcl.DiagWarning, Summary: fmt.Sprintf(format, args...), Subject: r.Ptr(),
	})
}

func (v *validator) config(f *fileSyntax) Config {
	c := Config{
		NodeName: v.nodeName(f.NodeName),
		StateDir: v.absPath(f.StateDir, "state_dir", DefaultStateDir),
		Control:  v.control(f.Control),
		Log:      v.log(f.Log),
		// Priority 99 would starve the kernel's own realtime threads
		// (the migration and watchdog threads run at 99).
		RealtimePriority: v.intIn(f.Realtime, "realtime_priority", 0, 0, 98),
	}
	for _, s := range f.Instances {
		c.Instances = append(c.Instances, v.instance(s))
	}
	for _, s := range f.TrackScripts {
		c.TrackScripts = append(c.TrackScripts, v.trackScript(s))
	}
	for _, s := range f.SyncGroups {
		c.SyncGroups = append(c.SyncGroups, v.syncGroup(s))
	}
	if f.Sync != nil {
		s := v.sync(f.Sync)
		c.Sync = &s
	}
	v.crossCheck(f, &c)
	return c
}

// crossCheck validates what spans blocks: references, uniqueness and the
// rules of the conntrack group.
func (v *validator) crossCheck(f *fileSyntax, c *Config) {
	if len(f.Instances) == 0 && f.Sync == nil {
		start := hcl.Range{Filename: v.file, Start: hcl.InitialPos, End: hcl.InitialPos}
		v.errorf(start, "nothing to run: the file has neither a vrrp_instance nor a conntrack_sync block")
	}
	v.uniqueInstances(f, c)
	v.trackScriptRefs(f, c)
	v.groupRefs(f, c)
}

func (v *validator) uniqueInstances(f *fileSyntax, c *Config) {
	type router struct {
		iface  string
		vrid   uint8
		family Family
	}
	routers := map[router]string{}
	vips := map[netip.Addr]string{}
	for i, in := range c.Instances {
		s := f.Instances[i]
		if in.Interface == "" || in.VRID == 0 || in.Family == 0 {
			continue // already diagnosed
		}
		r := router{in.Interface, in.VRID, in.Family}
		if other, dup := routers[r]; dup {
			v.errorf(s.VRID.Range, "vrrp_instance %q uses interface %s, vrid %d and %s like vrrp_instance %q; each (interface, vrid, family) needs its own instance",
				in.Name, in.Interface, in.VRID, in.Family, other)
		} else {
			routers[r] = in.Name
		}
		all := append([]ExtraVIP(nil), in.ExtraVIPs...)
		for _, p := range in.VIPs {
			all = append(all, ExtraVIP{Prefix: p})
		}
		for _, e := range all {
			p := e.Prefix
			if other, dup := vips[p.Addr()]; dup && other != in.Name {
				v.errorf(elemWith(s, e, s.VirtualIPs.Range), "virtual IP %s is also in vrrp_instance %q", p.Addr(), other)
			} else {
				vips[p.Addr()] = in.Name
			}
		}
	}
}

func (v *validator) trackScriptRefs(f *fileSyntax, c *Config) {
	used := map[string]bool{}
	for i, in := range c.Instances {
		s := f.Instances[i]
		for j, name := range in.TrackScripts {
			if !c.hasTrackScript(name) {
				v.errorf(s.TrackScripts.elem(j), "unknown track_script %q", name)
			}
			used[name] = true
		}
	}
	for _, s := range f.TrackScripts {
		if !used[s.Name] {
			v.warnf(s.NameRange, "track_script %q is not used by any vrrp_instance", s.Name)
		}
	}
}

func (c *Config) hasTrackScript(name string) bool {
	for _, t := range c.TrackScripts {
		if t.Name == name {
			return true
		}
	}
	return false
}

func (c *Config) instance(name string) (Instance, bool) {
	for _, in := range c.Instances {
		if in.Name == name {
			return in, true
		}
	}
	return Instance{}, false
}

func (v *validator) groupRefs(f *fileSyntax, c *Config) {
	member := map[string]string{} // instance -> group
	var ctGroup *syncGroupSyntax
	multi := c.Multiprimary()
	for i, g := range c.SyncGroups {
		s := f.SyncGroups[i]
		for j, name := range g.Instances {
			in, ok := c.instance(name)
			switch {
			case !ok:
				v.errorf(s.Instances.elem(j), "sync_group %q names unknown vrrp_instance %q", g.Name, name)
				continue
			case member[name] == g.Name:
				v.errorf(s.Instances.elem(j), "vrrp_instance %q is listed twice", name)
				continue
			case member[name] != "":
				v.errorf(s.Instances.elem(j), "vrrp_instance %q is already in sync_group %q; an instance belongs to one group", name, member[name])
				continue
			}
			member[name] = g.Name
			switch {
			case in.Priority != 255:
			case g.Conntrack && !multi:
				v.errorf(f.Instances[indexOf(c.Instances, name)].Priority.Range,
					"priority 255 (address owner) is not allowed in sync_group %q, which drives conntrack sync: an address owner takes over at boot before its conntrack table is complete",
					g.Name)
			case multi:
				v.warnf(f.Instances[indexOf(c.Instances, name)].Priority.Range,
					"priority 255 (address owner) in sync_group %q takes over at boot without waiting for the peer's flows (topology = %q); use 254 or less",
					g.Name, TopologyMultiprimary)
			}
		}
		if !g.Conntrack {
			continue
		}
		if multi {
			v.errorf(s.Conntrack.Range, "sync_group %q sets conntrack = true, but with topology = %q no group drives commit, flush or purge: every node forwards its own flows; remove conntrack = true",
				g.Name, TopologyMultiprimary)
			continue
		}
		if ctGroup != nil {
			v.errorf(s.Conntrack.Range, "sync_group %q also sets conntrack = true, like sync_group %q; at most one group may drive conntrack sync",
				g.Name, ctGroup.Name)
			continue
		}
		ctGroup = s
		if f.Sync == nil {
			v.errorf(s.Conntrack.Range, "sync_group %q sets conntrack = true but there is no conntrack_sync block", g.Name)
		}
	}
	if multi {
		for i, in := range c.Instances {
			if member[in.Name] == "" {
				v.warnf(f.Instances[i].NameRange, "vrrp_instance %q is in no sync_group: with topology = %q its preemption does not wait for the peer's flows, and its role is not announced to the peer; put it in a sync_group",
					in.Name, TopologyMultiprimary)
			}
		}
		return
	}
	if f.Sync != nil && len(f.Instances) > 0 && ctGroup == nil {
		v.warnf(f.Sync.DefRange, "no sync_group sets conntrack = true: VRRP roles will not drive conntrack sync (commit with `ctha sync commit`)")
	}
}

func indexOf(ins []Instance, name string) int {
	for i, in := range ins {
		if in.Name == name {
			return i
		}
	}
	return -1
}

func (v *validator) nodeName(a attr[string]) string {
	if !a.ok() {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return "ctha"
		}
		return h
	}
	if a.Val == "" || len(a.Val) > 64 || strings.IndexFunc(a.Val, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
		v.errorf(a.Range, "node_name must be 1-64 printable characters without spaces, got %q", a.Val)
	}
	return a.Val
}

func (v *validator) control(s *controlSyntax) Control {
	c := Control{Socket: DefaultSocket, Metrics: DefaultMetrics}
	if s == nil {
		return c
	}
	if s.Socket.ok() {
		c.Socket = s.Socket.Val
		if !filepath.IsAbs(c.Socket) {
			v.errorf(s.Socket.Range, "socket must be an absolute path, got %q", c.Socket)
		}
	}
	if s.Metrics.ok() {
		c.Metrics = s.Metrics.Val
		if c.Metrics != "" {
			host, port, err := net.SplitHostPort(c.Metrics)
			switch {
			case err != nil || !validPort(port):
				v.errorf(s.Metrics.Range, "metrics must be host:port (e.g. \"127.0.0.1:9477\") or \"\" to disable, got %q", c.Metrics)
			case allInterfaces(host):
				v.warnf(s.Metrics.Range, "metrics %q listens on every interface: anyone who reaches this firewall on port %s reads its state; give an address of a management network or \"127.0.0.1:%s\"",
					c.Metrics, port, port)
			}
		}
	}
	return c
}

// absPath returns an absolute path attribute, or def when it is absent.
func (v *validator) absPath(a attr[string], name, def string) string {
	if !a.ok() {
		return def
	}
	if !filepath.IsAbs(a.Val) {
		v.errorf(a.Range, "%s must be an absolute path, got %q", name, a.Val)
	}
	return a.Val
}

// allInterfaces reports whether a listening host means every interface:
// empty, or an unspecified address (0.0.0.0, ::).
func allInterfaces(host string) bool {
	if host == "" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsUnspecified()
}

func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1 && n <= 65535
}

func (v *validator) log(s *logSyntax) Log {
	l := Log{Format: DefaultLogFormat}
	_ = l.Level.UnmarshalText([]byte(DefaultLogLevel))
	if s == nil {
		return l
	}
	if s.Level.ok() {
		if !oneOf(s.Level.Val, "debug", "info", "warn", "error") {
			v.errorf(s.Level.Range, "level must be one of debug, info, warn, error, got %q", s.Level.Val)
		} else {
			_ = l.Level.UnmarshalText([]byte(s.Level.Val))
		}
	}
	if s.Format.ok() {
		l.Format = s.Format.Val
		if !oneOf(l.Format, "text", "json") {
			v.errorf(s.Format.Range, "format must be text or json, got %q", l.Format)
		}
	}
	return l
}

func oneOf(s string, options ...string) bool {
	for _, o := range options {
		if s == o {
			return true
		}
	}
	return false
}

// durationRule says which durations an attribute accepts.
type durationRule int

const (
	positive    durationRule = iota // > 0
	nonNegative                     // >= 0; 0 usually means "off"
)

// duration parses a duration attribute, or returns def when it is absent.
func (v *validator) duration(a attr[string], name string, def time.Duration, rule durationRule) time.Duration {
	if !a.ok() {
		return def
	}
	d, err := time.ParseDuration(a.Val)
	switch {
	case err != nil:
		v.errorf(a.Range, "%s: %q is not a duration (write e.g. \"500ms\", \"2s\", \"1m\")", name, a.Val)
		return def
	case d < 0:
		v.errorf(a.Range, "%s must not be negative, got %q", name, a.Val)
		return def
	case d == 0 && rule == positive:
		v.errorf(a.Range, "%s must be greater than zero, got %q", name, a.Val)
		return def
	}
	return d
}

// intIn returns an integer attribute checked against [lo, hi], or def.
func (v *validator) intIn(a attr[int], name string, def, lo, hi int) int {
	if !a.ok() {
		return def
	}
	if a.Val < lo || a.Val > hi {
		v.errorf(a.Range, "%s must be from %d to %d, got %d", name, lo, hi, a.Val)
		return def
	}
	return a.Val
}

func boolOr(a attr[bool], def bool) bool {
	if a.ok() {
		return a.Val
	}
	return def
}

// required reports a missing attribute at the block header.
func (v *validator) required(set bool, b block, kind, name string) bool {
	if !set {
		v.errorf(b.DefRange, "%s %q: %s is required", kind, b.Name, name)
	}
	return set
}

// ifaceName checks a Linux interface name.
func (v *validator) ifaceName(r hcl.Range, name string) {
	if !validIfaceName(name) {
		v.errorf(r, "%q is not a valid interface name (1-15 characters, no '/', ':' or spaces)", name)
	}
}

func validIfaceName(name string) bool {
	return name != "" && len(name) <= 15 && name != "." && name != ".." &&
		!strings.ContainsAny(name, "/: \t\n")
}

// parsePrefix accepts "addr/len" or a bare address (a host prefix).
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func familyOf(a netip.Addr) Family {
	if a.Is4() || a.Is4In6() {
		return IPv4
	}
	return IPv6
}
