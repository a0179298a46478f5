package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Stacks: the configurations compared. Every sample is recorded under
// one of these names; Stacks says what each one runs.
const (
	// Ctha is ctha in the case's cache mode, default scheduling.
	Ctha = "ctha"
	// CthaRT is ctha with its VRRP timing thread at a realtime priority.
	CthaRT = "ctha-rt"
	// Baseline is keepalived + conntrackd as documented: external cache,
	// primary-backup.sh, no scheduling options (conntrackd 1.4.7 then
	// still raises itself to a realtime class: record what chrt shows).
	Baseline = "baseline"
	// Direct is keepalived + conntrackd with DisableExternalCache On, no
	// scheduling options.
	Direct = "direct"
	// Best is the best-configured baseline: conntrackd with
	// DisableExternalCache On and Scheduler FIFO, keepalived with
	// vrrp_rt_priority and vrrp_no_swap.
	Best = "best"
	// Keepalived is keepalived alone (no conntrackd), no scheduling
	// options: the VRRP-only benchmarks' baseline.
	Keepalived = "keepalived"
)

// Stacks names every stack with what it runs, in the order tables show
// them. IsBaseline tells the ones ctha's figures are compared against.
var Stacks = []Stack{
	{Ctha, "ctha, default scheduling", false},
	{CthaRT, "ctha, timing thread realtime", false},
	{Baseline, "keepalived + conntrackd, external cache (documented), no scheduling options set", true},
	{Direct, "keepalived + conntrackd, DisableExternalCache On, no scheduling options set", true},
	{Best, "keepalived realtime + conntrackd DisableExternalCache On, Scheduler FIFO (best-configured)", true},
	{Keepalived, "keepalived alone (VRRP only, no conntrackd), no scheduling options set", true},
}

// Stack is one configuration under test.
type Stack struct {
	ID         string
	Label      string
	IsBaseline bool
}

// stackIndex is the position of id in Stacks, -1 if unknown.
func stackIndex(id string) int {
	return slices.IndexFunc(Stacks, func(s Stack) bool { return s.ID == id })
}

// Run is one `make bench`: the machine, the versions, the settings and
// every figure of every case, per stack, one sample per round.
type Run struct {
	// Benchmark names what wrote the file, e.g. "BenchmarkStacks"; empty
	// in files written before it was recorded.
	Benchmark string    `json:"benchmark,omitempty"`
	Started   time.Time `json:"started"`
	Finished  time.Time `json:"finished"`
	Machine   Machine   `json:"machine"`
	Versions  Versions  `json:"versions"`
	Runs      int       `json:"runs"`     // rounds per stack and case
	Quick     bool      `json:"quick"`    // a reduced development grid
	Settings  []string  `json:"settings"` // how each scenario is set up
	Notes     []string  `json:"notes"`    // what was cut, anything unusual
	// StackSettings is what each stack ran with, by stack ID: excerpts
	// of its configuration and the scheduling classes observed on its
	// running daemons (chrt -p).
	StackSettings map[string][]string `json:"stack_settings,omitempty"`
	Cases         []*Case             `json:"cases"`
}

// SetStack records what stack ran with, the first time only: every
// round runs the same configuration.
func (r *Run) SetStack(stack string, settings ...string) {
	if stackIndex(stack) < 0 {
		panic(fmt.Sprintf("bench: unknown stack %q", stack)) // a bug in the caller
	}
	if len(r.StackSettings[stack]) > 0 {
		return
	}
	if r.StackSettings == nil {
		r.StackSettings = map[string][]string{}
	}
	r.StackSettings[stack] = settings
}

// Machine is where the figures were taken.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	Kernel    string `json:"kernel"`
	Go        string `json:"go"`
	LoadStart string `json:"load_start"` // /proc/loadavg when the run started
	LoadEnd   string `json:"load_end"`
}

// Versions of the two stacks.
type Versions struct {
	Ctha       string `json:"ctha"` // git commit, "-dirty" if the tree had changes
	Keepalived string `json:"keepalived"`
	Conntrackd string `json:"conntrackd"`
}

// Case is one scenario with its settings, e.g. "failover phase 0.75 s,
// 100k entries".
type Case struct {
	Scenario string `json:"scenario"` // failover, rejoin, replication
	Name     string `json:"name"`
	// Modes says what each stack runs in this case where its ID does
	// not, e.g. "ctha cache external, baseline external cache".
	Modes   string    `json:"modes,omitempty"`
	Metrics []*Metric `json:"metrics"`
}

// Metric is one figure of a case, with every sample of each stack.
type Metric struct {
	Name string `json:"name"`
	Unit string `json:"unit"`
	// Gap marks the longest application gap, which the chart shows.
	Gap bool `json:"gap,omitempty"`
	// Samples holds each stack's samples, by stack ID.
	Samples map[string][]float64 `json:"samples"`
}

