package importer

import (
	"fmt"
	"net/netip"
	"strings"
)

// conntrackdSyntax: comments start with #.
var conntrackdSyntax = syntax{comment: func(c byte) bool { return c == '#' }}

// conntrackd converts a parsed conntrackd.conf.
type conntrackd struct {
	*conv
	name  string // the file, as shown
	stmts []*stmt
}

// Why conntrackd's keywords are not carried.
var ctReasons = map[string]string{
	"HashSize":                   "ctha sizes its caches itself",
	"HashLimit":                  "ctha's caches are bounded by the kernel's table (nf_conntrack_max)",
	"LogFile":                    "ctha logs to stderr, the journal (log block)",
	"Syslog":                     "ctha logs to stderr, the journal (log block)",
	"LockFile":                   "ctha locks its state_dir",
	"UNIX":                       "ctha's control socket is control { socket }",
	"NetlinkBufferSize":          "ctha sizes its netlink socket itself, and resyncs after an overrun",
	"NetlinkBufferSizeMaxGrowth": "ctha sizes its netlink socket itself, and resyncs after an overrun",
	"SocketBufferSize":           "ctha sizes its netlink socket itself, and resyncs after an overrun",
	"SocketBufferSizeMaxGrown":   "ctha sizes its netlink socket itself, and resyncs after an overrun",
	"SocketBufferSizeMaxGrowth":  "ctha sizes its netlink socket itself, and resyncs after an overrun",
	"NetlinkOverrunResync":       "ctha resyncs after every overrun, at once",
	"NetlinkEventsReliable":      "ctha resyncs after every overrun",
	"PollSecs":                   "ctha follows events, with a periodic reconciling dump",
	"EventIterationLimit":        "ctha has no such limit",
	"Nice":                       "use systemd's Nice= in the unit",
	"Scheduler":                  "use realtime_priority",
	"Systemd":                    "ctha always talks to systemd (Type=notify)",
	"Stats":                      "ctha has no statistics mode; its metrics are Prometheus'",
	"Helper":                     "ctha runs no userspace helpers",
	"ResendQueueSize":            "ctha sizes its resend queue itself",
	"ResendBufferSize":           "ctha sizes its resend queue itself",
	"ACKWindowSize":              "ctha sizes its acknowledgement window itself",
	"Window":                     "ctha sizes its acknowledgement window itself",
	"DisableInternalCache":       "ctha always keeps an internal cache (it answers the peer's requests)",
	"StartupResync":              "ctha always asks the peer for a bulk copy when it starts",
	"SndSocketBuffer":            "ctha sizes its sync sockets itself",
	"RcvSocketBuffer":            "ctha sizes its sync sockets itself",
	"Checksum":                   "ctha authenticates every sync datagram with HMAC, which covers more than a checksum",
	"TCP":                        "ctha replicates over its own reliable protocol on UDP",
}

func (c *conntrackd) why(kw, def string) string {
	if r, ok := ctReasons[kw]; ok {
		return r
	}
	return def
}

