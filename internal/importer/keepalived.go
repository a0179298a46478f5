package importer

import (
	"fmt"
	"strings"
	"time"
)

// keepalived converts a parsed keepalived.conf.
type keepalived struct {
	*conv
	stmts []*stmt

	version int // global vrrp_version; 0: keepalived's default, 2
	garp    kaGARP

	scripts   map[string]*kaScript
	scriptOrd []string
	files     map[string]*kaTrackFile
	procs     map[string]*kaTrackProc
	groups    []*kaGroup
	groupOf   map[string]*kaGroup // instance name -> group

	// clones are the track_script blocks written for a weight other
	// than the script's own (ctha's weight belongs to the script).
	clones map[string]*kaScript
	// instHook: the instances whose own notify ran primary-backup.sh.
	instHook map[string]bool
}

// kaGARP holds garp settings, global or an instance's; nil: not set.
type kaGARP struct {
	repeat, refresh, delay, interval, gnaInterval *time.Duration
	min                                           bool
}

type kaScript struct {
	name    string
	pos     pos
	command []string
	b       *block // the track_script block, with its notes
	weight  int
	reverse bool
	used    bool   // an instance tracks it with its own weight
	cloned  bool   // an instance tracks it with another weight
	bad     string // why it is not carried; "" when it is
}

type kaTrackFile struct {
	path    string
	weight  int
	reverse bool
	pos     pos
}

type kaTrackProc struct {
	process string // with its parameters, when given
	// full: match the command line (parameters given, or param_match);
	// fullCmd: keepalived's full_command was written.
	full, fullCmd bool
	quorum        int
	quorumMax     int // -1: none
	weight        int
	reverse       bool
	pos           pos
	bad           string  // why it cannot be carried
	delays        []*stmt // its delays, which ctha has not
}

type kaGroup struct {
	name    string
	s       *stmt
	members []string
	weights bool // sync_group_tracking_weight
	hook    bool // a notify command runs primary-backup.sh
}

// Why keepalived's top-level blocks and global_defs keywords are not
// carried, where a reason more precise than "no equivalent" exists.
var kaTopReasons = map[string]string{
	"virtual_server":                  "ctha does no load balancing (LVS)",
	"virtual_server_group":            "ctha does no load balancing (LVS)",
	"static_ipaddress":                "ctha manages only the addresses that follow the role; configure static ones in the system's network configuration",
	"static_routes":                   "ctha manages only the routes that follow the role; configure static ones in the system's network configuration",
	"static_rules":                    "ctha manages only the rules that follow the role; configure static ones in the system's network configuration",
	"bfd_instance":                    "ctha has no BFD",
	"linkbeat_interfaces":             "ctha follows carrier by netlink",
	"garp_group":                      "ctha sets garp per vrrp_instance",
	"interface_up_down_delays":        "ctha reacts to carrier changes at once",
	"track_group":                     "ctha has no static tracking groups",
	"notification_email":              "ctha sends no mail; use a notify command",
	"notification_email_from":         "ctha sends no mail; use a notify command",
	"smtp_server":                     "ctha sends no mail; use a notify command",
	"smtp_connect_timeout":            "ctha sends no mail; use a notify command",
	"smtp_alert":                      "ctha sends no mail; use a notify command",
	"enable_script_security":          "ctha runs every command as root, by absolute path; check that only root can change them",
	"script_user":                     "ctha runs every command as root; check that only root can change them",
	"vrrp_strict":                     "ctha installs no firewall rules and always accepts packets to the virtual IPs",
	"vrrp_iptables":                   "ctha installs no firewall rules (see examples/ctha.nft)",
	"nftables":                        "ctha installs no firewall rules (see examples/ctha.nft)",
	"vrrp_mcast_group4":               "ctha uses the standard group 224.0.0.18",
	"vrrp_mcast_group6":               "ctha uses the standard group ff02::12",
	"vrrp_skip_check_adv_addr":        "ctha checks every advert's addresses",
	"vrrp_garp_lower_prio_delay":      "ctha sends gratuitous ARP when it becomes master, and by garp.refresh",
	"vrrp_garp_lower_prio_repeat":     "ctha sends gratuitous ARP when it becomes master, and by garp.refresh",
	"vrrp_garp_master_refresh_repeat": "ctha's periodic burst has garp.repeat messages",
	"vrrp_priority":                   "use ctha run under systemd's Nice= or realtime_priority",
	"vrrp_no_swap":                    "ctha needs no memory locking",
	"vrrp_rt_priority":                "use realtime_priority",
	"dynamic_interfaces":              "ctha follows interfaces that are deleted and created again",
	"net_namespace":                   "run ctha in the namespace (ip netns exec, or systemd's NetworkNamespacePath=)",
	"max_auto_priority":               "use realtime_priority",
	"lvs_sync_daemon":                 "ctha does no load balancing (LVS)",
	"lvs_flush":                       "ctha does no load balancing (LVS)",
}

