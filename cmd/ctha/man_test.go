package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ctha/ctha/cfg"
)

// The man pages, docs/man/ctha.8 and docs/man/ctha.hcl.5, are written by
// this file: ctha(8) from what `ctha help` and each `ctha COMMAND -h`
// print, ctha.hcl(5) from the README's configuration reference, whose
// keys TestManPages holds against the parser's schema (cfg.Keys).
// `make man` (CTHA_UPDATE_MAN=1) writes them again; TestManPages fails
// while a committed page differs from what they would be.

func TestManPages(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	ref, err := parseReference(string(readme))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ref.check(cfg.Keys()) {
		t.Error(e)
	}
	pages := map[string]string{
		"ctha.8":     manCtha(),
		"ctha.hcl.5": manConfig(ref),
	}
	for name, got := range pages {
		path := filepath.Join("../../docs/man", name)
		if os.Getenv("CTHA_UPDATE_MAN") == "1" {
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil || string(want) != got {
			t.Errorf("%s is not what ctha's help and the README's reference make of it (%v); run `make man` and commit it", path, err)
		}
		if groff, err := exec.LookPath("groff"); err == nil {
			// Warnings of the formatter fail the test (-ww), as lintian's do.
			cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z")
			cmd.Stdin = strings.NewReader(got)
			if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
				t.Errorf("groff on %s: %v\n%s", name, err, out)
			}
		}
	}
}

// TestManReferenceDrift: a key the parser takes but the reference does
// not name, or a key the reference names that the parser refuses, is
// found.
func TestManReferenceDrift(t *testing.T) {
	ref := &reference{sections: []refSection{{rows: []refRow{{key: "`node_name`"}, {key: "`no_such_key`"}}}}}
	errs := ref.check([]cfg.Key{{Path: "node_name"}, {Path: "state_dir"}})
	got := strings.Join(errs, "\n")
	for _, want := range []string{"state_dir", "no_such_key"} {
		if !strings.Contains(got, want) {
			t.Errorf("drift errors %q do not name %s", got, want)
		}
	}
}

// roff escapes text for a man page; md also turns the README's inline
// markup (`code`, **bold**) into fonts.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	return s
}

var (
	mdCode = regexp.MustCompile("`([^`]*)`")
	mdBold = regexp.MustCompile(`\*\*([^*]*)\*\*`)
)

func md(s string) string {
	s = strings.ReplaceAll(s, `\|`, "|")
	s = roff(s)
	s = mdBold.ReplaceAllString(s, `$1`)
	return mdCode.ReplaceAllString(s, `\fB$1\fR`)
}

// textLines writes text, keeping a line that begins with . or ' from
// being read as a request.
func textLines(b *strings.Builder, s string) {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			l = `\&` + l
		}
		b.WriteString(l + "\n")
	}
}

// helpBody writes the paragraphs of a help text: indented lines as they
// are, others filled.
func helpBody(b *strings.Builder, text string) {
	for _, para := range strings.Split(strings.TrimSpace(text), "\n\n") {
		b.WriteString(".PP\n")
		if strings.HasPrefix(para, "  ") {
			b.WriteString(".RS\n.nf\n")
			textLines(b, roff(para))
			b.WriteString(".fi\n.RE\n")
			continue
		}
		textLines(b, roff(para))
	}
}

func helpOutput(args ...string) string {
	var out bytes.Buffer
	(&cli{stdout: &out, stderr: &out}).dispatch(args)
	return out.String()
}

// manCtha is ctha(8).
func manCtha() string {
	var b strings.Builder
	b.WriteString(`.\" Written by TestManPages (cmd/ctha/man_test.go) from ctha's help: do not edit.
.TH CTHA 8 "" "ctha" "System Administration"
.SH NAME
ctha \- keep a Linux stateful firewall pair highly available (VRRP, conntrack replication)
.SH SYNOPSIS
.B ctha
.I COMMAND
.RI [ OPTIONS ]
.SH DESCRIPTION
`)
	help := helpOutput("help")
	intro, _, _ := strings.Cut(help, "\nUsage:")
	textLines(&b, roff(strings.TrimSpace(intro)))
	b.WriteString(`.PP
It reads one file,
.BR ctha.hcl (5),
and runs under systemd as
.BR ctha.service ,
which shows the role in the Status: line of
.BR "systemctl status ctha" .
Every error is one line that begins with
.BR ctha: ;
help goes to standard output.
.SH COMMANDS
`)
	for _, cmd := range commands {
		fmt.Fprintf(&b, ".SS \"ctha %s\"\n", strings.TrimSpace(roff(cmd.name+" "+cmd.usage)))
		text := helpOutput(cmd.name, "-h")
		if cmd.name == "help" {
			text = "Usage: ctha help\n\n" + upperFirst(cmd.summary) + ".\n"
		}
		_, text, _ = strings.Cut(text, "\n") // the Usage: line, in the heading
		text, options, _ := strings.Cut(text, "\nOptions:\n")
		helpBody(&b, text)
		writeOptions(&b, options)
	}
	fmt.Fprintf(&b, `.SH EXIT STATUS
.TP
%d
success
.TP
%d
the operation failed (for \fBctha check\fR: the file has errors)
.TP
%d
a wrong command line
.SH FILES
.TP
%s
the configuration, see \fBctha.hcl\fR(5)
.TP
%s
the control socket (mode 0600) that \fBstatus\fR, \fBstats\fR, \fBdump\fR, \fBsync\fR and \fBfailover\fR use
.TP
%s
what survives a restart (the sync protocol's epochs)
.TP
/usr/share/doc/ctha/examples/
complete configurations, the nftables rules (\fBctha.nft\fR) and the kernel settings (\fBctha\-sysctl.conf\fR) of a ctha firewall
.SH NOTES
A restart of the master is a failover. To upgrade or restart a pair
without one, hand over first:
.PP
.RS
.nf
ctha failover            # on the master: the backup takes over
apt install ./ctha_VERSION_amd64.deb
systemctl restart ctha
ctha failover \-\-cancel   # it may take the role back
.fi
.RE
.PP
Then do the same on the other node.
.SH SEE ALSO
.BR ctha.hcl (5),
.BR systemctl (1),
.BR keepalived (8),
.BR conntrackd (8)
`, exitOK, exitFail, exitUsage, roff(cfg.DefaultConfigPath), roff(cfg.DefaultSocket), roff(cfg.DefaultStateDir))
	return b.String()
}

