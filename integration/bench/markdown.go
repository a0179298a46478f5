package bench

import (
	"fmt"
	"strings"
)

// precision is the number of decimals a figure in unit is printed with.
func precision(unit string) int {
	switch unit {
	case "s":
		return 2
	case "ms", "µs/flow", "B/flow", "k/s":
		return 1
	}
	return 0
}

// Table writes the Markdown table of one scenario's cases: one row per
// figure with each stack's median [range] and the ratio.
func (r *Run) Table(scenario string) string {
	var b strings.Builder
	b.WriteString("| case | figure | ctha | keepalived + conntrackd | ratio ctha / baseline |\n")
	b.WriteString("|---|---|---|---|---|\n")
	for _, c := range r.Cases {
		if c.Scenario != scenario {
			continue
		}
		for _, m := range c.Metrics {
			p := precision(m.Unit)
			name := m.Name
			if m.Unit != "" {
				name += " (" + m.Unit + ")"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", c.Name, name,
				Summarize(m.Samples[Ctha]).Format(p), Summarize(m.Samples[Baseline]).Format(p), FormatRatio(m.Ratio(Ctha, Baseline)))
		}
	}
	return b.String()
}

// Scenarios lists the run's scenarios in the order their first case came.
func (r *Run) Scenarios() []string {
	var out []string
	seen := map[string]bool{}
	for _, c := range r.Cases {
		if !seen[c.Scenario] {
			seen[c.Scenario] = true
			out = append(out, c.Scenario)
		}
	}
	return out
}

// Markdown renders the whole report: intro (given, e.g. the method and
// the headline), machine, versions, settings, notes, one table per
// scenario and the chart (chartFile, relative to the document).
func (r *Run) Markdown(title, intro, chartFile string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", title)
	if intro != "" {
		b.WriteString(strings.TrimSpace(intro) + "\n\n")
	}
	b.WriteString("## Machine and versions\n\n")
	fmt.Fprintf(&b, "- run: %s to %s (UTC), %d rounds per stack and case, stacks alternating%s\n",
		r.Started.UTC().Format("2006-01-02 15:04"), r.Finished.UTC().Format("15:04"), r.Runs, map[bool]string{true: " (quick grid)", false: ""}[r.Quick])
	fmt.Fprintf(&b, "- machine: %d vCPUs (%s), kernel %s, %s\n", r.Machine.CPUs, r.Machine.CPUModel, r.Machine.Kernel, r.Machine.Go)
	fmt.Fprintf(&b, "- load average (1, 5, 15 min) at the start: %s; at the end: %s\n", r.Machine.LoadStart, r.Machine.LoadEnd)
	fmt.Fprintf(&b, "- ctha %s; %s; %s\n\n", r.Versions.Ctha, r.Versions.Keepalived, r.Versions.Conntrackd)
	if len(r.Settings) > 0 {
		b.WriteString("## Settings\n\n")
		for _, s := range r.Settings {
			fmt.Fprintf(&b, "- %s\n", s)
		}
		b.WriteString("\n")
	}
	if len(r.Notes) > 0 {
		b.WriteString("## Notes\n\n")
		for _, s := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", s)
		}
		b.WriteString("\n")
	}
	for _, s := range r.Scenarios() {
		fmt.Fprintf(&b, "## %s\n\n", s)
		b.WriteString("Median [range] over the rounds.\n\n")
		b.WriteString(r.Table(s))
		b.WriteString("\n")
	}
	if chartFile != "" {
		b.WriteString("## Longest application gap\n\n")
		b.WriteString("Every round's longest gap seen by any of the 200 flows (a dot per round, the bar is the median); " +
			"ctha in blue above each line, keepalived + conntrackd in orange below.\n\n")
		fmt.Fprintf(&b, "![longest gap per case and stack](%s)\n", chartFile)
	}
	return b.String()
}
