package bench

import (
	"fmt"
	"slices"
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
// figure, a column per stack present in the scenario (its median
// [range]) and a ratio column "s / b" for every other stack s against
// every baseline b present. The case column names the case's modes.
func (r *Run) Table(scenario string) string {
	stacks := r.StacksIn(scenario)
	type ratio struct{ s, b string }
	var ratios []ratio
	for _, s := range stacks {
		if Stacks[stackIndex(s)].IsBaseline {
			continue
		}
		for _, b := range stacks {
			if Stacks[stackIndex(b)].IsBaseline {
				ratios = append(ratios, ratio{s, b})
			}
		}
	}
	var b strings.Builder
	b.WriteString("| case | figure |")
	for _, s := range stacks {
		fmt.Fprintf(&b, " %s |", s)
	}
	for _, q := range ratios {
		fmt.Fprintf(&b, " %s / %s |", q.s, q.b)
	}
	b.WriteString("\n|---|---|" + strings.Repeat("---|", len(stacks)+len(ratios)) + "\n")
	for _, c := range r.Cases {
		if c.Scenario != scenario {
			continue
		}
		name := c.Name
		if c.Modes != "" {
			name += " (" + c.Modes + ")"
		}
		for _, m := range c.Metrics {
			p := precision(m.Unit)
			figure := m.Name
			if m.Unit != "" {
				figure += " (" + m.Unit + ")"
			}
			fmt.Fprintf(&b, "| %s | %s |", name, figure)
			for _, s := range stacks {
				fmt.Fprintf(&b, " %s |", Summarize(m.Samples[s]).Format(p))
			}
			for _, q := range ratios {
				fmt.Fprintf(&b, " %s |", FormatRatio(m.Ratio(q.s, q.b)))
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

// StacksSection lists the stacks of the run: ID (the tables' column
// headers), what it runs, and the settings recorded during the run.
func (r *Run) StacksSection() string {
	present := r.StacksIn("")
	for id := range r.StackSettings {
		if !slices.Contains(present, id) {
			present = append(present, id)
		}
	}
	slices.SortFunc(present, func(a, b string) int { return stackIndex(a) - stackIndex(b) })
	var b strings.Builder
	for _, id := range present {
		fmt.Fprintf(&b, "- `%s`: %s\n", id, Stacks[stackIndex(id)].Label)
		for _, s := range r.StackSettings[id] {
			fmt.Fprintf(&b, "  - %s\n", s)
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
	fmt.Fprintf(&b, "- ctha commit %s; %s; %s\n\n", r.Versions.Ctha, r.Versions.Keepalived, r.Versions.Conntrackd)
	if st := r.StacksSection(); st != "" {
		b.WriteString("## Stacks\n\n")
		b.WriteString("The tables' columns; every ratio is the first stack's median over the second's (below 1: lower).\n\n")
		b.WriteString(st + "\n")
	}
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
		b.WriteString("Every round's longest gap seen by any of the 200 flows (a dot per round, the bar is the median), " +
			"one colour and one lane per stack (legend at the top).\n\n")
		fmt.Fprintf(&b, "![longest gap per case and stack](%s)\n", chartFile)
	}
	return b.String()
}
