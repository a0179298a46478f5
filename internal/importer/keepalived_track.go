package importer

import (
	"fmt"
	"strings"
)

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
