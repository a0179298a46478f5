package main

import (
	"fmt"
	"strings"

	"github.com/ctha/ctha/cfg"
	"github.com/hashicorp/hcl/v2"
)

const checkDetail = `An error is what ctha run would fail on; a warning, what it would run with
but wrongly. Exit 0: no error (warnings allowed); 1: errors; 2: a wrong
command line.

Besides the file itself, check holds it against this machine: the
interfaces and their addresses, the track scripts and notify commands, the
key file. --offline skips these, for a file checked away from its firewall
(config management, CI).
`

func (c *cli) check(args []string) int {
	fs := c.flags("check")
	path := fs.String("c", cfg.DefaultConfigPath, "configuration `FILE`")
	offline := fs.Bool("offline", false, "check the file alone, not against this machine: no interfaces, addresses,\ncommands or key file (for config management and CI)")
	if code, ok := c.parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(c.stderr, "ctha: check: unexpected argument %q (the file is given with -c)\n", fs.Arg(0))
		return exitUsage
	}
	opts := cfg.Options{Offline: *offline, Host: c.host}
	if opts.Host == nil {
		opts.Host = systemHost{}
	}
	conf, diags := cfg.LoadWith(*path, opts)
	c.printDiagnostics(diags)
	errs, warns := cfg.Count(diags)
	if errs > 0 {
		fmt.Fprintf(c.stderr, "%s: %s, %s\n", *path, plural(errs, "error"), plural(warns, "warning"))
		return exitFail
	}
	verdict := "ok"
	if warns > 0 {
		verdict += ", " + plural(warns, "warning")
	}
	sum := summary(conf, *offline)
	if *offline {
		sum += "; not checked against this machine (--offline)"
	}
	fmt.Fprintf(c.stdout, "%s: %s: %s\n", *path, verdict, sum)
	return exitOK
}

func (c *cli) printDiagnostics(diags hcl.Diagnostics) {
	for _, d := range diags {
		fmt.Fprintln(c.stderr, cfg.Format(d))
	}
}

// summary describes a valid configuration in one line; offline, the key
// was not read.
func summary(c cfg.Config, offline bool) string {
	parts := []string{"node " + c.NodeName}
	var names []string
	for _, in := range c.Instances {
		names = append(names, in.Name)
	}
	if len(names) > 0 {
		parts = append(parts, fmt.Sprintf("%s (%s)", plural(len(names), "instance"), strings.Join(names, ", ")))
	}
	names = names[:0]
	for _, g := range c.SyncGroups {
		n := g.Name
		if g.Conntrack {
			n += ", drives conntrack"
		}
		names = append(names, n)
	}
	if len(names) > 0 {
		parts = append(parts, fmt.Sprintf("%s (%s)", plural(len(names), "sync group"), strings.Join(names, "; ")))
	}
	if s := c.Sync; s != nil {
		var links []string
		for _, l := range s.Links {
			to := l.Peer
			if !to.IsValid() {
				to = l.MulticastGroup
			}
			links = append(links, fmt.Sprintf("%s %s->%s", l.Name, l.Local, to))
		}
		key := "no authentication"
		switch {
		case s.InsecureNoAuth:
		case s.Protocol == cfg.ProtocolConntrackd:
			key = "conntrackd protocol, no authentication"
		case offline:
			key = "key not read"
		default:
			key = "key " + s.Key.Fingerprint()
		}
		topology := "" // primary-backup, as before topologies
		if c.Multiprimary() {
			topology = " " + s.Topology
		}
		parts = append(parts, fmt.Sprintf("sync%s %s/%s over %s (%s), %s",
			topology, s.Mode, s.Cache, plural(len(s.Links), "link"), strings.Join(links, ", "), key))
	}
	return strings.Join(parts, "; ")
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