// writeOptions writes the flag package's PrintDefaults as tagged
// paragraphs.
func writeOptions(b *strings.Builder, options string) {
	if strings.TrimSpace(options) == "" {
		return
	}
	b.WriteString(".PP\nOptions:\n")
	var desc []string
	flush := func() {
		if len(desc) > 0 {
			textLines(b, roff(strings.Join(desc, " ")))
			desc = nil
		}
	}
	for _, l := range strings.Split(options, "\n") {
		if m := optionLine.FindStringSubmatch(l); m != nil {
			flush()
			f := compFlag{name: m[1], arg: m[2]}
			fmt.Fprintf(b, ".TP\n.B %s", roff(f.dashed()))
			if f.arg != "" {
				fmt.Fprintf(b, " \\fI%s\\fR", f.arg)
			}
			b.WriteString("\n")
			continue
		}
		if s := strings.TrimSpace(l); s != "" {
			desc = append(desc, s)
		}
	}
	flush()
}

// reference is the README's configuration reference: the paragraph before
// its table and the table's rows, in sections (top level, then one per
// block that a bold row opens).
type reference struct {
	intro    string
	example  string // the minimal node under "## Configure"
	keyFile  string // "### Sync key file"
	sections []refSection
}

type refSection struct {
	head string // the bold row's key cell, "" for the top level
	rows []refRow
}

type refRow struct{ key, def, meaning string }

// parseReference reads the reference out of the README.
func parseReference(readme string) (*reference, error) {
	section := func(head string) (string, error) {
		_, rest, ok := strings.Cut(readme, "\n"+head+"\n")
		if !ok {
			return "", fmt.Errorf("README has no %q", head)
		}
		if i := regexp.MustCompile(`\n##+ `).FindStringIndex(rest); i != nil {
			rest = rest[:i[0]]
		}
		return strings.TrimSpace(rest), nil
	}
	r := &reference{}
	refText, err := section("### Reference")
	if err != nil {
		return nil, err
	}
	intro, table, ok := strings.Cut(refText, "\n| key | default | meaning |\n|---|---|---|\n")
	if !ok {
		return nil, fmt.Errorf("README's reference has no key | default | meaning table")
	}
	r.intro = strings.TrimSpace(intro)
	r.sections = []refSection{{}}
	for _, l := range strings.Split(table, "\n") {
		if !strings.HasPrefix(l, "|") {
			break
		}
		cells := splitRow(l)
		if len(cells) != 3 {
			return nil, fmt.Errorf("README's reference: row %q has %d cells, want 3", l, len(cells))
		}
		if strings.HasPrefix(cells[0], "**") {
			r.sections = append(r.sections, refSection{head: cells[0]})
			continue
		}
		s := &r.sections[len(r.sections)-1]
		s.rows = append(s.rows, refRow{key: cells[0], def: cells[1], meaning: cells[2]})
	}
	conf, err := section("## Configure")
	if err != nil {
		return nil, err
	}
	_, ex, _ := strings.Cut(conf, "```hcl\n")
	r.example, _, _ = strings.Cut(ex, "```")
	if r.keyFile, err = section("### Sync key file"); err != nil {
		return nil, err
	}
	return r, nil
}

// splitRow splits a table row at the | that are not escaped (\|).
func splitRow(l string) []string {
	l = strings.TrimSpace(l)
	l = strings.TrimSuffix(strings.TrimPrefix(l, "|"), "|")
	var cells []string
	var cur strings.Builder
	for i := 0; i < len(l); i++ {
		switch {
		case l[i] == '\\' && i+1 < len(l) && l[i+1] == '|':
			cur.WriteString(`\|`)
			i++
		case l[i] == '|':
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(l[i])
		}
	}
	return append(cells, strings.TrimSpace(cur.String()))
}