// convert returns the conntrack_sync block; nil when it has no usable
// link (notes go to the top of the file).
func (c *conntrackd) convert() *block {
	b := &block{typ: "conntrack_sync"}
	gen := &block{} // notes of General, written at the block's end
	var (
		mode     string
		modeOpts []*stmt
		links    []*stmt
		options  []*stmt
		filters  []*stmt
		syncPos  pos
	)
	for _, s := range c.stmts {
		switch s.key() {
		case "Sync":
			syncPos = s.pos
			for _, t := range s.body {
				switch t.key() {
				case "Mode":
					mode = strings.ToLower(first(t.args()))
					modeOpts = append(modeOpts, t.body...)
					b.note(fmt.Sprintf("%s: Mode %s.", t.pos, first(t.args())))
				case "Multicast", "UDP":
					links = append(links, t)
				case "Options":
					options = append(options, t.body...)
				default:
					c.skip(b, t.pos, t.key(), c.why(t.key(), "not a Sync setting ctha knows"))
				}
			}
		case "General":
			for _, t := range s.body {
				if t.key() == "Filter" {
					filters = append(filters, t)
					continue
				}
				c.skip(gen, t.pos, t.key(), c.why(t.key(), "not a General setting ctha knows"))
			}
		default:
			c.skip(b, s.pos, s.key(), c.why(s.key(), "not a conntrackd section ctha knows"))
		}
	}
	if syncPos.line == 0 {
		c.skip(c.top, pos{file: c.name, line: 1}, c.name, "it has no Sync section")
		c.moveNotes(b)
		c.moveNotes(gen)
		return nil
	}
	switch mode {
	case "ftfw", "nack":
		b.str("mode", "reliable")
	case "alarm", "persistent":
		b.str("mode", "alarm")
	case "notrack":
		c.skip(b, syncPos, "Mode NOTRACK", "best effort without acknowledgements has no ctha equivalent; mode = \"reliable\" (FTFW's) replaces it")
		b.str("mode", "reliable")
	case "":
		c.skip(b, syncPos, "Sync", "it has no Mode; mode = \"reliable\" (FTFW's)")
		b.str("mode", "reliable")
	default:
		c.skip(b, syncPos, "Mode "+mode, "unknown mode; mode = \"reliable\" (FTFW's)")
		b.str("mode", "reliable")
	}
	cache := "external"
	for _, t := range modeOpts {
		args := t.args()
		switch kw := t.key(); kw {
		case "DisableExternalCache":
			if v, ok := onOff(first(args)); ok && v {
				cache = "direct"
			}
		case "PurgeTimeout":
			if d, ok := seconds(first(args)); ok && d > 0 {
				b.str("purge_delay", duration(d))
			} else {
				c.skip(b, t.pos, kw, "expects seconds above 0")
			}
		case "CommitTimeout":
			c.skip(b, t.pos, "CommitTimeout "+first(args), "it is the timeout conntrackd gives committed entries, not a time to wait for the commit (ctha's commit_timeout); ctha commits each entry with the timeout the peer reported")
		case "RefreshTime", "CacheTimeout":
			d, ok := seconds(first(args))
			switch {
			case mode != "alarm" && mode != "persistent":
				c.skip(b, t.pos, kw, "used by the ALARM mode only")
			case !ok || d == 0:
				c.skip(b, t.pos, kw, "expects seconds above 0")
			case kw == "RefreshTime":
				b.str("refresh_interval", duration(d))
			default:
				b.str("cache_timeout", duration(d))
			}
		default:
			c.skip(b, t.pos, kw, c.why(kw, "not a Mode setting ctha knows"))
		}
	}
	if cache == "external" {
		b.note("conntrackd's default, the external cache, committed at takeover. ctha's default, \"direct\",")
		b.note("writes the peer's states into the kernel as they arrive: nothing to commit at takeover.")
	} else {
		b.note("DisableExternalCache on: the peer's states go into the kernel as they arrive.")
	}
	b.str("cache", cache)
	n := c.links(b, links)
	if n == 0 {
		c.skip(c.top, syncPos, "Sync", "no Multicast or UDP channel could be carried over (ctha needs a link)")
		c.moveNotes(b)
		c.moveNotes(gen)
		return nil
	}
	b.note("conntrackd does not authenticate its datagrams; ctha does. Write the key once:")
	b.note("  ctha keygen /etc/ctha/sync.key   (next to this file), and copy it to the peer (mode 0600).")
	b.str("auth_key_file", "sync.key")
	c.warnings = append(c.warnings, "conntrack_sync: auth_key_file = \"sync.key\": create it with `ctha keygen` next to the file and copy it to the peer")
	c.options(b, options)
	c.filters(b, filters)
	b.items = append(b.items, gen.items...)
	return b
}

// moveNotes keeps the notes of a block that is not written.
func (c *conntrackd) moveNotes(b *block) {
	for _, it := range b.items {
		if it.comment != "" {
			c.top.items = append(c.top.items, it)
		}
	}
}

