package importer

import (
	"fmt"
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

func numVal(n int) cty.Value { return cty.NumberIntVal(int64(n)) }
