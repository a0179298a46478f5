package importer

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/zclconf/go-cty/cty"
)

// Why an instance's keywords are not carried, where a reason more precise
// than "no equivalent" exists.
var kaInstanceReasons = map[string]string{
	"mcast_src_ip":               "ctha sends from the interface's primary address",
	"unicast_src_ip":             "ctha sends from the interface's primary address",
	"dont_track_primary":         "ctha always tracks the instance's interface",
	"accept":                     "ctha installs no firewall rules; packets to the virtual IPs are accepted",
	"no_accept":                  "ctha installs no firewall rules; drop packets to the virtual IPs with nftables",
	"strict_mode":                "ctha installs no firewall rules",
	"smtp_alert":                 "ctha sends no mail; use a notify command",
	"debug":                      "set log { level = \"debug\" }",
	"mcast_dst_ip":               "ctha uses the standard groups 224.0.0.18 and ff02::12",
	"check_unicast_src":          "ctha accepts unicast adverts only from unicast_peers",
	"skip_check_adv_addr":        "ctha checks every advert's addresses",
	"lower_prio_no_advert":       "ctha answers a lower-priority advert as RFC 5798 says",
	"higher_prio_send_advert":    "ctha yields to a higher-priority advert as RFC 5798 says",
	"down_timer_adverts":         "ctha keeps the RFC's three advert intervals",
	"promote_secondaries":        "set sysctl net.ipv4.conf.IFACE.promote_secondaries = 1",
	"track_src_ip":               "ctha has no such tracking",
	"unicast_ttl":                "ctha sends unicast adverts with TTL 255",
	"unicast_fault_no_peer":      "ctha refuses an empty unicast_peers",
	"old_unicast_checksum":       "ctha computes the RFC's checksum",
	"vmac_xmit_base":             "ctha sends adverts on the virtual MAC interface",
	"use_vmac_addr":              "ctha has one virtual MAC per instance",
	"use_ipvlan":                 "ctha has no ipvlan mode",
	"vrf":                        "ctha has no VRF setting",
	"kernel_rx_buf_size":         "ctha sizes its sockets itself",
	"linkbeat_use_polling":       "ctha follows carrier by netlink",
	"notify_master_rx_lower_pri": "ctha has no such notification",
	"notify_deleted":             "ctha has no such notification",
	"notify_priority_changes":    "ctha has no notify FIFO",
	"notify_fifo":                "ctha has no notify FIFO; `ctha events` streams the transitions",
	"track_bfd":                  "ctha has no BFD",
	"garp_lower_prio_delay":      "ctha sends gratuitous ARP when it becomes master, and by garp.refresh",
	"garp_lower_prio_repeat":     "ctha sends gratuitous ARP when it becomes master, and by garp.refresh",
	"garp_master_refresh_repeat": "ctha's periodic burst has garp.repeat messages",
	"garp_extra_if":              "ctha sends gratuitous ARP on the instance's interfaces only",
	"native_ipv6":                "the addresses say the family",
}

// hookMark: the script conntrackd ships for keepalived's notify commands.
const hookMark = "primary-backup.sh"

// blockKeyword reports whether an instance's keyword kw opens a block.
func blockKeyword(kw string) bool {
	switch kw {
	case "virtual_ipaddress", "virtual_ipaddress_excluded", "virtual_routes", "virtual_rules",
		"unicast_peer", "authentication":
		return true
	}
	return isTrack(kw)
}

// isTrack reports whether kw is a tracking block of an instance or a
// sync group.
func isTrack(kw string) bool {
	switch kw {
	case "track_interface", "track_script", "track_file", "track_process", "track_bfd":
		return true
	}
	return false
}

func isNotify(kw string) bool {
	switch kw {
	case "notify_master", "notify_backup", "notify_fault", "notify_stop", "notify":
		return true
	}
	return false
}

