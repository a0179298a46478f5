package cfg

import (
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"unicode/utf8"
)

// fuzzMaxStack is the goroutine stack the nesting fuzz target allows
// (1 GB by default): a parser that recurses once per level of a deep
// file overflows it at a depth the fuzzer reaches, while the bounded
// parse of any file needs a few MB.
const fuzzMaxStack = 32 << 20

// maxNestingFile bounds the files FuzzParseNesting builds.
const maxNestingFile = 256 << 10

// FuzzParseNesting builds files nested deeply, of a repeated opening and
// closing part (brackets, blocks, operators, template directives)
// around arbitrary text, and parses them: the loader must answer with
// diagnostics, never a panic or a stack overflow, and its bounds hold
// (the number and length of diagnostics).
func FuzzParseNesting(f *testing.F) {
	for _, s := range []struct {
		prefix, open, mid, close, suffix string
		depth                            uint8 // repeats depth²
	}{
		// Unary and conditional operators nest the parser without brackets.
		{"x = ", "!", "true", "", "\n", 200},
		{"x = ", "-", "1", "", "\n", 200},
		{"x = ", "1?", "1", "", "\n", 173},
		{"x = ", "true?1:", "2", "", "\n", 141},
		{"x = [", "-!", "1", "", "]\n", 141},
		// Brackets, calls, objects, templates.
		{"x = ", "[", "1", "]", "\n", 6},
		{"x = ", "[", "1", "]", "\n", 173},
		{"x = ", "(", "1", ")", "\n", 173},
		{"x = ", "f(", "1", ")", "\n", 173},
		{"x = ", "{a=", "1", "}", "\n", 173},
		{"x = ", "a[", "0", "]", "\n", 173},
		{"x = ", "[for x in y: ", "x", "]", "\n", 71},
		{"x = \"", "${", "1", "}", "\"\n", 173},
		{"x = \"", "%{if a}", "x", "%{endif}", "\"\n", 141},
		{"x = <<EOT\n", "%{for a in b}", "", "", "\nEOT\n", 141},
		{"vrrp_instance \"a\" {\n", "b {\n", "", "}\n", "}\n", 141},
		// Stray closers first: a count of open brackets must not go
		// negative and let as many openers through.
		{"x = 1\n", "]", "\nx = ", "", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1\n", 10},
		{"x = 1\n", ")}]", "\nx = ", "([{a=", "\n", 141},
		{"node_name = \"fw1\"\n", "", "", "", "", 0},
	} {
		f.Add(s.prefix, s.open, s.mid, s.close, s.suffix, s.depth)
	}
	old := debug.SetMaxStack(fuzzMaxStack)
	f.Cleanup(func() { debug.SetMaxStack(old) })
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, prefix, open, mid, close, suffix string, depth uint8) {
		// The square lets the fuzzer's small steps on depth reach from a
		// shallow file to the largest in a few mutations.
		n := int(depth) * int(depth)
		size := len(prefix) + n*(len(open)+len(close)) + len(mid) + len(suffix)
		if size > maxNestingFile {
			return // slow to parse; deep enough to overflow a stack of fuzzMaxStack already
		}
		var b strings.Builder
		b.Grow(size)
		b.WriteString(prefix)
		for range n {
			b.WriteString(open)
		}
		b.WriteString(mid)
		for range n {
			b.WriteString(close)
		}
		b.WriteString(suffix)
		c, diags := Parse([]byte(b.String()), filepath.Join(dir, "nested.hcl"))
		if len(diags) > MaxDiagnostics+1 {
			t.Fatalf("%d diagnostics, want at most %d", len(diags), MaxDiagnostics+1)
		}
		for _, d := range diags {
			for _, s := range []string{d.Summary, d.Detail} {
				if utf8.RuneCountInString(s) > maxMessage+40 {
					t.Fatalf("a diagnostic of %d characters: %.80q...", utf8.RuneCountInString(s), s)
				}
			}
			_ = Format(d)
		}
		if !diags.HasErrors() {
			checkInvariants(t, c)
		}
	})
}

// TestParseDeepOperators: the parser recurses on unary and conditional
// operators and on template directives too, and a file of them (or one
// whose stray closing brackets came first, before as many opening ones)
// overflowed its stack, which killed the process: they are refused as too
// deep. The files are smaller than MaxFileSize, under a smaller stack
// (fuzzMaxStack), to stay quick under the race detector.
func TestParseDeepOperators(t *testing.T) {
	old := debug.SetMaxStack(fuzzMaxStack)
	t.Cleanup(func() { debug.SetMaxStack(old) })
	const n = 100_000
	for _, tc := range []struct{ name, src string }{
		{"negations", "node_name = " + strings.Repeat("!", n) + "true"},
		{"negative signs", "node_name = " + strings.Repeat("-", n) + "1"},
		{"conditionals", "node_name = " + strings.Repeat("1?", n) + "1"},
		{"conditionals in the false branch", "node_name = " + strings.Repeat("true?1:", n) + "1"},
		{"template directives", "node_name = \"" + strings.Repeat("%{if a}", n/4) + "\""},
		{"stray closers first", "node_name = 1\n" + strings.Repeat("]", n) + "\nx = " + strings.Repeat("[", n)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := Parse([]byte(tc.src), "deep.hcl")
			if len(diags) != 1 || !strings.Contains(diags[0].Summary, "nested deeper than 32") {
				t.Errorf("diagnostics %v, want one: nested too deep", diags)
			}
		})
	}
	// Subtractions are no nesting, nor are negative numbers, negations
	// and conditionals each in an expression of its own.
	src := "x = [" + strings.Repeat("-1, !true, a ? b : c, ", 40) + "]\n" +
		"y = 1" + strings.Repeat(" - 1", 100) + "\n" + strings.Repeat("z = -1\n", 100) +
		"w = {\n" + strings.Repeat("  a = !b ? -1 : -2\n", 40) + "}\n"
	_, diags := Parse([]byte(src), "shallow.hcl")
	for _, d := range diags {
		if strings.Contains(d.Summary, "nested") {
			t.Errorf("operators of separate expressions counted as nesting: %s", Format(d))
		}
	}
}
