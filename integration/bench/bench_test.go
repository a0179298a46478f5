package bench

import (
	"bytes"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []float64
		want Summary
	}{
		{"empty", nil, Summary{}},
		{"one", []float64{2}, Summary{N: 1, Median: 2, Min: 2, Max: 2}},
		{"odd, unsorted", []float64{3, 1, 2}, Summary{N: 3, Median: 2, Min: 1, Max: 3}},
		{"even: mean of the middle two", []float64{4, 1, 3, 2}, Summary{N: 4, Median: 2.5, Min: 1, Max: 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]float64(nil), tc.in...)
			if diff := cmp.Diff(tc.want, Summarize(tc.in)); diff != "" {
				t.Errorf("Summarize(%v) (-want +got):\n%s", tc.in, diff)
			}
			if diff := cmp.Diff(in, tc.in); diff != "" {
				t.Errorf("Summarize changed its input (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRatioAndFormat(t *testing.T) {
	m := &Metric{Samples: map[string][]float64{Ctha: {1, 3, 2}, Baseline: {4, 4, 8}}}
	if got := m.Ratio(Ctha, Baseline); got != 0.5 {
		t.Errorf("ratio %v, want 0.5", got)
	}
	for _, m := range []*Metric{{Samples: map[string][]float64{Ctha: {1}}}, {Samples: map[string][]float64{Ctha: {1}, Baseline: {0}}}} {
		if got := m.Ratio(Ctha, Baseline); !math.IsNaN(got) {
			t.Errorf("ratio of %+v = %v, want NaN", m, got)
		}
	}
	for _, tc := range []struct {
		s    Summary
		prec int
		want string
	}{
		{Summary{}, 2, "-"},
		{Summarize([]float64{3.256}), 2, "3.26"},
		{Summarize([]float64{3.2, 6.7, 3.3}), 2, "3.30 [3.20-6.70]"},
	} {
		if got := tc.s.Format(tc.prec); got != tc.want {
			t.Errorf("Format(%+v) = %q, want %q", tc.s, got, tc.want)
		}
	}
	if got := FormatRatio(math.NaN()); got != "-" {
		t.Errorf("FormatRatio(NaN) = %q", got)
	}
}

func sampleRun() *Run {
	r := &Run{Started: time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC), Runs: 3}
	r.Finished = r.Started.Add(20 * time.Minute)
	c := r.Case("failover", "phase 0.75 s, 100k entries")
	for _, v := range []float64{3.2, 3.3, 3.25} {
		c.Add("longest gap", "s", Ctha, v)
	}
	for _, v := range []float64{6.7, 6.8, 6.75} {
		c.Add("longest gap", "s", Baseline, v)
	}
	c.Metric("longest gap", "s").Gap = true
	c.Add("INVALID drops", "packets", Ctha, 0)
	c.Add("INVALID drops", "packets", Baseline, 210)
	r.Case("replication", "100k new flows").Add("commit", "s", Ctha, 0.5)
	return r
}

func TestCaseAdd(t *testing.T) {
	r := sampleRun()
	if len(r.Cases) != 2 || len(r.Cases[0].Metrics) != 2 {
		t.Fatalf("cases %d, metrics of the first %d; want 2 and 2", len(r.Cases), len(r.Cases[0].Metrics))
	}
	got := r.Case("failover", "phase 0.75 s, 100k entries").Metric("longest gap", "s")
	if diff := cmp.Diff([]float64{6.7, 6.8, 6.75}, got.Samples[Baseline]); diff != "" {
		t.Errorf("baseline samples (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"failover", "replication"}, r.Scenarios()); diff != "" {
		t.Errorf("scenarios (-want +got):\n%s", diff)
	}
}

func TestMarkdown(t *testing.T) {
	md := sampleRun().Markdown("Benchmarks", "intro text", "gap.png")
	for _, want := range []string{
		"# Benchmarks\n\nintro text",
		"| phase 0.75 s, 100k entries | longest gap (s) | 3.25 [3.20-3.30] | 6.75 [6.70-6.80] | 0.48 |",
		"| phase 0.75 s, 100k entries | INVALID drops (packets) | 0 | 210 | 0.00 |",
		"| 100k new flows | commit (s) | 0.50 |\n",
		"## replication",
		"![longest gap per case and stack](gap.png)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestGapChart(t *testing.T) {
	b, err := sampleRun().GapChart()
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	// The label column fits the longest case name.
	plotL := textWidth("failover phase 0.75 s, 100k entries") + 30
	plotR := plotL + plotWidth
	if w, h := img.Bounds().Dx(), img.Bounds().Dy(); w != plotR+30 || h != topMargin+rowHeight(2)+botMargin {
		t.Errorf("size %dx%d, want %dx%d (one row)", w, h, plotR+30, topMargin+rowHeight(2)+botMargin)
	}
	// The dots of each stack are drawn where their values fall: axis 0-7 s.
	mid := topMargin + rowHeight(2)/2
	for _, tc := range []struct {
		v    float64
		y    int
		want [3]uint32
	}{{3.2, mid - 9, [3]uint32{31, 119, 180}}, {6.8, mid + 9, [3]uint32{255, 127, 14}}} {
		x := plotL + int(math.Round(tc.v/7*float64(plotR-plotL)))
		r, g, bl, _ := img.At(x, tc.y).RGBA()
		if got := [3]uint32{r >> 8, g >> 8, bl >> 8}; got != tc.want {
			t.Errorf("pixel at %.1f s (%d,%d) = %v, want %v", tc.v, x, tc.y, got, tc.want)
		}
	}
	if _, err := (&Run{}).GapChart(); err == nil {
		t.Error("a run without gap figures gave a chart")
	}
}

// TestGapChartStacks: every stack with a gap figure gets its lane and
// colour, in Stacks' order, and a legend swatch.
func TestGapChartStacks(t *testing.T) {
	r := multiRun()
	b, err := r.GapChart()
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	name := "failover phase 0.75 s, 100k entries"
	plotL := textWidth(name) + 30
	plotR := plotL + plotWidth
	rh := rowHeight(3)
	if h := img.Bounds().Dy(); h != topMargin+rh+botMargin {
		t.Errorf("height %d, want %d (one row, three lanes)", h, topMargin+rh+botMargin)
	}
	mid := topMargin + rh/2
	rgb := func(x, y int) color.RGBA {
		r, g, b, _ := img.At(x, y).RGBA()
		return color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), 255}
	}
	for _, tc := range []struct {
		stack string
		v     float64
		y     int
	}{{Ctha, 3.2, mid - laneGap}, {Baseline, 6.8, mid}, {Best, 3.6, mid + laneGap}} {
		x := plotL + int(math.Round(tc.v/7*float64(plotR-plotL)))
		if got := rgb(x, tc.y); got != stackColors[tc.stack] {
			t.Errorf("%s at %.1f s (%d,%d) = %v, want %v", tc.stack, tc.v, x, tc.y, got, stackColors[tc.stack])
		}
	}
	// Legend: a swatch per stack, left to right.
	lx := 10
	for _, s := range []string{Ctha, Baseline, Best} {
		if got := rgb(lx+5, 38); got != stackColors[s] {
			t.Errorf("legend swatch of %s at x %d = %v", s, lx+5, got)
		}
		lx += 18 + textWidth(s) + 24
	}
}

// multiRun has ctha, the documented baseline and the best-configured
// one, the latter with a single round.
func multiRun() *Run {
	r := sampleRun()
	c := r.Case("failover", "phase 0.75 s, 100k entries")
	c.Modes = "ctha cache direct"
	c.Add("longest gap", "s", Best, 3.6)
	c.Add("INVALID drops", "packets", Best, 0)
	r.SetStack(Best, "conntrackd: SCHED_FIFO 50 (chrt -p)", "keepalived: global_defs { vrrp_rt_priority 50 }")
	r.SetStack(Best, "ignored: set once")
	return r
}

func TestTableStacks(t *testing.T) {
	r := multiRun()
	if diff := cmp.Diff([]string{Ctha, Baseline, Best}, r.StacksIn("failover")); diff != "" {
		t.Errorf("stacks in failover (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{Ctha}, r.StacksIn("replication")); diff != "" {
		t.Errorf("stacks in replication (-want +got):\n%s", diff)
	}
	got := r.Table("failover")
	for _, want := range []string{
		"| case | figure | ctha | baseline | best | ctha / baseline | ctha / best |\n|---|---|---|---|---|---|---|\n",
		"| phase 0.75 s, 100k entries (ctha cache direct) | longest gap (s) | 3.25 [3.20-3.30] | 6.75 [6.70-6.80] | 3.60 | 0.48 | 0.90 |",
		"| phase 0.75 s, 100k entries (ctha cache direct) | INVALID drops (packets) | 0 | 210 | 0 | 0.00 | - |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	// Two stacks that are not baselines: a ratio of each against the
	// baseline, none between them.
	r = &Run{}
	c := r.Case("short adverts", "20 ms")
	c.Add("false takeovers", "", Ctha, 0)
	c.Add("false takeovers", "", CthaRT, 0)
	c.Add("false takeovers", "", Direct, 4)
	if got, want := strings.SplitN(r.Table("short adverts"), "\n", 2)[0],
		"| case | figure | ctha | ctha-rt | direct | ctha / direct | ctha-rt / direct |"; got != want {
		t.Errorf("header %q, want %q", got, want)
	}
	md := multiRun().Markdown("B", "", "")
	for _, want := range []string{
		"## Stacks\n",
		"- `ctha`: ctha, default scheduling\n",
		"- `best`: keepalived realtime + conntrackd DisableExternalCache On, Scheduler FIFO (best-configured)\n" +
			"  - conntrackd: SCHED_FIFO 50 (chrt -p)\n  - keepalived: global_defs { vrrp_rt_priority 50 }\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "ignored") {
		t.Error("SetStack replaced the first settings")
	}
}

func TestJSONRoundTrip(t *testing.T) {
	r := multiRun()
	r.Benchmark = "BenchmarkStacks"
	dir := t.TempDir()
	path, err := r.WriteJSON(dir)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "results-20261124T080000Z.json" {
		t.Errorf("file %s", path)
	}
	for _, p := range []string{path, filepath.Join(dir, "latest.json")} {
		got, err := ReadJSON(p)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(r, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", p, diff)
		}
	}
}

func TestWriteJSONAs(t *testing.T) {
	dir := t.TempDir()
	r := multiRun()
	path, err := r.WriteJSONAs(dir, "vrrp")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "vrrp-20261124T080000Z.json" {
		t.Errorf("file %s", path)
	}
	if _, err := os.Stat(filepath.Join(dir, "latest.json")); !os.IsNotExist(err) {
		t.Errorf("latest.json written: %v", err)
	}
	got, err := ReadJSON(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestReadOldFiles: the files written before samples per stack (one
// list for ctha, one for the baseline) read into Samples.
func TestReadOldFiles(t *testing.T) {
	const old = `{"started": "2026-11-24T11:07:45Z", "runs": 3, "cases": [{"scenario": "failover", "name": "x",
		"metrics": [{"name": "longest gap", "unit": "s", "gap": true, "ctha": [3.2, 3.3], "baseline": [6.5]}]}]}`
	path := filepath.Join(t.TempDir(), "old.json")
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := ReadJSON(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]float64{Ctha: {3.2, 3.3}, Baseline: {6.5}}
	if diff := cmp.Diff(want, r.Cases[0].Metrics[0].Samples); diff != "" {
		t.Errorf("samples (-want +got):\n%s", diff)
	}
	// And every file the repository holds.
	files, _ := filepath.Glob("results/*.json")
	if len(files) == 0 {
		t.Fatal("no results file in results/")
	}
	for _, f := range files {
		r, err := ReadJSON(f)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if len(r.StacksIn("")) < 2 {
			t.Errorf("%s: stacks %v, want at least ctha and a baseline", f, r.StacksIn(""))
		}
	}
}

func TestWriteDocs(t *testing.T) {
	dir := t.TempDir()
	if err := sampleRun().WriteDocs(dir, []string{"ctha drops nothing"}); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "benchmarks.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Findings of this run\n\n- ctha drops nothing\n", "![longest gap per case and stack](bench-gap.png)"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("benchmarks.md lacks %q", want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "bench-gap.png")); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Errorf("bench-gap.png: %v, not a PNG", err)
	}
}

// TestReadmeHeadline: the README's headline is the one the results file
// it names renders, so every figure in it has that source.
func TestReadmeHeadline(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i := strings.Index(readme, HeadlineBegin)
	j := strings.Index(readme, HeadlineEnd)
	if i < 0 || j < i {
		t.Fatal("README.md has no bench headline markers")
	}
	block := readme[i+len(HeadlineBegin) : j]
	m := regexp.MustCompile("From `([^`]+)`").FindStringSubmatch(block)
	if m == nil {
		t.Fatalf("the headline names no results file:\n%s", block)
	}
	r, err := ReadJSON(filepath.Join("../..", m[1]))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("\n"+r.Headline(m[1])+"\n", block); diff != "" {
		t.Errorf("README.md's headline is not %s's (-want +got):\n%s\n(make bench rewrites it; or write it with Run.WriteReadme)", m[1], diff)
	}
}

func TestHeadline(t *testing.T) {
	r := multiRun()
	r.Case("failover", "phase 0.75 s, 10k entries").Add("longest gap", "s", Ctha, 9)
	got := r.Headline("integration/bench/results/x.json")
	for _, want := range []string{
		"From `integration/bench/results/x.json`: ctha commit ",
		"| figure (case) | ctha | baseline | best | ctha / baseline | ctha / best |\n",
		"| crash 0.75 s after an advert, with background entries: longest gap (s) [phase 0.75 s, 100k entries] | 3.25 [3.20-3.30] | 6.75 [6.70-6.80] | 3.60 | 0.48 | 0.90 |\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("headline lacks %q:\n%s", want, got)
		}
	}
	doc := "intro\n" + HeadlineBegin + "old\n" + HeadlineEnd + "after\n"
	out, err := ReplaceHeadline(doc, "new\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := "intro\n" + HeadlineBegin + "\nnew\n\n" + HeadlineEnd + "after\n"; out != want {
		t.Errorf("ReplaceHeadline = %q, want %q", out, want)
	}
	if _, err := ReplaceHeadline("no markers", "x"); err == nil {
		t.Error("no error without markers")
	}
}

func TestEveryStackHasAColour(t *testing.T) {
	seen := map[color.RGBA]string{}
	for _, s := range Stacks {
		c, ok := stackColors[s.ID]
		if !ok {
			t.Errorf("stack %q has no chart colour", s.ID)
		}
		if other, dup := seen[c]; dup {
			t.Errorf("stacks %q and %q share a colour", s.ID, other)
		}
		seen[c] = s.ID
	}
}

// TestChartSeconds: the chart's axis is in seconds, and a gap recorded in
// milliseconds (the short adverts') is drawn in seconds too.
func TestChartSeconds(t *testing.T) {
	r := &Run{}
	r.Case("failover", "a").Add("longest gap", "s", Ctha, 3.2)
	r.Case("failover", "a").Metric("longest gap", "s").Gap = true
	r.Case("short adverts", "b").Add("longest gap", "ms", Ctha, 87)
	r.Case("short adverts", "b").Metric("longest gap", "ms").Gap = true
	rows, _ := r.gapRows()
	if len(rows) != 2 || rows[0].samples[Ctha][0] != 3.2 || rows[1].samples[Ctha][0] != 0.087 {
		t.Errorf("chart rows %+v, want 3.2 s and 0.087 s", rows)
	}
	if r.Cases[1].Metrics[0].Samples[Ctha][0] != 87 {
		t.Error("the chart changed the recorded samples")
	}
}
