package cfg

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Bounds of a configuration file, checked before it is parsed, so that a
// hostile or mistaken file (a binary, a generator gone wrong) costs little
// time and memory, in `ctha check` and in a reload alike, and gets a
// readable verdict.
const (
	// MaxFileSize is the largest configuration file, in bytes.
	MaxFileSize = 1 << 20
	// MaxNesting bounds the braces, brackets, parentheses and template
	// interpolations open at once (a real file needs under 10).
	MaxNesting = 32
	// MaxDiagnostics are reported; the rest are counted in one more.
	MaxDiagnostics = 50
	// maxMessage bounds a diagnostic's text (a long value quoted in it).
	maxMessage = 300
)

// Options say what Load and Parse check beyond the file itself. The zero
// Options are what the daemon uses: the key file is read, the host is not
// checked (the daemon finds out for itself).
type Options struct {
	// Host, when set, checks the configuration against this machine
	// (host.go): the interfaces and their addresses, the commands.
	Host Host
	// Offline reads nothing of this machine, for config management and
	// CI: the key file is not read (Config.Key stays zero; KeyFile is
	// set), and Host is not consulted.
	Offline bool
}

// Load reads and validates the configuration file at path. The Config is
// valid only when the diagnostics hold no error (warnings may be present);
// on error it is the zero Config.
func Load(path string) (Config, hcl.Diagnostics) {
	return LoadWith(path, Options{})
}

// LoadWith is Load with the checks o asks for (`ctha check`).
func LoadWith(path string, o Options) (Config, hcl.Diagnostics) {
	src, err := readBounded(path)
	if err != nil {
		return Config{}, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("cannot read configuration: %v", err),
		}}
	}
	return ParseWith(src, path, o)
}

// readBounded reads at most MaxFileSize+1 bytes of path: enough to know
// it is too large, never the whole of a huge file.
func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, MaxFileSize+1))
}

// Parse validates the configuration in src, read from filename. Relative
// paths in it (the key file) resolve against filename's directory.
func Parse(src []byte, filename string) (Config, hcl.Diagnostics) {
	return ParseWith(src, filename, Options{})
}

// ParseWith is Parse with the checks o asks for. The host checks see even
// a file with errors, so that every problem is reported at once.
func ParseWith(src []byte, filename string, o Options) (Config, hcl.Diagnostics) {
	if diags := checkBounds(src, filename); diags.HasErrors() {
		return Config{}, limitDiagnostics(diags)
	}
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return Config{}, limitDiagnostics(diags)
	}
	d := &decoder{}
	syn := d.file(f.Body)
	v := &validator{file: filename, dir: filepath.Dir(filename), offline: o.Offline}
	c := v.config(syn)
	c.Path = filename
	if o.Host != nil && !o.Offline {
		v.host(syn, &c, o.Host)
	}

	diags = append(d.diags, v.diags...)
	sortDiagnostics(diags)
	diags = limitDiagnostics(diags)
	if diags.HasErrors() {
		return Config{}, diags
	}
	return c, diags
}

