package importer

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Options name the files to import; an empty path is not read.
type Options struct {
	Keepalived string // keepalived.conf
	Conntrackd string // conntrackd.conf
}

// Result is an import's outcome.
type Result struct {
	// HCL is the ctha configuration file.
	HCL []byte
	// Warnings say what was not carried over, one line each:
	// "FILE:LINE: WHAT not carried: WHY". The same text is in HCL as
	// comments.
	Warnings []string
	// Usable reports whether HCL holds anything to run: a vrrp_instance
	// or a conntrack_sync block.
	Usable bool
}

// ErrNothing is returned with a Result whose files held nothing ctha can
// run.
var ErrNothing = errors.New("nothing usable found: no vrrp_instance and no Sync block could be carried over")

// Import reads the files o names and converts them. A file that cannot
// be read or parsed is an error naming FILE:LINE; what cannot be carried
// over is a warning in Result.
func Import(o Options) (Result, error) {
	if o.Keepalived == "" && o.Conntrackd == "" {
		return Result{}, errors.New("no file to import: give --keepalived or --conntrackd")
	}
	return convert(o, osFiles{})
}

// files is how the importer reads: the disk, or a test's map.
type files interface {
	read(path string) ([]byte, error)
	glob(pattern string) ([]string, error)
}

type osFiles struct{}

func (osFiles) read(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, fmt.Errorf("%s is a directory", path)
	}
	return io.ReadAll(io.LimitReader(f, maxFileSize+1))
}

func (osFiles) glob(pattern string) ([]string, error) { return filepath.Glob(pattern) }

// conv is one conversion under way: the output and its warnings.
type conv struct {
	top      *block
	warnings []string
	// conntrack says a conntrackd.conf gave a conntrack_sync block.
	conntrack bool
}

// skip records something not carried over: a comment in b and a warning.
func (c *conv) skip(b *block, p pos, what, why string) {
	b.note(fmt.Sprintf("not carried: %s: %s: %s", p, what, why))
	c.warnings = append(c.warnings, fmt.Sprintf("%s: %s not carried: %s", p, what, why))
}

func convert(o Options, fs files) (Result, error) {
	c := &conv{top: &block{}}
	var srcs []string
	var ka *keepalived
	if o.Keepalived != "" {
		stmts, err := readKeepalived(o.Keepalived, fs)
		if err != nil {
			return Result{}, err
		}
		ka = &keepalived{conv: c, stmts: stmts}
		srcs = append(srcs, filepath.Base(o.Keepalived))
	}
	var ct *conntrackd
	if o.Conntrackd != "" {
		name := filepath.Base(o.Conntrackd)
		src, err := fs.read(o.Conntrackd)
		if err != nil {
			return Result{}, err
		}
		stmts, err := parseTree(src, name, conntrackdSyntax)
		if err != nil {
			return Result{}, err
		}
		ct = &conntrackd{conv: c, name: name, stmts: stmts}
		srcs = append(srcs, name)
	}
	c.top.note(fmt.Sprintf("Written by `ctha import` from %s.", strings.Join(srcs, " and ")))
	c.top.note("Check it with `ctha check`, and read every \"not carried\" note: each says what")
	c.top.note("keepalived or conntrackd did that this file does not, and why.")
	// The sync block is built first, so that the keepalived side knows
	// whether a sync group can drive it; it is written last.
	var sync *block
	if ct != nil {
		sync = ct.convert()
		c.conntrack = sync != nil
	}
	usable := sync != nil
	ctWarnings := c.warnings
	c.warnings = nil
	if ka != nil && ka.convert() {
		usable = true
	}
	// keepalived's warnings first, as the file is written.
	c.warnings = append(c.warnings, ctWarnings...)
	if sync != nil {
		c.top.items = append(c.top.items, item{block: sync})
	}
	res := Result{HCL: render(c.top), Warnings: c.warnings, Usable: usable}
	if !usable {
		return res, ErrNothing
	}
	return res, nil
}

// seconds parses keepalived's and conntrackd's times: seconds, with a
// fraction allowed (keepalived's resolution is a microsecond).
func seconds(s string) (time.Duration, bool) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 1e6 || f != f {
		return 0, false
	}
	return time.Duration(f*1e6+0.5) * time.Microsecond, true
}

// duration writes d as ctha's files do: "3s", "500ms", "1.25s".
func duration(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	case d%time.Millisecond == 0 && d < time.Second:
		return fmt.Sprintf("%dms", d/time.Millisecond)
	case d%time.Microsecond == 0 && d < time.Millisecond:
		return fmt.Sprintf("%dus", d/time.Microsecond)
	}
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

// integer parses a whole number in [lo, hi].
func integer(s string, lo, hi int) (int, bool) {
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, false
	}
	return n, true
}

// onOff parses conntrackd's and keepalived's booleans.
func onOff(s string) (v, ok bool) {
	switch strings.ToLower(s) {
	case "on", "yes", "true":
		return true, true
	case "off", "no", "false":
		return false, true
	}
	return false, false
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// quoteWords joins words into a line that keepalived (and ctha) split back
// into the same words.
func quoteWords(words []string) string {
	out := make([]string, len(words))
	for i, w := range words {
		if w != "" && !strings.ContainsAny(w, " \t\n\"'\\") {
			out[i] = w
			continue
		}
		out[i] = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(w) + `"`
	}
	return strings.Join(out, " ")
}
