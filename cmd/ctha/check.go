package main

import (
	"fmt"
	"strings"

	"github.com/ctha/ctha/cfg"
	"github.com/hashicorp/hcl/v2"
)

func (c *cli) check(args []string) int {
	fs := c.flags("check")
	path := fs.String("c", cfg.DefaultConfigPath, "configuration `FILE`")
	if code, ok := c.parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(c.stderr, "ctha check: unexpected argument %q (the file is given with -c)\n", fs.Arg(0))
		return exitUsage
	}
	conf, diags := cfg.Load(*path)
	c.printDiagnostics(diags)
	if diags.HasErrors() {
		errs, warns := countDiagnostics(diags)
		fmt.Fprintf(c.stderr, "%s: %s, %s\n", *path, plural(errs, "error"), plural(warns, "warning"))
		return exitFail
	}
	fmt.Fprintf(c.stdout, "%s: ok: %s\n", *path, summary(conf))
	return exitOK
}

func (c *cli) printDiagnostics(diags hcl.Diagnostics) {
	for _, d := range diags {
		fmt.Fprintln(c.stderr, cfg.Format(d))
	}
}

func countDiagnostics(diags hcl.Diagnostics) (errs, warns int) {
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			errs++
		} else {
			warns++
		}
	}
	return errs, warns
}

// summary describes a valid configuration in one line.
func summary(c cfg.Config) string {
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
		if !s.InsecureNoAuth {
			key = "key " + s.Key.Fingerprint()
		}
		parts = append(parts, fmt.Sprintf("sync %s/%s over %s (%s), %s",
			s.Mode, s.Cache, plural(len(s.Links), "link"), strings.Join(links, ", "), key))
	}
	return strings.Join(parts, "; ")
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
