package main

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctha/ctha/cfg"
)

// TestImport runs ctha import on a case of the importer's testdata: to
// stdout and to a file (mode 0600), with the warnings as ctha: lines, and
// an output that ctha check --offline accepts.
func TestImport(t *testing.T) {
	const dir = "../../internal/importer/testdata/unicast-scripts"
	code, out, errs := runCLI("import", "--keepalived", filepath.Join(dir, "keepalived.conf"))
	if code != exitOK || !strings.Contains(out, `vrrp_instance "outside"`) {
		t.Fatalf("import: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	for _, l := range strings.Split(strings.TrimSpace(errs), "\n") {
		if !strings.HasPrefix(l, "ctha: warning: ") {
			t.Errorf("stderr line %q does not begin ctha: warning:", l)
		}
	}
	path := filepath.Join(t.TempDir(), "ctha.hcl")
	if code, out, _ := runCLI("import", "--keepalived", filepath.Join(dir, "keepalived.conf"), "-o", path); code != exitOK || out != "" {
		t.Fatalf("import -o: exit %d, stdout %q", code, out)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("output: %v, mode %v; want 0600", err, st.Mode())
	}
	if _, diags := cfg.LoadWith(path, cfg.Options{Offline: true}); diags.HasErrors() {
		t.Errorf("ctha check refuses the output: %v", diags)
	}
	if code, _, errs := runCLI("import", "--keepalived", filepath.Join(dir, "keepalived.conf"), "-o", path); code != exitFail || !strings.Contains(errs, "already exists") {
		t.Errorf("import -o over an existing file: exit %d, %q; want a refusal", code, errs)
	}
	b, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(b), "# Written by `ctha import`") {
		t.Errorf("the file does not hold the import:\n%s", b)
	}
}

func TestImportFails(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(empty, []byte("global_defs {\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "conntrackd.conf")
	if err := os.WriteFile(bad, []byte("Sync {\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"import", "--keepalived", empty}, exitFail, "nothing usable found"},
		{[]string{"import", "--conntrackd", bad}, exitFail, `conntrackd.conf:1: the block "Sync" opened here is not closed`},
		{[]string{"import", "--keepalived", filepath.Join(dir, "none")}, exitFail, "no such file"},
		{[]string{"import", "extra"}, exitUsage, `unexpected argument "extra"`},
	} {
		code, out, errs := runCLI(tc.args...)
		if code != tc.code || out != "" || !strings.Contains(errs, tc.want) {
			t.Errorf("ctha %v: exit %d, stdout %q, stderr %q; want %d and %q", tc.args, code, out, errs, tc.code, tc.want)
		}
		lines := strings.Split(strings.TrimSpace(errs), "\n")
		if last := lines[len(lines)-1]; !strings.HasPrefix(last, "ctha: ") {
			t.Errorf("ctha %v: last line %q does not begin ctha:", tc.args, last)
		}
	}
}

// TestWriteNew: a write that fails leaves neither the file nor a
// temporary one, so the next attempt succeeds; an existing file is never
// replaced.
func TestWriteNew(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ctha.hcl")
	boom := errors.New("disk full")
	err := writeNew(path, func(w io.Writer) error {
		if _, err := io.WriteString(w, "vrrp_instance \"half"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("failed write: err = %v, want %v", err, boom)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("a failed write left %v", ents)
	}
	if err := writeFile(path, []byte("# one\n")); err != nil {
		t.Fatalf("write after a failed one: %v", err)
	}
	if err := writeFile(path, []byte("# two\n")); !errors.Is(err, fs.ErrExist) {
		t.Errorf("write over a file: err = %v, want it refused", err)
	}
	b, _ := os.ReadFile(path)
	st, err := os.Stat(path)
	if string(b) != "# one\n" || err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("file %q, mode %v (%v); want the first write, 0600", b, st.Mode(), err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("directory holds %v; want the file alone", ents)
	}
}