var (
	quotedLabel = regexp.MustCompile(`"[^"]*"`)
	keyWord     = regexp.MustCompile(`[a-z][a-z0-9_]*`)
)

// keyWords are the key names a key cell mentions: `garp { repeat,
// interval }` is garp, repeat and interval; quoted labels are left out.
func keyWords(cell string) []string {
	var words []string
	for _, m := range mdCode.FindAllStringSubmatch(cell, -1) {
		words = append(words, keyWord.FindAllString(quotedLabel.ReplaceAllString(m[1], ""), -1)...)
	}
	return words
}

// sectionName is the block a section documents ("vrrp_instance"), "" for
// the top level.
func (s refSection) name() string {
	if w := keyWords(s.head); len(w) > 0 {
		return w[0]
	}
	return ""
}

// check holds the reference against the schema: every key is in a row
// of its section (a key inside a block without a section of its own, such
// as control.socket or garp.repeat, in a row that names each part of its
// path), and every key a row names exists there.
func (r *reference) check(keys []cfg.Key) []string {
	var errs []string
	sections := map[string]refSection{}
	for _, s := range r.sections {
		sections[s.name()] = s
	}
	known := map[string]map[string]bool{} // section -> key names below it
	for _, k := range keys {
		parts := strings.Split(k.Path, ".")
		sec := ""
		if _, ok := sections[parts[0]]; ok && parts[0] != "" {
			sec, parts = parts[0], parts[1:]
		}
		if known[sec] == nil {
			known[sec] = map[string]bool{}
		}
		for _, p := range parts {
			known[sec][p] = true
		}
		if len(parts) == 0 {
			continue // the section's own bold row
		}
		found := slices.ContainsFunc(sections[sec].rows, func(row refRow) bool {
			words := keyWords(row.key)
			for _, p := range parts {
				if !slices.Contains(words, p) {
					return false
				}
			}
			return true
		})
		if !found {
			errs = append(errs, fmt.Sprintf("README's configuration reference does not document %s (cfg's schema has it)", k.Path))
		}
	}
	for _, s := range r.sections {
		for _, row := range s.rows {
			for _, w := range keyWords(row.key) {
				if !known[s.name()][w] {
					errs = append(errs, fmt.Sprintf("README's configuration reference documents %q in %q, which cfg's schema does not have", w, s.name()))
				}
			}
		}
	}
	return errs
}

// manConfig is ctha.hcl(5).
func manConfig(r *reference) string {
	var b strings.Builder
	fmt.Fprintf(&b, `.\" Written by TestManPages (cmd/ctha/man_test.go) from the README's configuration reference: do not edit.
.TH CTHA.HCL 5 "" "ctha" "File Formats"
.SH NAME
ctha.hcl \- configuration file of ctha(8)
.SH SYNOPSIS
%s
.SH DESCRIPTION
One HCL file configures a node: its VRRP instances, the sync groups that
fail over together, and the conntrack replication to its peer.
A file with only \fBvrrp_instance\fR blocks (VRRP alone) and one with only
\fBconntrack_sync\fR (sync under another HA manager) are both valid.
.PP
\fBctha check\fR reports every problem at once, each as file:line,col:
message, and exits 1 on an error; \fBctha check \-\-offline\fR checks the
file alone, without this machine's interfaces, commands and key file.
.PP
`, roff(cfg.DefaultConfigPath))
	intro := strings.Join(strings.Fields(r.intro), " ")
	if i := strings.Index(intro, " Defaults, all defined in"); i >= 0 {
		intro = intro[:i] // the source file, not the reader's business
	}
	textLines(&b, md(intro))
	b.WriteString(".SH EXAMPLE\nA minimal node of a pair (/usr/share/doc/ctha/examples/fw1.hcl is a complete one):\n.PP\n.RS\n.nf\n")
	textLines(&b, roff(strings.TrimRight(r.example, "\n")))
	b.WriteString(".fi\n.RE\n.SH KEYS\n")
	for _, s := range r.sections {
		if s.head == "" {
			b.WriteString(".SS \"Top level\"\n")
		} else {
			fmt.Fprintf(&b, ".SS \"%s\"\n", strings.ReplaceAll(strings.Trim(s.head, "*`"), `"`, `\(dq`))
		}
		for _, row := range s.rows {
			fmt.Fprintf(&b, ".TP\n%s\n", md(row.key))
			switch d := strings.TrimSpace(row.def); d {
			case "":
			case "required":
				b.WriteString("Required.\n")
			default:
				fmt.Fprintf(&b, "Default: %s.\n", md(d))
			}
			if m := strings.TrimSpace(row.meaning); m != "" {
				if !strings.HasSuffix(m, ".") && !strings.HasSuffix(m, ")") {
					m += "."
				}
				textLines(&b, md(upperFirst(m)))
			}
		}
	}
	b.WriteString(".SH \"SYNC KEY FILE\"\n")
	textLines(&b, md(strings.Join(strings.Fields(r.keyFile), " ")))
	b.WriteString(".SH \"SEE ALSO\"\n.BR ctha (8)\n")
	return b.String()
}
