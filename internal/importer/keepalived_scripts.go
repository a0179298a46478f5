package importer

import (
	"fmt"
	"strings"
	"time"

	"github.com/ctha/ctha/cfg"
)

func (k *keepalived) script(s *stmt) {
	sc := &kaScript{name: s.args()[0], pos: s.pos, b: &block{typ: "track_script", labels: []string{s.args()[0]}}}
	k.scripts[sc.name] = sc
	k.scriptOrd = append(k.scriptOrd, sc.name)
	b := sc.b
	var interval, timeout *time.Duration
	rise, fall := 1, 1 // keepalived's defaults; ctha's are 2 and 3
	for _, t := range s.body {
		args := t.args()
		switch t.key() {
		case "script":
			if len(args) == 0 {
				k.skip(b, t.pos, "script", "no command")
				continue
			}
			line := strings.Join(args, " ")
			if len(args) > 1 {
				line = quoteWords(args)
			}
			argv, err := cfg.SplitCommand(line)
			if err != nil {
				sc.bad = fmt.Sprintf("the script %q cannot be split into words: %v", line, err)
				continue
			}
			if !strings.HasPrefix(argv[0], "/") {
				b.note(fmt.Sprintf("%s: %q has no absolute path; run through /bin/sh, which searches PATH as keepalived does.", t.pos, argv[0]))
				argv = []string{"/bin/sh", "-c", line}
			}
			sc.command = argv
		case "interval", "timeout":
			d, ok := seconds(first(args))
			if !ok || d == 0 {
				k.skip(b, t.pos, t.key(), "expects a number of seconds above 0")
				continue
			}
			if t.key() == "interval" {
				interval = &d
			} else {
				timeout = &d
			}
		case "weight":
			w, ok := integer(first(args), -253, 253)
			if !ok {
				sc.bad = "weight must be from -253 to 253"
				continue
			}
			sc.weight = w
			if len(args) > 1 && args[1] == "reverse" {
				sc.reverse = true
			}
		case "rise", "fall":
			n, ok := integer(first(args), 1, 100)
			if !ok {
				k.skip(b, t.pos, t.key(), "expects a count from 1 to 100")
				continue
			}
			if t.key() == "rise" {
				rise = n
			} else {
				fall = n
			}
		case "user":
			k.skip(b, t.pos, "user", "ctha runs track scripts as root")
		case "init_fail":
			k.skip(b, t.pos, "init_fail", "ctha counts a script as failed until it has succeeded rise times")
		default:
			k.skip(b, t.pos, t.key(), "ctha's track_script has no such setting")
		}
	}
	if sc.command == nil && sc.bad == "" {
		sc.bad = "it has no script"
	}
	if sc.reverse {
		sc.bad = "weight ... reverse has no ctha equivalent"
	}
	if sc.bad != "" {
		return
	}
	iv := time.Second // keepalived's default
	if interval != nil {
		iv = *interval
	}
	to := iv
	if timeout != nil {
		to = *timeout
	}
	if to > iv {
		b.note(fmt.Sprintf("timeout %s is cut to the interval: ctha runs one check at a time.", duration(to)))
		k.warnings = append(k.warnings, fmt.Sprintf("%s: vrrp_script %s: timeout %s cut to the interval %s", s.pos, sc.name, duration(to), duration(iv)))
		to = iv
	}
	b.strs("command", sc.command)
	b.str("interval", duration(iv))
	b.str("timeout", duration(to))
	b.num("rise", rise)
	b.num("fall", fall)
	b.num("weight", sc.weight)
}