// convert writes the instances, track scripts and sync groups; it
// reports whether any instance was carried.
func (k *keepalived) convert() bool {
	k.scripts = map[string]*kaScript{}
	k.files = map[string]*kaTrackFile{}
	k.procs = map[string]*kaTrackProc{}
	k.groupOf = map[string]*kaGroup{}
	k.clones = map[string]*kaScript{}
	k.instHook = map[string]bool{}
	var instances []*stmt
	seen := map[string]pos{}
	for _, s := range k.stmts {
		switch kw := s.key(); {
		case kw == "global_defs" && s.block:
			k.globals(s)
		case kw == "vrrp_script" && s.block && len(s.args()) == 1:
			k.script(s)
		case (kw == "track_file" || kw == "vrrp_track_file") && s.block && len(s.args()) == 1:
			k.trackFile(s)
		case kw == "vrrp_track_process" && s.block && len(s.args()) == 1:
			k.trackProc(s)
		case kw == "vrrp_sync_group" && s.block && len(s.args()) == 1:
			k.group(s)
		case kw == "vrrp_instance" && s.block && len(s.args()) == 1:
			if p, dup := seen[s.args()[0]]; dup {
				k.skip(k.top, s.pos, "vrrp_instance "+s.args()[0], "a second instance of that name (the first is at "+p.String()+")")
				continue
			}
			seen[s.args()[0]] = s.pos
			instances = append(instances, s)
		default:
			why, ok := kaTopReasons[kw]
			switch kw {
			case "global_defs":
				why, ok = "expects a block { ... }", true
			case "vrrp_script", "track_file", "vrrp_track_file", "vrrp_track_process", "vrrp_sync_group", "vrrp_instance":
				why, ok = "expects one name and a block: "+kw+" NAME { ... }", true
			}
			if !ok {
				why = "not a keepalived keyword ctha knows"
				if strings.HasPrefix(kw, "@") || strings.HasPrefix(kw, "$") {
					why = "conditional configuration and parameters are not expanded; import the file keepalived writes with -i/--config-id applied, or edit"
				}
			}
			k.skip(k.top, s.pos, kw, why)
		}
	}
	// Which instances run primary-backup.sh, before any is converted: the
	// group that drives conntrack must not hold an address owner.
	for _, s := range instances {
		for _, t := range s.body {
			if isNotify(t.key()) && strings.Contains(first(t.args()), hookMark) {
				k.instHook[s.args()[0]] = true
			}
		}
	}
	for _, g := range k.groups {
		for _, t := range g.s.body {
			if isNotify(t.key()) && strings.Contains(first(t.args()), hookMark) {
				g.hook = true
			}
		}
	}
	var carried []*block
	for _, s := range instances {
		if b := k.instance(s); b != nil {
			carried = append(carried, b)
		}
	}
	for _, b := range carried {
		k.top.items = append(k.top.items, item{block: b})
	}
	k.writeScripts()
	k.writeGroups(carried)
	return len(carried) > 0
}

func (k *keepalived) globals(s *stmt) {
	for _, g := range s.body {
		args := g.args()
		switch kw := g.key(); kw {
		case "router_id":
			if len(args) == 1 && validNodeName(args[0]) {
				k.top.note(fmt.Sprintf("node_name from %s: router_id.", g.pos))
				k.top.str("node_name", args[0])
			} else {
				k.skip(k.top, g.pos, "router_id", "not a valid node_name (1-64 printable characters without spaces)")
			}
		case "vrrp_version":
			if len(args) == 1 && (args[0] == "2" || args[0] == "3") {
				k.version = int(args[0][0] - '0')
			} else {
				k.skip(k.top, g.pos, "vrrp_version", "must be 2 or 3")
			}
		case "vrrp_garp_master_delay", "vrrp_garp_master_repeat", "vrrp_garp_master_refresh",
			"vrrp_garp_interval", "vrrp_gna_interval", "vrrp_min_garp":
			k.garpKey(k.top, &k.garp, g, strings.TrimPrefix(kw, "vrrp_"))
		default:
			why, ok := kaTopReasons[kw]
			if !ok {
				why = "ctha has no such global setting"
			}
			k.skip(k.top, g.pos, "global_defs "+kw, why)
		}
	}
}

// garpKey reads one garp keyword (without vrrp_) into g.
func (k *keepalived) garpKey(b *block, g *kaGARP, s *stmt, kw string) {
	args := s.args()
	if kw == "min_garp" {
		v, ok := true, true
		if len(args) == 1 {
			v, ok = onOff(args[0])
		}
		if !ok || len(args) > 1 {
			k.skip(b, s.pos, kw, "expects on or off")
			return
		}
		g.min = v
		return
	}
	if len(args) != 1 {
		k.skip(b, s.pos, kw, "expects one value")
		return
	}
	d, ok := seconds(args[0])
	if !ok {
		k.skip(b, s.pos, kw, fmt.Sprintf("%q is not a number", args[0]))
		return
	}
	switch kw {
	case "garp_master_delay":
		g.delay = &d
	case "garp_master_repeat":
		n := time.Duration(d / time.Second)
		g.repeat = &n
	case "garp_master_refresh":
		g.refresh = &d
	case "garp_interval":
		g.interval = &d
	case "gna_interval":
		g.gnaInterval = &d
	}
}

