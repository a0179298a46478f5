package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// WriteDocs writes benchmarks.md and bench-gap.png into dir. findings,
// if any, are an engineer's reading of this run, listed after the notes.
func (r *Run) WriteDocs(dir string, findings []string) error {
	chart, err := r.GapChart()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("docs: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bench-gap.png"), chart, 0o644); err != nil {
		return fmt.Errorf("docs: %w", err)
	}
	text := intro
	if len(findings) > 0 {
		text += "\n## Findings of this run\n\n- " + strings.Join(findings, "\n- ") + "\n"
	}
	md := r.Markdown("Benchmarks: ctha against keepalived + conntrackd", text, "bench-gap.png")
	if err := os.WriteFile(filepath.Join(dir, "benchmarks.md"), []byte(md), 0o644); err != nil {
		return fmt.Errorf("docs: %w", err)
	}
	return nil
}

// intro opens docs/benchmarks.md.
const intro = `
Written by ` + "`make bench`" + ` (BenchmarkStacks in integration/bench_*_test.go);
the JSON of every run is in integration/bench/results/ (latest.json is this
one; its commit is named below). Every stack (the Stacks section: ctha,
keepalived + conntrackd as documented, with DisableExternalCache On, and
best-configured) runs on the same namespace lab (spec/lab.md: client, two
firewalls with a strict stateful ruleset, server, a dedicated sync link),
in the same run, alternating which goes first; every round builds a fresh
lab. The method is spec/bench.md's: the master is crashed at a fixed phase
after one of its adverts (captured on the backup's LAN port), the same for
every stack, because where the kill falls decides which TCP
retransmission step (0.2, 0.6, 1.4, 3.0-3.2, 6.2-6.6 s) the flows hit.

Figures: *flows survived* (of 200 live TCP flows through the VIPs, one
message every 50 ms each); *INVALID drops* (the new master's ` + "`ct state\ninvalid counter drop`" + ` rule: packets of live flows that arrived before
their state); *kill -> VIPs* (both VIPs on the backup's interfaces);
*longest gap* (the longest time any flow went without an echo). A
column "ctha / X" is ctha's median over stack X's (below 1: ctha lower);
each case names the cache mode of the stacks where their name does not.
`