// instance converts one vrrp_instance; nil when it cannot be carried.
func (k *keepalived) instance(s *stmt) *block {
	name := s.args()[0]
	b := &block{typ: "vrrp_instance", labels: []string{name}}
	var (
		iface, vrid, prio, version string
		vipStmt                    *stmt
		advert                     *stmt
		auth                       *stmt
		preempt                    = true
		garp                       = k.garp
		notify                     = &block{typ: "notify"}
		later                      []func() // keywords written after the VIPs
	)
	g := k.groupOf[name]
	for _, t := range s.body {
		args := t.args()
		switch kw := t.key(); {
		case kw == "state":
			b.note(fmt.Sprintf("%s: state %s: ctha elects by priority alone.", t.pos, strings.Join(args, " ")))
		case kw == "interface":
			iface = first(args)
		case kw == "virtual_router_id":
			vrid = first(args)
		case kw == "priority":
			prio = first(args)
		case kw == "version":
			version = first(args)
		case kw == "advert_int":
			advert = t
		case kw == "nopreempt":
			preempt = false
		case kw == "preempt":
		case kw == "preempt_delay":
			t := t
			later = append(later, func() {
				d, ok := seconds(first(t.args()))
				if !ok || d > 1000*time.Second {
					k.skip(b, t.pos, "preempt_delay", "expects seconds from 0 to 1000")
					return
				}
				b.str("preempt_delay", duration(d))
			})
		case kw == "virtual_ipaddress" && t.block:
			vipStmt = t
		case kw == "authentication" && t.block:
			auth = t
		case kw == "use_vmac":
			later = append(later, func() {
				b.boolean("virtual_mac", true)
				if len(args) > 0 {
					k.skip(b, t.pos, "use_vmac "+strings.Join(args, " "), "ctha names the interface vrrp.VRID and uses the standard MAC")
				}
			})
		case strings.HasPrefix(kw, "garp_") && kaInstanceReasons[kw] == "":
			k.garpKey(b, &garp, t, kw)
		case isNotify(kw):
			if k.notify(notify, b, t) {
				k.instHook[name] = true
			}
		case t.block && (kw == "unicast_peer" || kw == "virtual_ipaddress_excluded" || kw == "virtual_routes" ||
			kw == "virtual_rules" || isTrack(kw)):
			// below, in the spec's order
		default:
			why, ok := kaInstanceReasons[kw]
			switch {
			case ok:
			case t.block != blockKeyword(kw):
				why = "written without its block { ... }, or with one it does not take"
			default:
				why = "ctha's vrrp_instance has no such setting"
			}
			k.skip(b, t.pos, kw, why)
		}
	}
	if iface == "" || !validIface(iface) {
		k.skip(k.top, s.pos, "vrrp_instance "+name, "it names no valid interface (ctha binds each instance to one)")
		return nil
	}
	id, ok := integer(vrid, 1, 255)
	if !ok {
		k.skip(k.top, s.pos, "vrrp_instance "+name, "virtual_router_id must be from 1 to 255")
		return nil
	}
	if vipStmt == nil {
		k.skip(k.top, s.pos, "vrrp_instance "+name, "it has no virtual_ipaddress block (ctha needs at least one virtual IP)")
		return nil
	}
	vips, family := k.vips(b, vipStmt, iface)
	if len(vips) == 0 {
		k.skip(k.top, s.pos, "vrrp_instance "+name, "none of its virtual IPs could be carried")
		return nil
	}
	b.str("interface", iface)
	b.num("vrid", id)
	if prio != "" {
		p, ok := integer(prio, 1, 255)
		switch {
		case !ok:
			k.skip(b, s.pos, "priority "+prio, "must be from 1 to 255; ctha's default, 100, is used")
		case p == 255 && k.conntrack && k.drives(name):
			b.note("priority 255 (address owner) becomes 254: an owner would take over at boot before its conntrack table is complete.")
			k.warnings = append(k.warnings, fmt.Sprintf("%s: vrrp_instance %s: priority 255 written as 254 (a group that drives conntrack refuses an address owner)", s.pos, name))
			b.num("priority", 254)
		default:
			b.num("priority", p)
		}
	}
	// keepalived's default is version 2, or vrrp_version; IPv6 instances
	// always run version 3.
	v := 2
	if k.version != 0 {
		v = k.version
	}
	if version != "" {
		if version == "2" || version == "3" {
			v = int(version[0] - '0')
		} else {
			k.skip(b, s.pos, "version "+version, "must be 2 or 3")
		}
	}
	if family == 6 && v == 2 {
		b.note("version 3: keepalived runs IPv6 instances as version 3.")
		v = 3
	}
	b.num("version", v)
	if advert != nil {
		k.advert(b, advert, v)
	}
	if !preempt {
		b.boolean("preempt", false)
	}
	for _, f := range later {
		f()
	}
	b.strs("virtual_ips", vips)
	for _, t := range s.body {
		if t.key() == "unicast_peer" {
			k.unicastPeers(b, t)
		}
	}
	owner := prio == "255"
	k.tracking(b, s.body, g, owner)
	if g != nil {
		k.tracking(b, g.s.body, g, owner)
	}
	k.lists(b, s.body, iface)
	if len(notify.items) > 0 {
		b.items = append(b.items, item{block: notify})
	}
	if auth != nil {
		k.authentication(b, auth, v)
	}
	k.writeGARP(b, garp, family)
	return b
}

