package importer

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctha/ctha/cfg"
	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"
)

var update = flag.Bool("update", false, "write the golden files (testdata/*/want.hcl, want.txt) again")

// cases returns the directories of testdata, each a case: keepalived.conf
// and/or conntrackd.conf, want.hcl and want.txt.
func cases(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && e.Name() != "fuzz" {
			out = append(out, filepath.Join("testdata", e.Name()))
		}
	}
	if len(out) == 0 {
		t.Fatal("no cases in testdata")
	}
	return out
}

func optionsFor(dir string) Options {
	var o Options
	if p := filepath.Join(dir, "keepalived.conf"); exists(p) {
		o.Keepalived = p
	}
	if p := filepath.Join(dir, "conntrackd.conf"); exists(p) {
		o.Conntrackd = p
	}
	return o
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func TestGolden(t *testing.T) {
	for _, dir := range cases(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			res, err := Import(optionsFor(dir))
			if err != nil && !errors.Is(err, ErrNothing) {
				t.Fatal(err)
			}
			warn := strings.Join(res.Warnings, "\n") + "\n"
			if err != nil {
				warn += "error: " + err.Error() + "\n"
			}
			golden(t, filepath.Join(dir, "want.hcl"), string(res.HCL))
			golden(t, filepath.Join(dir, "want.txt"), warn)
		})
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("%s differs (-want +got); run go test -update if the change is right:\n%s", path, d)
	}
}

// TestGoldenValid holds every golden output against cfg's validation, as
// `ctha check --offline` does.
func TestGoldenValid(t *testing.T) {
	for _, dir := range cases(t) {
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, "want.hcl")
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(strings.ReplaceAll(string(src), "#", "")) == "" {
				t.Skip("no output")
			}
			_, diags := cfg.ParseWith(src, path, cfg.Options{Offline: true})
			for _, d := range diags {
				if d.Severity == hcl.DiagError {
					t.Errorf("%s", cfg.Format(d))
				}
			}
		})
	}
}
