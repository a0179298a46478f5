package cfg

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Host is what the host checks ask of the machine the configuration is
// for. `ctha check` answers from the kernel and the file system, tests
// from a table; this package never looks at interfaces or commands
// itself.
type Host interface {
	// Interfaces returns the machine's network interfaces by name, each
	// with its addresses and their prefix lengths (10.10.1.2/24).
	Interfaces() (map[string][]netip.Prefix, error)
	// Stat describes the file at path, following symbolic links.
	Stat(path string) (fs.FileInfo, error)
}

// RouteHost is a Host that also lists the kernel's routes: the checks
// then warn about a virtual route whose place (table, destination,
// metric) a route of someone else's holds, which ctha leaves alone and
// so never adds its own.
type RouteHost interface {
	Host
	// ForeignRoutes lists the routes of the table (both families) that
	// ctha did not add.
	ForeignRoutes(table int) ([]HostRoute, error)
}

// HostRoute is a route in the kernel: its destination and its metric
// (as the kernel has it: an IPv6 route added without one has 1024).
type HostRoute struct {
	To     netip.Prefix
	Metric int
}

// The host checks hold the configuration against the machine. What
// `ctha run` would fail on is an error: an instance's or a sync link's
// interface that does not exist, an instance's interface without the
// address VRRP is sent from, a unicast link's local address that is not
// the machine's. What it would run with, but wrongly, is a warning: a
// tracked interface that does not exist (it counts as down), a virtual IP
// outside every subnet of its interface, a local address on another
// interface than its link's, a track script or notify command that does
// not exist or cannot be run (it fails every time it runs).
func (v *validator) host(f *fileSyntax, c *Config, h Host) {
	ifs, err := h.Interfaces()
	if err != nil {
		start := hcl.Range{Filename: v.file, Start: hcl.InitialPos, End: hcl.InitialPos}
		v.errorf(start, "cannot list this machine's interfaces to check the configuration against them: %v", err)
	} else {
		v.hostInstances(f, c, ifs)
		v.hostExtras(f, c, h, ifs)
		v.hostLinks(f, c, ifs)
	}
	v.hostCommands(f, h)
}

func (v *validator) hostInstances(f *fileSyntax, c *Config, ifs map[string][]netip.Prefix) {
	vips := map[netip.Addr]bool{} // every instance's: on a master they are on the interfaces too
	for _, in := range c.Instances {
		for _, p := range in.VIPs {
			vips[p.Addr()] = true
		}
	}
	for i, in := range c.Instances {
		s := f.Instances[i]
		for k, t := range in.TrackInterface {
			if _, ok := ifs[t.Name]; !ok && validIfaceName(t.Name) {
				how := fmt.Sprintf("vrrp_instance %q stays in FAULT", in.Name)
				switch {
				case t.Weight < 0:
					how = fmt.Sprintf("vrrp_instance %q runs with its priority lowered by %d", in.Name, -t.Weight)
				case t.Weight > 0:
					how = fmt.Sprintf("vrrp_instance %q runs without its weight of %d", in.Name, t.Weight)
				}
				v.warnf(s.TrackIfaces[k].NameRange, "interface %q does not exist on this machine; it counts as down until it appears: %s", t.Name, how)
			}
		}
		if !s.Interface.ok() || !validIfaceName(in.Interface) {
			continue
		}
		addrs, ok := ifs[in.Interface]
		switch {
		case !ok:
			v.errorf(s.Interface.Range, "interface %q does not exist on this machine", in.Interface)
		case in.Family == IPv4 && !slices.ContainsFunc(addrs, func(p netip.Prefix) bool { return p.Addr().Is4() }):
			v.errorf(s.Interface.Range, "interface %q has no IPv4 address to send VRRP adverts from", in.Interface)
		case in.Family == IPv6 && !slices.ContainsFunc(addrs, func(p netip.Prefix) bool { return p.Addr().Is6() && p.Addr().IsLinkLocalUnicast() }):
			v.errorf(s.Interface.Range, "interface %q has no IPv6 link-local address to send VRRP adverts from", in.Interface)
		case in.Family != 0:
			v.vipSubnets(s, in, addrs, vips)
		}
	}
}

// vipSubnets warns about a virtual IP outside every subnet of its
// interface: a typo in the address or the interface, most likely, and
// hosts on the link would not reach it. A host route (/32, /128) is
// meant to be anywhere.
func (v *validator) vipSubnets(s *instanceSyntax, in Instance, addrs []netip.Prefix, vips map[netip.Addr]bool) {
	var subnets []netip.Prefix
	for _, a := range addrs {
		a = netip.PrefixFrom(a.Addr().Unmap(), a.Bits())
		if familyOf(a.Addr()) == in.Family && !vips[a.Addr()] && !slices.Contains(subnets, a.Masked()) {
			subnets = append(subnets, a.Masked())
		}
	}
	for j, str := range s.VirtualIPs.Val {
		p, err := parsePrefix(str)
		if err != nil || familyOf(p.Addr()) != in.Family || p.IsSingleIP() {
			continue
		}
		if slices.ContainsFunc(subnets, func(n netip.Prefix) bool { return n.Contains(p.Addr().Unmap()) }) {
			continue
		}
		v.warnf(s.VirtualIPs.elem(j), "virtual IP %s is outside every %s subnet of interface %q (%s); is the address or the interface mistaken?",
			p, in.Family, in.Interface, prefixList(subnets))
	}
}