func validIface(s string) bool {
	return s != "" && len(s) <= 15 && s != "." && s != ".." && !strings.ContainsAny(s, "/: \t\n")
}

// advert converts advert_int for VRRP version v.
func (k *keepalived) advert(b *block, t *stmt, v int) {
	d, ok := seconds(first(t.args()))
	if !ok || d == 0 {
		k.skip(b, t.pos, "advert_int", "expects a number of seconds above 0")
		return
	}
	switch {
	case v == 2 && (d%time.Second != 0 || d > 255*time.Second):
		r := min(max((d+time.Second/2)/time.Second*time.Second, time.Second), 255*time.Second)
		b.note(fmt.Sprintf("%s: advert_int %s: VRRP version 2 counts whole seconds; %s.", t.pos, first(t.args()), duration(r)))
		k.warnings = append(k.warnings, fmt.Sprintf("%s: advert_int %s written as %s (version 2 counts whole seconds)", t.pos, first(t.args()), duration(r)))
		d = r
	case v == 3 && (d%(10*time.Millisecond) != 0 || d > 40950*time.Millisecond):
		r := min(max((d+5*time.Millisecond)/(10*time.Millisecond)*(10*time.Millisecond), 10*time.Millisecond), 40950*time.Millisecond)
		b.note(fmt.Sprintf("%s: advert_int %s: VRRP version 3 counts centiseconds; %s.", t.pos, first(t.args()), duration(r)))
		k.warnings = append(k.warnings, fmt.Sprintf("%s: advert_int %s written as %s (version 3 counts centiseconds up to 40.95s)", t.pos, first(t.args()), duration(r)))
		d = r
	}
	b.str("advert_interval", duration(d))
}

// prefix parses keepalived's address: ADDR or ADDR/LEN (a bare address
// is a host prefix).
func prefix(s string) (netip.Prefix, bool) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p, err == nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, a.BitLen()), true
}

// address converts one line of virtual_ipaddress(_excluded): "ADDR/LEN",
// with " dev IFACE" when it names an interface other than iface (or
// always, when keepDev). ok is false when it is not carried.
func (k *keepalived) address(b *block, t *stmt, iface string, keepDev bool) (string, netip.Prefix, bool) {
	w := t.words
	p, ok := prefix(w[0])
	if !ok {
		why := "not an address"
		if strings.Contains(w[0], "-") {
			why = "address ranges are not expanded; list each address"
		}
		k.skip(b, t.pos, "address "+w[0], why)
		return "", p, false
	}
	dev := ""
	var dropped []string
	for i := 1; i < len(w); i++ {
		switch w[i] {
		case "dev":
			if i+1 < len(w) {
				dev = w[i+1]
				i++
			}
		case "brd", "broadcast", "scope", "label", "peer", "preferred_lft", "track_group":
			if i+1 < len(w) {
				dropped = append(dropped, w[i]+" "+w[i+1])
				i++
			}
		default:
			dropped = append(dropped, w[i])
		}
	}
	if len(dropped) > 0 {
		k.skip(b, t.pos, fmt.Sprintf("%s of %s", strings.Join(dropped, ", "), p), "ctha adds the address with its prefix and interface only")
	}
	out := p.String()
	if dev != "" && (dev != iface || keepDev) {
		if !validIface(dev) {
			k.skip(b, t.pos, "address "+p.String(), fmt.Sprintf("dev %q is not an interface name", dev))
			return "", p, false
		}
		out += " dev " + dev
	}
	return out, p, true
}