func first(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

func (k *keepalived) trackFile(s *stmt) {
	f := &kaTrackFile{weight: 1, pos: s.pos}
	for _, t := range s.body {
		args := t.args()
		switch t.key() {
		case "file":
			f.path = first(args)
		case "weight":
			w, ok := integer(first(args), -254, 254)
			if !ok {
				k.skip(k.top, t.pos, "track_file weight", "must be from -254 to 254")
				continue
			}
			f.weight = w
			f.reverse = len(args) > 1 && args[1] == "reverse"
		case "init_file":
			k.skip(k.top, t.pos, "track_file init_file", "ctha does not create the file (a missing one reads as 0); create it with tmpfiles.d or the unit")
		default:
			k.skip(k.top, t.pos, "track_file "+t.key(), "ctha's track_file has a file, a weight and reverse only")
		}
	}
	if f.path == "" {
		k.skip(k.top, s.pos, "track_file "+s.args()[0], "it names no file")
		return
	}
	k.files[s.args()[0]] = f
}

// trackProc reads a vrrp_track_process block as keepalived's handlers
// do, in order: a quorum above quorum_max, or a quorum_max below the
// quorum, is ignored (and said so).
func (k *keepalived) trackProc(s *stmt) {
	name := s.args()[0]
	// keepalived's defaults: weight 0 (FAULT without a quorum), quorum 1,
	// no quorum_max.
	p := &kaTrackProc{quorum: 1, quorumMax: -1, pos: s.pos}
	var params, partial bool // parameters given; param_match initial or partial
	ignore := func(t *stmt, why string) {
		k.skip(k.top, t.pos, fmt.Sprintf("%s of vrrp_track_process %s", strings.Join(t.words, " "), name), why)
	}
	for _, t := range s.body {
		args := t.args()
		switch t.key() {
		case "process":
			switch {
			case len(args) == 0:
				ignore(t, "no process name")
				continue
			case p.process != "":
				ignore(t, "keepalived takes the first process line only")
				continue
			}
			p.process = strings.Join(args, " ")
			if len(args) > 1 {
				// keepalived matches the command line then, the
				// parameters exactly: ctha's full_command.
				params, p.full = true, true
				for _, a := range args {
					if a == "" || strings.ContainsAny(a, " \t") {
						p.bad = fmt.Sprintf("the parameter %q holds a space: ctha's full_command matches the command line's words joined by spaces, and cannot tell it from two", a)
					}
				}
			}
		case "param_match":
			switch first(args) {
			case "":
				p.full = true // exact: the parameters, or none
			case "initial", "partial":
				partial = true
			default:
				ignore(t, "keepalived knows param_match, param_match initial and param_match partial only")
			}
		case "full_command":
			p.fullCmd = true
		case "weight":
			w, ok := integer(first(args), -254, 254)
			if !ok {
				p.bad = "weight must be from -254 to 254"
				continue
			}
			p.weight = w
			p.reverse = len(args) > 1 && args[1] == "reverse"
		case "quorum":
			n, ok := integer(first(args), 1, 65535)
			switch {
			case !ok:
				ignore(t, "keepalived ignores a quorum outside 1-65535")
			case p.quorumMax >= 0 && n > p.quorumMax:
				ignore(t, "keepalived ignores a quorum above quorum_max")
			default:
				p.quorum = n
			}
		case "quorum_max":
			n, ok := integer(first(args), 0, 65535)
			switch {
			case !ok:
				ignore(t, "keepalived ignores a quorum_max outside 0-65535")
			case (n != 0 || p.quorum > 1) && n < p.quorum:
				ignore(t, "keepalived ignores a quorum_max below the quorum")
			default:
				p.quorumMax = n
				if n == 0 {
					p.quorum = 0 // up while no such process runs
				} else if p.quorum == 0 {
					p.quorum = 1
				}
			}
		case "delay", "fork_delay", "terminate_delay":
			p.delays = append(p.delays, t)
		default:
			p.bad = "ctha's track_process has no " + t.key()
		}
	}
	switch {
	case p.bad != "":
	case p.process == "":
		p.bad = "it names no process"
	case partial:
		p.bad = "param_match initial or partial has no ctha equivalent: ctha's full_command matches the whole command line exactly"
	case p.fullCmd && !params && !p.full:
		// keepalived compares the command's first word alone then.
		p.bad = fmt.Sprintf("keepalived's full_command without parameters matches a command line whose first word is %q, whatever follows; ctha's full_command matches the whole command line: name the process by its whole command line, with full_command = true", p.process)
	case !p.fullCmd && !p.full && len(p.process) > maxComm:
		p.bad = fmt.Sprintf("a process name (comm) has at most %d characters, so keepalived never matched %q; match the command line with full_command", maxComm, p.process)
	}
	p.full = p.full || p.fullCmd
	k.procs[name] = p
}

// maxComm is the longest process name the kernel keeps (TASK_COMM_LEN 16
// with its NUL).
const maxComm = 15

// scriptRef returns the track_script name an instance uses for script
// name with weight w, writing a copy of the script when w is not its own.
func (k *keepalived) scriptRef(sc *kaScript, w int) string {
	if w == sc.weight {
		sc.used = true
		return sc.name
	}
	sc.cloned = true
	name := fmt.Sprintf("%s_weight%d", sc.name, w)
	if _, ok := k.clones[name]; !ok {
		cl := &kaScript{name: name, pos: sc.pos, weight: w, used: true,
			b: &block{typ: "track_script", labels: []string{name}}}
		cl.b.note(fmt.Sprintf("vrrp_script %s (%s) with weight %d: in ctha the weight belongs to the script.", sc.name, sc.pos, w))
		for _, it := range sc.b.items {
			if it.name == "weight" {
				it.val = numVal(w)
			}
			cl.b.items = append(cl.b.items, it)
		}
		k.clones[name] = cl
	}
	return name
}

// writeScripts writes the track_script blocks, used ones and their
// copies; a script no instance uses is written too (ctha warns of it),
// unless it could not be carried.
func (k *keepalived) writeScripts() {
	for _, name := range k.scriptOrd {
		sc := k.scripts[name]
		if sc.bad != "" {
			k.skip(k.top, sc.pos, "vrrp_script "+name, sc.bad)
			continue
		}
		if !sc.used && sc.cloned {
			continue // written as its copies only
		}
		if !sc.used {
			k.skip(k.top, sc.pos, "vrrp_script "+name, "no vrrp_instance tracks it")
			continue
		}
		k.top.items = append(k.top.items, item{block: sc.b})
	}
	for _, name := range sortedKeys(k.clones) {
		k.top.items = append(k.top.items, item{block: k.clones[name].b})
	}
}
