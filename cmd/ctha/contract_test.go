package main

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ctha/ctha/internal/control"
	"github.com/ctha/ctha/internal/events"
)

// TestJSONFieldsDocumented: every field of the status and stats documents
// is snake_case and named in the README, which is their reference.
func TestJSONFieldsDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	snake := regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	seen := map[reflect.Type]bool{}
	var walk func(path string, ty reflect.Type)
	walk = func(path string, ty reflect.Type) {
		for ty.Kind() == reflect.Pointer || ty.Kind() == reflect.Slice || ty.Kind() == reflect.Map {
			ty = ty.Elem()
		}
		if ty.Kind() != reflect.Struct || seen[ty] || ty.PkgPath() == "time" {
			return
		}
		seen[ty] = true
		for f := range ty.Fields() {
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if f.Anonymous && name == "" {
				walk(path, f.Type)
				continue
			}
			switch {
			case name == "":
				t.Errorf("%s.%s (%s): no json tag, so it would be CamelCase", path, f.Name, ty)
			case !snake.MatchString(name):
				t.Errorf("%s.%s: json name %q is not snake_case", path, f.Name, name)
			case !strings.Contains(string(readme), `"`+name+`"`):
				t.Errorf("%s.%s: json field %q is not documented in the README", path, f.Name, name)
			}
			walk(path+"."+name, f.Type)
		}
	}
	walk("status", reflect.TypeFor[control.Status]())
	walk("stats", reflect.TypeFor[control.Stats]())
	walk("events", reflect.TypeFor[events.Event]())
	if len(seen) < 5 {
		t.Fatalf("walked only %d types", len(seen))
	}
}

// TestLayering: the engines own their configuration. No package under
// ctsync, vrrp or addr imports cfg or HCL, and cfg imports no engine (the
// leaf key parser, ctsync/auth, excepted).
func TestLayering(t *testing.T) {
	const mod = "github.com/ctha/ctha/"
	rules := []struct {
		dir       string
		forbidden func(imp string) bool
	}{
		{"ctsync", func(imp string) bool { return imp == mod+"cfg" || strings.Contains(imp, "hashicorp/hcl") }},
		{"vrrp", func(imp string) bool { return imp == mod+"cfg" || strings.Contains(imp, "hashicorp/hcl") }},
		{"addr", func(imp string) bool { return imp == mod+"cfg" || strings.Contains(imp, "hashicorp/hcl") }},
		{"cfg", func(imp string) bool {
			return strings.HasPrefix(imp, mod) && imp != mod+"ctsync/auth" && imp != mod+"cfg"
		}},
	}
	for _, r := range rules {
		files := 0
		err := filepath.WalkDir(filepath.Join("../..", r.dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
				return err
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			files++
			for _, imp := range f.Imports {
				if p, _ := strconv.Unquote(imp.Path.Value); r.forbidden(p) {
					t.Errorf("%s imports %s", path, p)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if files == 0 {
			t.Fatalf("no Go file under %s", r.dir)
		}
	}
}