// vips converts virtual_ipaddress: one family, as keepalived requires.
func (k *keepalived) vips(b *block, s *stmt, iface string) ([]string, int) {
	var (
		out    []string
		family int
	)
	for _, t := range s.body {
		v, p, ok := k.address(b, t, iface, false)
		if !ok {
			continue
		}
		f := 4
		if p.Addr().Is6() && !p.Addr().Is4In6() {
			f = 6
		}
		if family == 0 {
			family = f
		} else if f != family {
			k.skip(b, t.pos, "virtual IP "+p.String(), "an instance's virtual IPs are of one family; put it in virtual_ipaddress_excluded or another instance")
			continue
		}
		out = append(out, v)
	}
	return out, family
}

func (k *keepalived) unicastPeers(b *block, s *stmt) {
	var peers []string
	for _, t := range s.body {
		a, err := netip.ParseAddr(t.words[0])
		if err != nil {
			k.skip(b, t.pos, "unicast_peer "+t.words[0], "not an IP address")
			continue
		}
		if len(t.words) > 1 {
			k.skip(b, t.pos, strings.Join(t.words[1:], " ")+" of unicast_peer "+a.String(), "ctha checks the TTL is 255")
		}
		peers = append(peers, a.String())
	}
	if len(peers) > 0 {
		b.strs("unicast_peers", peers)
	}
}

// tracking converts the track_* blocks of an instance, or of its group
// (g's body), onto instance b. keepalived sets the weights of a group's
// members to 0 unless the group says sync_group_tracking_weight, and an
// address owner (priority 255) ignores whatever has a weight.
func (k *keepalived) tracking(b *block, body []*stmt, g *kaGroup, owner bool) {
	zero := g != nil && !g.weights
	// weight applies those two rules to the weight w of entry e of a
	// track_KIND block; note, when not "", says why the weight is 0.
	weight := func(kind string, e *stmt, w int) (n int, note string, ok bool) {
		switch {
		case w == 0:
		case zero:
			return 0, fmt.Sprintf("%s: weight %d becomes 0, as keepalived sets it in sync group %s (no sync_group_tracking_weight).", e.pos, w, g.name), true
		case owner:
			k.skip(b, e.pos, fmt.Sprintf("%s %s (weight %d)", kind, e.words[0], w), "keepalived ignores weighted tracking on an address owner (priority 255)")
			return 0, "", false
		}
		return w, "", true
	}
	var scripts []string
	for _, t := range body {
		if !t.block {
			continue
		}
		switch t.key() {
		case "track_interface":
			for _, e := range t.body {
				w, ok := k.trackWeight(b, e, 0, -253, 253)
				if !ok {
					continue
				}
				w, note, ok := weight("track_interface", e, w)
				if !ok {
					continue
				}
				if !validIface(e.words[0]) {
					k.skip(b, e.pos, "track_interface "+e.words[0], "not an interface name")
					continue
				}
				tb := b.add("track_interface", e.words[0])
				if note != "" {
					tb.note(note)
				}
				tb.num("weight", w)
			}
		case "track_script":
			for _, e := range t.body {
				sc, ok := k.scripts[e.words[0]]
				if !ok {
					k.skip(b, e.pos, "track_script "+e.words[0], "no vrrp_script of that name")
					continue
				}
				if sc.bad != "" {
					k.skip(b, e.pos, "track_script "+e.words[0], "the vrrp_script is not carried")
					continue
				}
				w, ok := k.trackWeight(b, e, sc.weight, -253, 253)
				if !ok {
					continue
				}
				w, note, ok := weight("track_script", e, w)
				if !ok {
					continue
				}
				if note != "" {
					b.note(strings.Replace(note, ": weight", ": track_script "+e.words[0]+": weight", 1))
				}
				scripts = append(scripts, k.scriptRef(sc, w))
			}
		case "track_file":
			for _, e := range t.body {
				f, ok := k.files[e.words[0]]
				if !ok {
					k.skip(b, e.pos, "track_file "+e.words[0], "no track_file of that name")
					continue
				}
				if f.reverse {
					k.skip(b, e.pos, "track_file "+e.words[0], "weight ... reverse has no ctha equivalent")
					continue
				}
				w, ok := k.trackWeight(b, e, f.weight, -254, 254)
				if !ok {
					continue
				}
				w, note, ok := weight("track_file", e, w)
				if !ok {
					continue
				}
				tb := b.add("track_file", f.path)
				if note != "" {
					tb.note(note)
				}
				tb.num("weight", w)
			}
		case "track_process":
			for _, e := range t.body {
				p, ok := k.procs[e.words[0]]
				switch {
				case !ok:
					k.skip(b, e.pos, "track_process "+e.words[0], "no vrrp_track_process of that name")
					continue
				case p.bad != "":
					k.skip(b, e.pos, "track_process "+e.words[0], p.bad)
					continue
				}
				w, ok := k.trackWeight(b, e, p.weight, -254, 254)
				if !ok {
					continue
				}
				w, note, ok := weight("track_process", e, w)
				if !ok {
					continue
				}
				for _, d := range p.delays {
					k.skip(b, d.pos, fmt.Sprintf("%s of vrrp_track_process %s", strings.Join(d.words, " "), e.words[0]), "ctha follows the process without a delay")
				}
				tb := b.add("track_process", p.process)
				if note != "" {
					tb.note(note)
				}
				tb.num("weight", w)
			}
		case "track_bfd":
			k.skip(b, t.pos, "track_bfd", kaInstanceReasons["track_bfd"])
		}
	}
	if len(scripts) > 0 {
		if b.has("track_scripts") {
			for i := range b.items {
				if b.items[i].name == "track_scripts" {
					for _, v := range b.items[i].val.AsValueSlice() {
						scripts = append([]string{v.AsString()}, scripts...)
					}
				}
			}
			b.items = removeAttr(b.items, "track_scripts")
		}
		b.strs("track_scripts", scripts)
	}
}

