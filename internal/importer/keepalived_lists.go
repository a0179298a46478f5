package importer

import (
	"fmt"
	"net/netip"
	"strings"
)

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
