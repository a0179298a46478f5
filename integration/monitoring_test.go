package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ctha/ctha/integration/lab"
)

// The monitoring examples: Prometheus alert rules, their promtool cases
// and a Grafana dashboard.
var (
	alertRules     = filepath.Join("..", "examples", "monitoring", "ctha-alerts.yml")
	alertRuleTests = filepath.Join("..", "examples", "monitoring", "tests", "ctha-alerts.test.yml")
	dashboard      = filepath.Join("..", "examples", "monitoring", "ctha-dashboard.json")
)

// TestMonitoringRules: promtool accepts the alert rules (`check rules`),
// their cases pass in both topologies (`test rules`), and every query of
// the dashboard is valid PromQL (checked as recording rules of a scratch
// file, its Grafana variables replaced).
func TestMonitoringRules(t *testing.T) {
	lab.RequireCommands(t, "promtool")
	promtool := func(args ...string) {
		t.Helper()
		out, err := exec.Command("promtool", args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	promtool("check", "rules", alertRules)
	promtool("test", "rules", alertRuleTests)

	exprs := dashboardExprs(t)
	vars := strings.NewReplacer("$__rate_interval", "5m", "$job", ".*", "$instance", ".*")
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range exprs {
		q, _ := json.Marshal(vars.Replace(e)) // a JSON string is a YAML one
		fmt.Fprintf(&b, "      - record: dashboard:panel%d\n        expr: %s\n", i, q)
	}
	scratch := filepath.Join(t.TempDir(), "dashboard.yml")
	if err := os.WriteFile(scratch, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	promtool("check", "rules", scratch)
}

// TestMonitoringNames: every query of the rules and the dashboard names
// one of ctha's metrics at least, and the README lists each. The lab
// tests that scrape a live node check that every one exists
// (checkScrapeNames).
func TestMonitoringNames(t *testing.T) {
	rules := ruleExprs(t)
	dash := dashboardExprs(t)
	if len(rules) < 10 || len(dash) < 15 {
		t.Fatalf("%d rule and %d dashboard queries found, want at least 10 and 15", len(rules), len(dash))
	}
	for _, e := range slices.Concat(rules, dash) {
		if !cthaMetric.MatchString(e) {
			t.Errorf("query %q names no ctha metric", e)
		}
	}
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range monitoringNames(t) {
		if !strings.Contains(string(readme), "`"+name+"`") {
			t.Errorf("%s is not listed in the README", name)
		}
	}
}

// cthaMetric matches a metric name of ctha's in a query.
var cthaMetric = regexp.MustCompile(`\bctha_[a-z0-9_]+\b`)

// ruleExprs returns the expression of every alert rule (one line each).
func ruleExprs(t testing.TB) []string {
	t.Helper()
	b, err := os.ReadFile(alertRules)
	if err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, m := range regexp.MustCompile(`(?m)^\s+expr:\s*(.+)$`).FindAllStringSubmatch(string(b), -1) {
		exprs = append(exprs, m[1])
	}
	if n := strings.Count(string(b), "- alert:"); n != len(exprs) {
		t.Fatalf("%s: %d alerts, %d one-line expressions", alertRules, n, len(exprs))
	}
	return exprs
}

// dashboardExprs returns the PromQL of every panel's targets, and of the
// dashboard's variables (label_values(...)).
func dashboardExprs(t testing.TB) []string {
	t.Helper()
	b, err := os.ReadFile(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", dashboard, err)
	}
	var exprs []string
	for _, p := range doc.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	return exprs
}

// monitoringNames returns the metric names the rules and the dashboard
// use, sorted, each once.
func monitoringNames(t testing.TB) []string {
	t.Helper()
	var names []string
	for _, e := range slices.Concat(ruleExprs(t), dashboardExprs(t)) {
		names = append(names, cthaMetric.FindAllString(e, -1)...)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// deferMetrics is the prefix of the metrics a node has only with defer on.
const deferMetrics = "ctha_sync_defer_"

// checkScrapeNames checks that a /metrics page has a series of every
// metric the rules and the dashboard name: of those whose names begin
// with one of prefixes, or else of all but the defer metrics.
func checkScrapeNames(t *testing.T, page string, prefixes ...string) {
	t.Helper()
	have := map[string]bool{}
	for _, l := range strings.Split(page, "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if i := strings.IndexAny(l, "{ "); i > 0 {
			have[l[:i]] = true
		}
	}
	for _, name := range monitoringNames(t) {
		wanted := !strings.HasPrefix(name, deferMetrics)
		if len(prefixes) > 0 {
			wanted = slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(name, p) })
		}
		if wanted && !have[name] {
			t.Errorf("examples/monitoring uses %s, which this /metrics page lacks", name)
		}
	}
}
