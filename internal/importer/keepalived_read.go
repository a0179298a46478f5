package importer

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// keepalivedSyntax: comments start with # or ! anywhere outside quotes;
// an include line's pattern is taken whole (its braces are a glob's).
var keepalivedSyntax = syntax{
	comment: func(c byte) bool { return c == '#' || c == '!' },
	raw:     isInclude,
}

func isInclude(kw string) bool {
	switch kw {
	case "include", "includer", "includem", "includew", "includeb", "includea":
		return true
	}
	return false
}

// readKeepalived parses a keepalived.conf and the files it includes, their
// statements spliced in where the include stood. Files are shown by name
// relative to the main file's directory.
func readKeepalived(path string, fs files) ([]*stmt, error) {
	r := &kaReader{fs: fs, base: filepath.Dir(path)}
	return r.file(path, 0)
}

type kaReader struct {
	fs    files
	base  string
	count int // files read through include
}

func (r *kaReader) show(path string) string {
	if rel, err := filepath.Rel(r.base, path); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return path
}

func (r *kaReader) file(path string, depth int) ([]*stmt, error) {
	src, err := r.fs.read(path)
	if err != nil {
		return nil, err
	}
	stmts, err := parseTree(src, r.show(path), keepalivedSyntax)
	if err != nil {
		return nil, err
	}
	return r.expand(stmts, filepath.Dir(path), depth)
}

// expand replaces the include statements of stmts (and of their blocks)
// by the statements of the files they name.
func (r *kaReader) expand(stmts []*stmt, dir string, depth int) ([]*stmt, error) {
	var out []*stmt
	for _, s := range stmts {
		if s.block {
			body, err := r.expand(s.body, dir, depth)
			if err != nil {
				return nil, err
			}
			s.body = body
		}
		if !isInclude(s.key()) || s.block {
			out = append(out, s)
			continue
		}
		if len(s.args()) != 1 {
			return nil, fmt.Errorf("%s: %s needs one file name or pattern", s.pos, s.key())
		}
		if depth >= maxInclNest {
			return nil, fmt.Errorf("%s: includes nested deeper than %d (an include loop?)", s.pos, maxInclNest)
		}
		pattern := s.args()[0]
		if !filepath.IsAbs(pattern) {
			pattern = filepath.Join(dir, pattern)
		}
		var matches []string
		patterns, err := expandBraces(pattern)
		if err != nil {
			return nil, fmt.Errorf("%s: %s %q: %v", s.pos, s.key(), s.args()[0], err)
		}
		for _, p := range patterns {
			m, err := r.fs.glob(p)
			if err != nil {
				return nil, fmt.Errorf("%s: include %q: %v", s.pos, s.args()[0], err)
			}
			matches = append(matches, m...)
		}
		sort.Strings(matches)
		if len(matches) == 0 {
			// keepalived's plain include tolerates it; the variants
			// fail. Either way, say so.
			return nil, fmt.Errorf("%s: %s %q matches no file", s.pos, s.key(), s.args()[0])
		}
		for _, m := range matches {
			r.count++
			if r.count > maxIncludes {
				return nil, fmt.Errorf("%s: more than %d included files", s.pos, maxIncludes)
			}
			inc, err := r.file(m, depth+1)
			if err != nil {
				return nil, fmt.Errorf("%s: include: %w", s.pos, err)
			}
			out = append(out, inc...)
		}
	}
	return out, nil
}

// Limits of an include pattern's braces.
const (
	maxPatterns  = 64      // patterns one include line expands to
	maxBraceWork = 1 << 20 // bytes scanned and built to expand them
)

// expandBraces expands csh-style braces, as keepalived's glob does:
// "a/{b,c}.conf" is "a/b.conf" and "a/c.conf". More than maxPatterns
// patterns is an error, and so is a pattern whose expansion would take
// more than maxBraceWork bytes of work: the budget is shared by the whole
// recursion, so n groups cost at most the budget, not 2^n.
func expandBraces(p string) ([]string, error) {
	e := braceExpansion{work: maxBraceWork}
	if err := e.expand(p); err != nil {
		return nil, err
	}
	return e.out, nil
}

// braceExpansion is one pattern's expansion: the patterns so far and the
// work left.
type braceExpansion struct {
	out  []string
	work int
}

func (e *braceExpansion) expand(p string) error {
	// Each call scans p and has built it: that is its cost.
	e.work -= len(p) + 1
	if e.work < 0 {
		return fmt.Errorf("its braces take too long to expand (more than %d bytes of patterns)", maxBraceWork)
	}
	open := strings.IndexByte(p, '{')
	if open < 0 {
		return e.add(p)
	}
	depth, close := 0, -1
	var commas []int
	for i := open; i < len(p) && close < 0; i++ {
		switch p[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				close = i
			}
		case ',':
			if depth == 1 {
				commas = append(commas, i)
			}
		}
	}
	if close < 0 { // an unmatched brace is a character
		return e.add(p)
	}
	start := open + 1
	for _, c := range append(commas, close) {
		if err := e.expand(p[:open] + p[start:c] + p[close+1:]); err != nil {
			return err
		}
		start = c + 1
	}
	return nil
}

func (e *braceExpansion) add(p string) error {
	if len(e.out) == maxPatterns {
		return fmt.Errorf("its braces expand to more than %d patterns", maxPatterns)
	}
	e.out = append(e.out, p)
	return nil
}