func removeAttr(items []item, name string) []item {
	out := items[:0]
	for _, it := range items {
		if it.name != name {
			out = append(out, it)
		}
	}
	return out
}

// trackWeight reads "NAME [weight N] [reverse|noreverse|no_reverse]";
// def when no weight is given.
func (k *keepalived) trackWeight(b *block, e *stmt, def, lo, hi int) (int, bool) {
	w := def
	args := e.args()
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "weight":
			if i+1 >= len(args) {
				k.skip(b, e.pos, e.key(), "weight without a value")
				return 0, false
			}
			n, ok := integer(args[i+1], lo, hi)
			if !ok {
				k.skip(b, e.pos, e.key(), fmt.Sprintf("weight must be from %d to %d", lo, hi))
				return 0, false
			}
			w = n
			i++
		case "reverse":
			k.skip(b, e.pos, e.key(), "weight ... reverse has no ctha equivalent")
			return 0, false
		case "noreverse", "no_reverse":
		default:
			k.skip(b, e.pos, e.key(), fmt.Sprintf("unknown option %q", args[i]))
			return 0, false
		}
	}
	return w, true
}

// notify converts a notify_* statement into notify block nb (owned by b,
// where notes go). It reports whether the command is conntrackd's
// primary-backup.sh, which is not copied: conntrack = true replaces it.
func (k *keepalived) notify(nb, b *block, t *stmt) bool {
	args := t.args()
	if len(args) == 0 {
		k.skip(b, t.pos, t.key(), "no command")
		return false
	}
	line := args[0]
	if strings.Contains(line, hookMark) {
		b.note(fmt.Sprintf("%s: %s %s: replaced by the sync group's conntrack = true.", t.pos, t.key(), line))
		return true
	}
	if len(args) > 1 {
		k.skip(b, t.pos, "user "+strings.Join(args[1:], " ")+" of "+t.key(), "ctha runs notify commands as root")
	}
	if w := strings.Fields(line); len(w) > 0 && !strings.HasPrefix(w[0], "/") {
		b.note(fmt.Sprintf("%s: %q has no absolute path; run through /bin/sh, which searches PATH.", t.pos, w[0]))
		line = quoteWords([]string{"/bin/sh", "-c", line})
	}
	key := strings.TrimPrefix(t.key(), "notify_")
	for i := range nb.items {
		if nb.items[i].name == key {
			l := append(nb.items[i].val.AsValueSlice(), cty.StringVal(line))
			nb.items[i].val = cty.ListVal(l)
			return false
		}
	}
	nb.strs(key, []string{line})
	return false
}

