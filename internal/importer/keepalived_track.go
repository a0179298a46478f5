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
				w, ok := k.trackWeight(b, e, "track_interface", 0, -253, 253)
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
				w, ok := k.trackWeight(b, e, "track_script", sc.weight, -253, 253)
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
				w, rev, ok := k.trackWeightReverse(b, e, f.weight, f.reverse, -254, 254)
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
				if rev {
					tb.boolean("reverse", true)
				}
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
				w, rev, ok := k.trackWeightReverse(b, e, p.weight, p.reverse, -254, 254)
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
				if rev {
					tb.boolean("reverse", true)
				}
				if p.quorum != 1 {
					tb.num("quorum", p.quorum)
				}
				if p.quorumMax >= 0 {
					tb.num("quorum_max", p.quorumMax)
				}
				if p.full {
					tb.boolean("full_command", true)
				}
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

// trackWeight reads "NAME [weight N]" of a tracker that has no reverse
// in ctha (track_interface, track_script); def when no weight is given.
func (k *keepalived) trackWeight(b *block, e *stmt, kind string, def, lo, hi int) (int, bool) {
	w, rev, ok := k.trackWeightReverse(b, e, def, false, lo, hi)
	if ok && rev {
		k.skip(b, e.pos, kind+" "+e.key(), fmt.Sprintf("ctha's %s has no reverse", kind))
		return 0, false
	}
	return w, ok
}

// trackWeightReverse reads "NAME [weight N [reverse|noreverse]]" as
// keepalived does: without a weight the tracker's own weight and reverse
// (def, defRev) apply.
func (k *keepalived) trackWeightReverse(b *block, e *stmt, def int, defRev bool, lo, hi int) (int, bool, bool) {
	w, rev := def, defRev
	args := e.args()
	if len(args) == 0 {
		return w, rev, true
	}
	if args[0] != "weight" {
		k.skip(b, e.pos, e.key(), fmt.Sprintf("unknown option %q", args[0]))
		return 0, false, false
	}
	if len(args) < 2 {
		k.skip(b, e.pos, e.key(), "weight without a value")
		return 0, false, false
	}
	n, ok := integer(args[1], lo, hi)
	if !ok {
		k.skip(b, e.pos, e.key(), fmt.Sprintf("weight must be from %d to %d", lo, hi))
		return 0, false, false
	}
	w = n
	for _, a := range args[2:] {
		switch a {
		case "reverse":
			rev = true
		case "noreverse", "no_reverse":
			rev = false
		default:
			k.skip(b, e.pos, e.key(), fmt.Sprintf("unknown option %q", a))
			return 0, false, false
		}
	}
	return w, rev, true
}