// checkBounds refuses, before any parsing, a file over MaxFileSize, one
// with characters HCL cannot lex (the lexer's own diagnostics: a binary
// file would give the parser one error per byte), and one nested deeper
// than MaxNesting (the parser recurses per level: a few hundred thousand
// levels overflow the stack, which kills the process). The depth is
// measured on the lexer's tokens: brackets inside strings and heredocs are
// not tokens and do not count. Besides brackets and interpolations, the
// parser recurses on template if and for directives, and on the unary
// (!, -) and conditional (?) operators of an expression: those count too,
// from where the expression starts (after a comma, or a newline that ends
// it).
func checkBounds(src []byte, filename string) hcl.Diagnostics {
	if len(src) > MaxFileSize {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("%s: the configuration is larger than %d KiB; refusing to parse it", filename, MaxFileSize>>10),
		}}
	}
	tokens, diags := hclsyntax.LexConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return diags
	}
	var (
		open       []hclsyntax.TokenType // the brackets open, innermost last
		directives int                   // template if and for open
		ops        int                   // operators of the expression under way
		prev       hclsyntax.TokenType
	)
	for _, t := range tokens {
		deeper := false
		switch t.Type {
		case hclsyntax.TokenOBrace, hclsyntax.TokenOBrack, hclsyntax.TokenOParen,
			hclsyntax.TokenTemplateInterp, hclsyntax.TokenTemplateControl:
			open, deeper = append(open, t.Type), true
		case hclsyntax.TokenCBrace, hclsyntax.TokenCBrack, hclsyntax.TokenCParen, hclsyntax.TokenTemplateSeqEnd:
			// A stray closer (a syntax error) must not make room for
			// more openers.
			open = open[:max(len(open)-1, 0)]
		case hclsyntax.TokenBang, hclsyntax.TokenQuestion:
			ops, deeper = ops+1, true
		case hclsyntax.TokenMinus:
			if !endsOperand(prev) { // a negation, not a subtraction
				ops, deeper = ops+1, true
			}
		case hclsyntax.TokenComma:
			ops = 0
		case hclsyntax.TokenNewline:
			// A newline ends an expression in a body or an object, not
			// inside parentheses, brackets or a template.
			if len(open) == 0 || open[len(open)-1] == hclsyntax.TokenOBrace {
				ops = 0
			}
		case hclsyntax.TokenIdent:
			if prev == hclsyntax.TokenTemplateControl {
				switch string(t.Bytes) {
				case "if", "for":
					directives, deeper = directives+1, true
				case "endif", "endfor":
					directives = max(directives-1, 0)
				}
			}
		}
		prev = t.Type
		if deeper && len(open)+directives+ops > MaxNesting {
			r := t.Range
			return hcl.Diagnostics{{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("nested deeper than %d levels of braces, brackets, interpolations, directives and operators; refusing to parse further", MaxNesting),
				Subject:  &r,
			}}
		}
	}
	return nil
}

// endsOperand reports whether a token of type t can end an operand: a
// minus after it is a subtraction.
func endsOperand(t hclsyntax.TokenType) bool {
	switch t {
	case hclsyntax.TokenIdent, hclsyntax.TokenNumberLit, hclsyntax.TokenCQuote, hclsyntax.TokenCHeredoc,
		hclsyntax.TokenCBrace, hclsyntax.TokenCBrack, hclsyntax.TokenCParen:
		return true
	}
	return false
}

// Omitted is the Extra of the diagnostic that stands for those not shown
// beyond MaxDiagnostics: how many errors and warnings it counts.
type Omitted struct {
	Errors, Warnings int
}

// limitDiagnostics keeps the first MaxDiagnostics, with one more that
// counts the rest, and cuts each message to maxMessage characters.
func limitDiagnostics(diags hcl.Diagnostics) hcl.Diagnostics {
	if len(diags) > MaxDiagnostics {
		rest := diags[MaxDiagnostics:]
		var o Omitted
		o.Errors, o.Warnings = Count(rest)
		sev := hcl.DiagWarning
		if o.Errors > 0 {
			sev = hcl.DiagError
		}
		diags = append(diags[:MaxDiagnostics:MaxDiagnostics], &hcl.Diagnostic{
			Severity: sev,
			Summary:  fmt.Sprintf("%d more problems not shown (the first %d are)", len(rest), MaxDiagnostics),
			Extra:    o,
		})
	}
	for _, d := range diags {
		d.Summary, d.Detail = cut(d.Summary), cut(d.Detail)
	}
	return diags
}

// Count returns how many errors and warnings diags hold, those counted
// by a "more problems not shown" diagnostic included (it is not one more).
func Count(diags hcl.Diagnostics) (errors, warnings int) {
	for _, d := range diags {
		switch o, ok := d.Extra.(Omitted); {
		case ok:
			errors, warnings = errors+o.Errors, warnings+o.Warnings
		case d.Severity == hcl.DiagError:
			errors++
		default:
			warnings++
		}
	}
	return errors, warnings
}

// cut shortens s to maxMessage characters.
func cut(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	r := []rune(s)
	if len(r) <= maxMessage {
		return s
	}
	return string(r[:maxMessage]) + fmt.Sprintf("... (%d more characters)", len(r)-maxMessage)
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