// links writes one link block per Multicast or UDP channel, the one
// marked Default first, and returns how many it wrote.
func (c *conntrackd) links(b *block, chans []*stmt) int {
	var ordered []*stmt
	for _, t := range chans {
		if first(t.args()) == "Default" {
			ordered = append([]*stmt{t}, ordered...)
		} else {
			ordered = append(ordered, t)
		}
	}
	n := 0
	for _, t := range ordered {
		if n == 4 {
			c.skip(b, t.pos, t.key(), "ctha has at most 4 links")
			continue
		}
		if l := c.link(b, t, fmt.Sprintf("sync%d", n)); l != nil {
			b.items = append(b.items, item{block: l})
			n++
		}
	}
	return n
}

func (c *conntrackd) link(b *block, t *stmt, name string) *block {
	l := &block{typ: "link", labels: []string{name}}
	l.note(strings.TrimSpace(fmt.Sprintf("%s: %s %s", t.pos, t.key(), strings.Join(t.args(), " "))) + ".")
	var iface, local, remote string
	port := 3780
	for _, o := range t.body {
		args := o.args()
		switch kw := o.key(); kw {
		case "Interface":
			iface = first(args)
		case "IPv4_address", "IPv6_address":
			if t.key() == "Multicast" {
				remote = first(args)
			} else {
				local = first(args)
			}
		case "IPv4_interface":
			local = first(args)
		case "IPv6_interface":
			if _, err := netip.ParseAddr(first(args)); err == nil {
				local = first(args)
			} else if iface == "" {
				iface = first(args)
			}
		case "IPv4_Destination_Address", "IPv6_Destination_Address":
			remote = first(args)
		case "Port", "Group":
			p, ok := integer(first(args), 1, 65535)
			if !ok {
				c.skip(l, o.pos, kw, "expects a port from 1 to 65535")
				continue
			}
			port = p
		default:
			c.skip(l, o.pos, kw, c.why(kw, "not a channel setting ctha knows"))
		}
	}
	what := t.key() + " channel"
	switch {
	case iface == "" || !validIface(iface):
		c.skip(b, t.pos, what, "it names no valid Interface (ctha binds each link to one)")
		return nil
	case local == "":
		c.skip(b, t.pos, what, "it has no local address (IPv4_interface, or UDP's IPv4_address)")
		return nil
	case remote == "":
		c.skip(b, t.pos, what, "it has no peer (UDP's IPv4_Destination_Address) or group (Multicast's IPv4_address)")
		return nil
	}
	la, err1 := netip.ParseAddr(local)
	ra, err2 := netip.ParseAddr(remote)
	if err1 != nil || err2 != nil {
		c.skip(b, t.pos, what, "its addresses do not parse")
		return nil
	}
	l.str("interface", iface)
	l.str("local", la.String())
	if t.key() == "Multicast" {
		l.str("multicast_group", ra.String())
	} else {
		l.str("peer", ra.String())
	}
	l.num("port", port)
	return l
}

func (c *conntrackd) options(b *block, opts []*stmt) {
	for _, t := range opts {
		args := t.args()
		switch kw := t.key(); kw {
		case "TCPWindowTracking":
			if v, ok := onOff(first(args)); ok {
				b.boolean("tcp_window_tracking", v)
			} else {
				c.skip(b, t.pos, kw, "expects On or Off")
			}
		case "ExpectationSync":
			if t.block {
				var helpers []string
				for _, h := range t.body {
					helpers = append(helpers, h.words...)
				}
				c.skip(b, t.pos, "ExpectationSync's helper list ("+strings.Join(helpers, " ")+")", "ctha replicates the expectations of every helper")
				b.boolean("expectations", true)
				continue
			}
			if v, ok := onOff(first(args)); ok {
				b.boolean("expectations", v)
			} else {
				c.skip(b, t.pos, kw, "expects On, Off or a list of helpers")
			}
		default:
			c.skip(b, t.pos, kw, c.why(kw, "not an Option ctha knows"))
		}
	}
	if !b.has("expectations") {
		b.note("conntrackd replicates no expectations unless ExpectationSync says so.")
		b.boolean("expectations", false)
	}
}