func (k *keepalived) group(s *stmt) {
	g := &kaGroup{name: s.args()[0], s: s}
	for _, t := range s.body {
		switch t.key() {
		case "group":
			for _, m := range t.body {
				g.members = append(g.members, m.words...)
			}
		case "sync_group_tracking_weight", "global_tracking":
			g.weights = true
		}
	}
	for _, m := range g.members {
		if _, dup := k.groupOf[m]; !dup {
			k.groupOf[m] = g
		}
	}
	k.groups = append(k.groups, g)
}

// drives reports whether instance name will be in the sync group that
// runs primary-backup.sh (its own, or one made for it).
func (k *keepalived) drives(name string) bool {
	g := k.groupOf[name]
	if g == nil {
		return k.instHook[name]
	}
	if g.hook {
		return true
	}
	for _, m := range g.members {
		if k.groupOf[m] == g && k.instHook[m] {
			return true
		}
	}
	return false
}

// writeGroups writes the sync groups: the keepalived ones, and one per
// instance outside a group whose notify ran primary-backup.sh.
func (k *keepalived) writeGroups(carried []*block) {
	have := map[string]bool{}
	for _, b := range carried {
		have[b.labels[0]] = true
	}
	driving := ""
	for _, g := range k.groups {
		b := &block{typ: "sync_group", labels: []string{g.name}}
		var members []string
		for _, m := range g.members {
			if have[m] && k.groupOf[m] == g {
				members = append(members, m)
				continue
			}
			why := "no vrrp_instance of that name was carried"
			if k.groupOf[m] != g {
				why = "it is already in vrrp_sync_group " + k.groupOf[m].name
			}
			k.skip(b, g.s.pos, "group member "+m, why)
		}
		if len(members) == 0 {
			k.skip(k.top, g.s.pos, "vrrp_sync_group "+g.name, "none of its instances was carried")
			continue
		}
		b.strs("instances", members)
		notify := &block{typ: "notify"}
		for _, t := range g.s.body {
			switch kw := t.key(); {
			case kw == "group" && t.block, isTrack(kw) && t.block, kw == "sync_group_tracking_weight":
				// members, and tracking applied to each member instance
			case isNotify(kw):
				if k.notify(notify, b, t) {
					g.hook = true
				}
			default:
				why := "ctha's sync_group has no such setting"
				switch kw {
				case "smtp_alert":
					why = kaTopReasons["smtp_alert"]
				case "global_tracking":
					why = "deprecated in keepalived; the tracking is carried to each instance"
				}
				k.skip(b, t.pos, kw, why)
			}
		}
		for _, m := range members {
			g.hook = g.hook || k.instHook[m]
		}
		if g.hook {
			driving = k.driver(b, g.name, driving)
		}
		if len(notify.items) > 0 {
			b.items = append(b.items, item{block: notify})
		}
		k.top.items = append(k.top.items, item{block: b})
	}
	for _, b := range carried {
		name := b.labels[0]
		if !k.instHook[name] || k.groupOf[name] != nil {
			continue
		}
		g := &block{typ: "sync_group", labels: []string{name}}
		g.note(fmt.Sprintf("vrrp_instance %s ran primary-backup.sh outside a sync group: a group of its own drives conntrack.", name))
		g.strs("instances", []string{name})
		driving = k.driver(g, name, driving)
		k.top.items = append(k.top.items, item{block: g})
	}
}

// driver sets conntrack = true on group b when it may: the first such
// group, with a conntrack_sync block. It returns the driving group.
func (k *keepalived) driver(b *block, name, driving string) string {
	switch {
	case !k.conntrack:
		b.note("primary-backup.sh ran here, but no conntrackd.conf was imported: once conntrack_sync is")
		b.note("configured, set conntrack = true.")
		k.warnings = append(k.warnings, fmt.Sprintf("sync_group %s: primary-backup.sh hooks found but no conntrack_sync: conntrack = true left out", name))
		return driving
	case driving != "":
		b.note(fmt.Sprintf("primary-backup.sh ran here too, but sync_group %s drives conntrack: one group may.", driving))
		k.warnings = append(k.warnings, fmt.Sprintf("sync_group %s: primary-backup.sh hooks, but sync_group %s already drives conntrack", name, driving))
		return driving
	}
	b.note("conntrackd's primary-backup.sh: ctha commits, flushes, resyncs and purges itself, in order.")
	b.boolean("conntrack", true)
	return name
}

func validNodeName(s string) bool {
	return s != "" && len(s) <= 64 && strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r > '~' }) < 0
}