func (k *keepalived) authentication(b *block, s *stmt, v int) {
	var typ, pass string
	for _, t := range s.body {
		switch t.key() {
		case "auth_type":
			typ = strings.ToLower(first(t.args()))
		case "auth_pass":
			pass = first(t.args())
		default:
			k.skip(b, t.pos, "authentication "+t.key(), "not a keepalived authentication keyword")
		}
	}
	switch {
	case v == 3:
		k.skip(b, s.pos, "authentication", "VRRP version 3 has no authentication (RFC 5798); keepalived ignores it too")
	case typ != "pass" && typ != "ah":
		k.skip(b, s.pos, "authentication", fmt.Sprintf("auth_type %q is neither PASS nor AH", typ))
	case pass == "":
		k.skip(b, s.pos, "authentication", "no auth_pass")
	default:
		a := b.add("authentication")
		a.str("type", typ)
		a.str("password", pass)
	}
}

// writeGARP writes the garp block when keepalived set any of it.
func (k *keepalived) writeGARP(b *block, g kaGARP, family int) {
	interval := g.interval
	if family == 6 {
		interval = g.gnaInterval
	}
	if g.repeat == nil && g.delay == nil && g.refresh == nil && interval == nil && !g.min {
		return
	}
	gb := b.add("garp")
	if g.min {
		gb.note("vrrp_min_garp: one message, no second burst.")
		gb.num("repeat", 1)
		gb.str("delay", "0s")
	} else {
		if g.repeat != nil {
			n := min(max(int(*g.repeat), 1), 100)
			gb.num("repeat", n)
		}
		if g.delay != nil {
			gb.str("delay", duration(*g.delay))
		}
	}
	if interval != nil {
		gb.str("interval", duration(*interval))
	}
	if g.refresh != nil {
		gb.str("refresh", duration(*g.refresh))
	}
}

// lists converts virtual_ipaddress_excluded, virtual_routes and
// virtual_rules.
func (k *keepalived) lists(b *block, body []*stmt, iface string) {
	for _, t := range body {
		if !t.block {
			continue
		}
		switch t.key() {
		case "virtual_ipaddress_excluded":
			var out []string
			for _, e := range t.body {
				if v, _, ok := k.address(b, e, iface, false); ok {
					out = append(out, v)
				}
			}
			if len(out) > 0 {
				b.strs("excluded_virtual_ips", out)
			}
		case "virtual_routes":
			var objs [][][2]any
			for _, e := range t.body {
				if o := k.route(b, e); o != nil {
					objs = append(objs, o)
				}
			}
			if len(objs) > 0 {
				b.items = append(b.items, item{name: "virtual_routes", raw: objects(objs)})
			}
		case "virtual_rules":
			var objs [][][2]any
			for _, e := range t.body {
				if o := k.rule(b, e); o != nil {
					objs = append(objs, o)
				}
			}
			if len(objs) > 0 {
				b.items = append(b.items, item{name: "virtual_rules", raw: objects(objs)})
			}
		}
	}
}

// tables are the routing tables iproute2 names by default.
var tables = map[string]int{"main": 254, "local": 255, "default": 253}

func table(s string) (int, bool) {
	if n, ok := tables[s]; ok {
		return n, true
	}
	return integer(s, 1, 1<<31-1)
}