// conntrackd's protocol names, as ctha's filter writes them.
var ctProtocols = map[string]string{
	"tcp": "tcp", "udp": "udp", "udplite": "udplite", "icmp": "icmp", "ipv6-icmp": "icmpv6",
	"icmpv6": "icmpv6", "sctp": "sctp", "dccp": "dccp", "gre": "gre",
}

// ctha's TCP states, as cfg knows them; conntrackd's CLOSED is CLOSE and
// its LISTEN is SYN_SENT2.
var tcpStates = []string{"SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
	"LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

func (c *conntrackd) filters(b *block, filters []*stmt) {
	if len(filters) == 0 {
		return
	}
	fb := &block{typ: "filter"}
	var protocols, ignore, states []string
	for _, f := range filters {
		for _, t := range f.body {
			args := t.args()
			action := first(args)
			var words []string
			for _, e := range t.body {
				words = append(words, e.words...)
			}
			switch {
			case t.key() == "Protocol" && action == "Accept":
				for _, w := range words {
					if p, ok := ctProtocols[strings.ToLower(w)]; ok {
						protocols = append(protocols, p)
					} else {
						c.skip(fb, t.pos, "protocol "+w, "ctha's filter knows tcp, udp, udplite, icmp, icmpv6, sctp, dccp and gre")
					}
				}
			case t.key() == "Address" && action == "Ignore":
				for _, e := range t.body {
					if len(e.words) != 2 || (e.words[0] != "IPv4_address" && e.words[0] != "IPv6_address") {
						c.skip(fb, e.pos, strings.Join(e.words, " "), "expected IPv4_address or IPv6_address and an address")
						continue
					}
					p, ok := prefix(e.words[1])
					if !ok {
						c.skip(fb, e.pos, e.words[1], "not an address or prefix")
						continue
					}
					ignore = append(ignore, p.Masked().String())
				}
			case t.key() == "State" && (action == "Accept" || action == "Ignore"):
				got, ok := c.states(fb, t, words)
				if !ok {
					continue
				}
				if action == "Ignore" && len(complement(got)) == 0 {
					c.skip(fb, t.pos, "State Ignore", "it ignores every TCP state; ctha's filter cannot say so")
					continue
				}
				if action == "Ignore" {
					fb.note(fmt.Sprintf("%s: State Ignore { %s }: every other TCP state is accepted.", t.pos, strings.Join(got, " ")))
					got = complement(got)
				}
				states = append(states, got...)
			default:
				c.skip(fb, t.pos, t.key()+" "+action, "ctha's filter accepts protocols and TCP states, and ignores addresses; it has no other kind")
			}
		}
	}
	if len(protocols) > 0 {
		fb.strs("protocols", dedup(protocols))
	}
	if len(ignore) > 0 {
		fb.note("Address Ignore; ctha also ignores the node's own addresses by itself.")
		fb.strs("ignore_addresses", dedup(ignore))
	}
	if len(states) > 0 {
		fb.strs("tcp_states", dedup(states))
	}
	b.items = append(b.items, item{block: fb})
}

// states reads "STATE ... for TCP" as ctha's state names.
func (c *conntrackd) states(fb *block, t *stmt, words []string) ([]string, bool) {
	var out []string
	for i, w := range words {
		if w == "for" {
			if len(words) != i+2 || words[i+1] != "TCP" {
				c.skip(fb, t.pos, "State "+strings.Join(words[i:], " "), "ctha filters TCP states only")
				return nil, false
			}
			break
		}
		switch w {
		case "CLOSED":
			w = "CLOSE"
		case "LISTEN":
			w = "SYN_SENT2"
		}
		if !contains(tcpStates, w) {
			c.skip(fb, t.pos, "State "+w, "not a TCP state")
			continue
		}
		out = append(out, w)
	}
	return out, len(out) > 0
}

func complement(states []string) []string {
	var out []string
	for _, s := range tcpStates {
		if !contains(states, s) {
			out = append(out, s)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func dedup(list []string) []string {
	var out []string
	for _, s := range list {
		if !contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
