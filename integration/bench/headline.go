package bench

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// headlineRow picks one figure for the README: the first case of
// scenario whose name contains match, its metric of that name; the ctha
// column shows stack (Ctha when empty).
type headlineRow struct {
	label, scenario, match, metric string
	stack                          string
}

// headline is the README's table, in order. Cases are matched by the
// parts of their names that do not depend on the grid (100k entries in a
// full run, 10k in a quick one).
var headline = []headlineRow{
	{"crash 0.75 s after an advert, with background entries: longest gap", "failover", "phase 0.75 s", "longest gap", ""},
	{"same: INVALID drops on the new master", "failover", "phase 0.75 s", "INVALID drops on the new master", ""},
	{"crash 0.05 s after an advert, with background entries: longest gap", "failover", "phase 0.05 s", "longest gap", ""},
	{"rebooted primary rejoins the master: its start -> its VIPs", "rejoin", "", "fw1 start -> VIPs", ""},
	{"same: INVALID drops", "rejoin", "", "INVALID drops on the new master", ""},
	{"same: longest gap", "rejoin", "", "longest gap", ""},
	{"replication, external caches: sync link bytes per new flow", "replication", "new flows", "sync link bytes, both ways", ""},
	{"same: CPU per flow, sender", "replication", "new flows", "CPU sender", ""},
	{"same: CPU per flow, receiver", "replication", "new flows", "CPU receiver", ""},
	{"same: commit into the kernel", "replication", "new flows", "commit into the peer's kernel", ""},
	{"same: RSS growth per entry, sender", "replication", "new flows", "RSS growth sender (internal cache)", ""},
	{"same: RSS growth per entry, receiver", "replication", "new flows", "RSS growth receiver (external cache)", ""},
	{"direct modes, new flows at a fixed rate: sync lag p50", "replication", "direct mode", "sync lag p50", ""},
	{"same: sync lag p99", "replication", "direct mode", "sync lag p99", ""},
	{"same: CPU per flow, sender", "replication", "direct mode", "CPU sender", ""},
	{"same: CPU per flow, receiver", "replication", "direct mode", "CPU receiver", ""},
	{"same: RSS growth per entry, receiver", "replication", "direct mode", "RSS growth receiver (no external cache)", ""},
	{"VRRPv3 adverts every 20 ms, both CPUs saturated, 100k entries of churn every 5 s: false takeovers", "short adverts", "advert 20 ms", "false takeovers (VIP events on the backup)", ""},
	{"same: advert jitter p99", "short adverts", "advert 20 ms", "advert jitter p99", ""},
	{"same, ctha with realtime_priority: advert jitter p99", "short adverts", "advert 20 ms", "advert jitter p99", CthaRT},
	{"same, load stopped: crash with 100k entries: kill -> VIPs", "short adverts", "advert 20 ms", "kill -> VIPs", ""},
	{"same: longest gap", "short adverts", "advert 20 ms", "longest gap", ""},
	{"same: INVALID drops", "short adverts", "advert 20 ms", "INVALID drops", ""},
}

// headlineMetric finds a headline row's metric: among the scenario's
// cases whose name has match, the one with the most entries (the
// failover cases run with 0, 10k and the full number).
func (r *Run) headlineMetric(h headlineRow) (*Case, *Metric) {
	var found *Case
	var metric *Metric
	for _, c := range r.Cases {
		if c.Scenario != h.scenario || !strings.Contains(c.Name, h.match) {
			continue
		}
		for _, m := range c.Metrics {
			if m.Name == h.metric && (found == nil || entries(c.Name) > entries(found.Name)) {
				found, metric = c, m
			}
		}
	}
	return found, metric
}

var entriesRE = regexp.MustCompile(`(\d+)k entries`)

// entries is the thousands of entries a case name gives ("100k
// entries"), 0 if none.
func entries(name string) int {
	m := entriesRE.FindStringSubmatch(name)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// Headline renders the README's table: for each headline figure, the
// case it comes from, ctha's median, each baseline's median and the
// ratio of ctha's over each (the column names which baseline). The
// lines before it name the results file and the commit.
func (r *Run) Headline(resultsFile string) string {
	bases := []string{}
	for _, s := range Stacks {
		if s.IsBaseline && s.ID != Keepalived && slices.Contains(r.StacksIn(""), s.ID) {
			bases = append(bases, s.ID)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "From `%s`: ctha commit %s, run of %s UTC (%d rounds each; load average %s at the start, %s at the end).\n\n",
		resultsFile, r.Versions.Ctha, r.Started.UTC().Format("2006-01-02 15:04"), r.Runs, r.Machine.LoadStart, r.Machine.LoadEnd)
	b.WriteString("| figure (case) | ctha |")
	for _, s := range bases {
		fmt.Fprintf(&b, " %s |", s)
	}
	for _, s := range bases {
		fmt.Fprintf(&b, " ctha / %s |", s)
	}
	b.WriteString("\n|---|---|" + strings.Repeat("---|", 2*len(bases)) + "\n")
	for _, h := range headline {
		c, m := r.headlineMetric(h)
		if m == nil {
			continue
		}
		p := precision(m.Unit)
		unit := ""
		if m.Unit != "" {
			unit = " (" + m.Unit + ")"
		}
		stack := cmp.Or(h.stack, Ctha)
		fmt.Fprintf(&b, "| %s%s [%s] | %s |", h.label, unit, c.Name, Summarize(m.Samples[stack]).Format(p))
		for _, s := range bases {
			fmt.Fprintf(&b, " %s |", Summarize(m.Samples[s]).Format(p))
		}
		for _, s := range bases {
			fmt.Fprintf(&b, " %s |", FormatRatio(m.Ratio(stack, s)))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Markers of the README's generated headline.
const (
	HeadlineBegin = "<!-- bench headline: written by make bench from the results file it names; do not edit -->\n"
	HeadlineEnd   = "<!-- end of bench headline -->\n"
)

// ReplaceHeadline returns doc with the text between the headline
// markers replaced by headline.
func ReplaceHeadline(doc, headline string) (string, error) {
	i := strings.Index(doc, HeadlineBegin)
	j := strings.Index(doc, HeadlineEnd)
	if i < 0 || j < i {
		return "", fmt.Errorf("no headline markers (%q ... %q)", strings.TrimSpace(HeadlineBegin), strings.TrimSpace(HeadlineEnd))
	}
	return doc[:i+len(HeadlineBegin)] + "\n" + headline + "\n" + doc[j:], nil
}

// WriteReadme replaces the headline of the README at path by this run's,
// naming resultsFile (relative to the README) as its source.
func (r *Run) WriteReadme(path, resultsFile string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("readme: %w", err)
	}
	doc, err := ReplaceHeadline(string(b), r.Headline(filepath.ToSlash(resultsFile)))
	if err != nil {
		return fmt.Errorf("readme %s: %w", path, err)
	}
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		return fmt.Errorf("readme: %w", err)
	}
	return nil
}