// route converts one virtual_routes line: to, via, dev, table, metric.
func (k *keepalived) route(b *block, e *stmt) [][2]any {
	w := e.words
	var o [][2]any
	var to, via, dev string
	tbl, metric := -1, -1
	bad := func(why string) [][2]any {
		k.skip(b, e.pos, "virtual_routes "+strings.Join(w, " "), why)
		return nil
	}
	for i := 0; i < len(w); i++ {
		next := func() (string, bool) {
			if i+1 >= len(w) {
				return "", false
			}
			i++
			return w[i], true
		}
		switch x := w[i]; x {
		case "to":
			v, ok := next()
			if !ok {
				return bad("to without an address")
			}
			to = v
		case "via", "gw":
			v, ok := next()
			if !ok {
				return bad(x + " without an address")
			}
			via = v
		case "dev":
			v, ok := next()
			if !ok {
				return bad("dev without an interface")
			}
			dev = v
		case "table":
			v, ok := next()
			n, ok2 := table(v)
			if !ok || !ok2 {
				return bad("ctha takes a table by number (or main, local, default)")
			}
			tbl = n
		case "metric", "priority", "preference":
			v, ok := next()
			n, ok2 := integer(v, 0, 1<<31-1)
			if !ok || !ok2 {
				return bad(x + " must be a number")
			}
			metric = n
		case "no_track":
			k.skip(b, e.pos, "no_track of route "+strings.Join(w, " "), "ctha restores what the role holds")
		default:
			if to == "" && i == 0 || to == "" && w[i-1] != "to" && strings.ContainsAny(x, ".:") {
				if x == "default" {
					x = "0.0.0.0/0"
				}
				if p, ok := prefix(x); ok {
					to = p.String()
					continue
				}
			}
			return bad(fmt.Sprintf("ctha's virtual_routes have to, via, dev, table and metric only (not %q)", x))
		}
	}
	if to == "" {
		return bad("no destination")
	}
	p, ok := prefix(to)
	if !ok {
		return bad(fmt.Sprintf("%q is not an address or prefix", to))
	}
	o = append(o, [2]any{"to", p.String()})
	if via != "" {
		a, err := netip.ParseAddr(via)
		if err != nil {
			return bad(fmt.Sprintf("via %q is not an address", via))
		}
		if a.Is6() && p == netip.MustParsePrefix("0.0.0.0/0") {
			o[0][1] = "::/0" // "default" via an IPv6 gateway
		}
		o = append(o, [2]any{"via", a.String()})
	}
	if dev != "" {
		o = append(o, [2]any{"dev", dev})
	}
	if tbl >= 0 {
		o = append(o, [2]any{"table", tbl})
	}
	if metric >= 0 {
		o = append(o, [2]any{"metric", metric})
	}
	return o
}

// rule converts one virtual_rules line: from, to, table, priority.
func (k *keepalived) rule(b *block, e *stmt) [][2]any {
	w := e.words
	var from, to string
	tbl, prio := -1, -1
	bad := func(why string) [][2]any {
		k.skip(b, e.pos, "virtual_rules "+strings.Join(w, " "), why)
		return nil
	}
	for i := 0; i < len(w); i++ {
		x := w[i]
		if x == "no_track" {
			k.skip(b, e.pos, "no_track of rule "+strings.Join(w, " "), "ctha restores what the role holds")
			continue
		}
		if i+1 >= len(w) {
			return bad(fmt.Sprintf("%q without a value", x))
		}
		i++
		v := w[i]
		switch x {
		case "from", "to":
			p, ok := prefix(v)
			if !ok {
				return bad(fmt.Sprintf("%s %q is not an address or prefix", x, v))
			}
			if x == "from" {
				from = p.String()
			} else {
				to = p.String()
			}
		case "table", "lookup":
			n, ok := table(v)
			if !ok {
				return bad("ctha takes a table by number (or main, local, default)")
			}
			tbl = n
		case "priority", "preference", "pref":
			n, ok := integer(v, 0, 1<<32-1)
			if !ok {
				return bad(x + " must be a number")
			}
			prio = n
		default:
			return bad(fmt.Sprintf("ctha's virtual_rules have from, to, table and priority only (not %q)", x))
		}
	}
	if tbl < 0 {
		return bad("no table")
	}
	var o [][2]any
	if from != "" {
		o = append(o, [2]any{"from", from})
	}
	if to != "" {
		o = append(o, [2]any{"to", to})
	}
	o = append(o, [2]any{"table", tbl})
	if prio >= 0 {
		o = append(o, [2]any{"priority", prio})
	}
	return o
}

func numVal(n int) cty.Value { return cty.NumberIntVal(int64(n)) }