// UnmarshalJSON also reads the files written before Samples, which had
// one list for ctha and one for the baseline.
func (m *Metric) UnmarshalJSON(b []byte) error {
	type plain Metric
	var v struct {
		plain
		Ctha     []float64 `json:"ctha"`
		Baseline []float64 `json:"baseline"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*m = Metric(v.plain)
	for id, s := range map[string][]float64{Ctha: v.Ctha, Baseline: v.Baseline} {
		if len(s) > 0 && len(m.Samples[id]) == 0 {
			if m.Samples == nil {
				m.Samples = map[string][]float64{}
			}
			m.Samples[id] = s
		}
	}
	return nil
}

// StacksIn returns the IDs of the stacks with samples in scenario's
// cases (every scenario if empty), in Stacks' order.
func (r *Run) StacksIn(scenario string) []string {
	seen := map[string]bool{}
	for _, c := range r.Cases {
		if scenario != "" && c.Scenario != scenario {
			continue
		}
		for _, m := range c.Metrics {
			for id, v := range m.Samples {
				if len(v) > 0 {
					seen[id] = true
				}
			}
		}
	}
	var out []string
	for _, s := range Stacks {
		if seen[s.ID] {
			out = append(out, s.ID)
		}
	}
	return out
}

// Case returns the case of that scenario and name, adding it if new.
func (r *Run) Case(scenario, name string) *Case {
	for _, c := range r.Cases {
		if c.Scenario == scenario && c.Name == name {
			return c
		}
	}
	c := &Case{Scenario: scenario, Name: name}
	r.Cases = append(r.Cases, c)
	return c
}

// Add records one sample of a figure for stack (one of Stacks' IDs).
func (c *Case) Add(metric, unit, stack string, v float64) {
	if stackIndex(stack) < 0 {
		panic(fmt.Sprintf("bench: unknown stack %q", stack)) // a bug in the caller
	}
	m := c.Metric(metric, unit)
	if m.Samples == nil {
		m.Samples = map[string][]float64{}
	}
	m.Samples[stack] = append(m.Samples[stack], v)
}

// Metric returns the case's metric of that name, adding it if new.
func (c *Case) Metric(name, unit string) *Metric {
	for _, m := range c.Metrics {
		if m.Name == name {
			return m
		}
	}
	m := &Metric{Name: name, Unit: unit}
	c.Metrics = append(c.Metrics, m)
	return m
}

// Summary is the median and range of samples.
type Summary struct {
	N                int
	Median, Min, Max float64
}

// Summarize returns the summary of v (N = 0 if v is empty). The median of
// an even number of samples is the mean of the two middle ones.
func Summarize(v []float64) Summary {
	if len(v) == 0 {
		return Summary{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Summary{N: n, Median: med, Min: s[0], Max: s[n-1]}
}

// Ratio is stack's median over base's; NaN when either has no samples or
// base's median is 0.
func (m *Metric) Ratio(stack, base string) float64 {
	c, b := Summarize(m.Samples[stack]), Summarize(m.Samples[base])
	if c.N == 0 || b.N == 0 || b.Median == 0 {
		return math.NaN()
	}
	return c.Median / b.Median
}

// Format prints a summary as "median [min-max]" with prec decimals, or
// "-" without samples.
func (s Summary) Format(prec int) string {
	switch {
	case s.N == 0:
		return "-"
	case s.N == 1 || s.Min == s.Max:
		return fmt.Sprintf("%.*f", prec, s.Median)
	}
	return fmt.Sprintf("%.*f [%.*f-%.*f]", prec, s.Median, prec, s.Min, prec, s.Max)
}

// FormatRatio prints a ratio with 2 decimals, "-" for NaN.
func FormatRatio(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "-"
	}
	return fmt.Sprintf("%.2f", r)
}

// WriteJSON writes the run as results-<started, UTC>.json in dir and
// copies it to latest.json; it returns the first file's path.
func (r *Run) WriteJSON(dir string) (string, error) {
	return r.writeJSON(dir, "results", true)
}

// WriteJSONAs writes the run as <prefix>-<started, UTC>.json in dir, for
// the benchmarks other than `make bench` (latest.json stays make
// bench's); it returns the file's path.
func (r *Run) WriteJSONAs(dir, prefix string) (string, error) {
	return r.writeJSON(dir, prefix, false)
}

func (r *Run) writeJSON(dir, prefix string, latest bool) (string, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode results: %w", err)
	}
	b = append(b, '\n')
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("results dir: %w", err)
	}
	path := filepath.Join(dir, prefix+"-"+r.Started.UTC().Format("20060102T150405Z")+".json")
	paths := []string{path}
	if latest {
		paths = append(paths, filepath.Join(dir, "latest.json"))
	}
	for _, p := range paths {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return "", fmt.Errorf("write results: %w", err)
		}
	}
	return path, nil
}

// ReadJSON reads a run written by WriteJSON.
func ReadJSON(path string) (*Run, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read results: %w", err)
	}
	var r Run
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode results %s: %w", path, err)
	}
	return &r, nil
}