// prefixList lists a few prefixes for a message.
func prefixList(ps []netip.Prefix) string {
	const most = 4
	if len(ps) == 0 {
		return "it has none but virtual IPs"
	}
	var out []string
	for _, p := range ps[:min(len(ps), most)] {
		out = append(out, p.String())
	}
	if len(ps) > most {
		out = append(out, fmt.Sprintf("and %d more", len(ps)-most))
	}
	return strings.Join(out, ", ")
}

func (v *validator) hostLinks(f *fileSyntax, c *Config, ifs map[string][]netip.Prefix) {
	if c.Sync == nil {
		return
	}
	for i, l := range c.Sync.Links {
		s := f.Sync.Links[i]
		if !s.Interface.ok() || !validIfaceName(l.Interface) {
			continue
		}
		addrs, ok := ifs[l.Interface]
		if !ok {
			v.errorf(s.Interface.Range, "interface %q does not exist on this machine", l.Interface)
			continue
		}
		if !l.Local.IsValid() || hasAddr(addrs, l.Local) {
			continue
		}
		other := ifaceWith(ifs, l.Local)
		switch {
		case other != "":
			v.warnf(s.Local.Range, "local %s is on interface %q, not on the link's interface %q", l.Local, other, l.Interface)
		case l.MulticastGroup.IsValid():
			v.warnf(s.Local.Range, "local %s is not an address of this machine (the other node's?)", l.Local)
		default:
			v.errorf(s.Local.Range, "local %s is not an address of this machine, so the link cannot bind to it (the other node's?)", l.Local)
		}
	}
}

func hasAddr(ps []netip.Prefix, a netip.Addr) bool {
	return slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Addr().Unmap() == a })
}

// ifaceWith returns the first interface, by name, that holds a.
func ifaceWith(ifs map[string][]netip.Prefix, a netip.Addr) string {
	var names []string
	for name, addrs := range ifs {
		if hasAddr(addrs, a) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

// hostCommands warns about a track script or notify command that cannot
// run: ctha runs it anyway, and it fails every time.
func (v *validator) hostCommands(f *fileSyntax, h Host) {
	for _, s := range f.TrackScripts {
		if !s.Command.ok() || len(s.Command.Val) == 0 {
			continue
		}
		if why := cannotRun(h, s.Command.Val[0]); why != "" {
			v.warnf(s.Command.elem(0), "%s; track_script %q fails at every run", why, s.Name)
		}
	}
	for _, in := range f.Instances {
		v.hostNotify(h, in.Notify, fmt.Sprintf("vrrp_instance %q", in.Name))
	}
	for _, g := range f.SyncGroups {
		v.hostNotify(h, g.Notify, fmt.Sprintf("sync_group %q", g.Name))
	}
}

// hostNotify warns about the commands of a notify block (nil: none)
// whose program cannot run. A command line that does not split is an
// error of the file already.
func (v *validator) hostNotify(h Host, n *notifySyntax, owner string) {
	if n == nil {
		return
	}
	for _, list := range []struct {
		a    attr[[]string]
		when string
	}{
		{n.Master, "at every transition to MASTER"}, {n.Backup, "at every transition to BACKUP"},
		{n.Fault, "at every transition to FAULT"}, {n.Stop, "when ctha stops"},
		{n.Notify, "at every transition"},
	} {
		for j, line := range list.a.Val {
			argv, err := SplitCommand(line)
			if err != nil {
				continue
			}
			if why := cannotRun(h, argv[0]); why != "" {
				v.warnf(list.a.elem(j), "%s; this notify command of %s fails %s", why, owner, list.when)
			}
		}
	}
}

// cannotRun says why path cannot be run, or "" when it can (for root:
// a regular file with an execute bit). A relative path is already an
// error of the file.
func cannotRun(h Host, path string) string {
	if !filepath.IsAbs(path) {
		return ""
	}
	fi, err := h.Stat(path)
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the path is in the message already
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("%s does not exist", path)
	case err != nil:
		return fmt.Sprintf("cannot check %s: %v", path, err)
	case fi.IsDir():
		return fmt.Sprintf("%s is a directory", path)
	case !fi.Mode().IsRegular():
		return fmt.Sprintf("%s is not a regular file", path)
	case fi.Mode().Perm()&0o111 == 0:
		return fmt.Sprintf("%s is not executable (mode %04o)", path, fi.Mode().Perm())
	}
	return ""
}
