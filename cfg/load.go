package cfg

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Load reads and validates the configuration file at path. The Config is
// valid only when the diagnostics hold no error (warnings may be present);
// on error it is the zero Config.
func Load(path string) (Config, hcl.Diagnostics) {
	src, err := os.ReadFile(path)
	if err != nil {
		return Config{}, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("cannot read configuration: %v", err),
		}}
	}
	return Parse(src, path)
}

// Parse validates the configuration in src, read from filename. Relative
// paths in it (the key file) resolve against filename's directory.
func Parse(src []byte, filename string) (Config, hcl.Diagnostics) {
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return Config{}, diags
	}
	d := &decoder{}
	syn := d.file(f.Body)
	v := &validator{file: filename, dir: filepath.Dir(filename)}
	c := v.config(syn)
	c.Path = filename

	diags = append(d.diags, v.diags...)
	sortDiagnostics(diags)
	if diags.HasErrors() {
		return Config{}, diags
	}
	return c, diags
}

// sortDiagnostics orders diagnostics by position, so that they read top to
// bottom like the file. Diagnostics without a position come first.
func sortDiagnostics(diags hcl.Diagnostics) {
	key := func(d *hcl.Diagnostic) int {
		if d.Subject == nil {
			return -1
		}
		return d.Subject.Start.Byte
	}
	sort.SliceStable(diags, func(i, j int) bool { return key(diags[i]) < key(diags[j]) })
}

// Format renders one diagnostic as "file:line,col: message" (warnings as
// "file:line,col: warning: message"). It is the format `ctha check` prints.
func Format(d *hcl.Diagnostic) string {
	msg := d.Summary
	if d.Detail != "" {
		msg += ": " + d.Detail
	}
	if d.Severity == hcl.DiagWarning {
		msg = "warning: " + msg
	}
	if d.Subject == nil {
		return msg
	}
	return fmt.Sprintf("%s: %s", pos(*d.Subject), msg)
}

// pos renders the start of r as file:line,col.
func pos(r hcl.Range) string {
	return fmt.Sprintf("%s:%d,%d", r.Filename, r.Start.Line, r.Start.Column)
}
