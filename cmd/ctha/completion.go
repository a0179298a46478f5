package main

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// The completion scripts are written from what `ctha help` and each
// command's -h print, so they complete exactly the commands and options
// that exist.

const completionDetail = `The Debian package installs the three; by hand:
  bash: ctha completion bash > /usr/share/bash-completion/completions/ctha
  zsh:  ctha completion zsh > /usr/share/zsh/vendor-completions/_ctha
  fish: ctha completion fish > /usr/share/fish/vendor_completions.d/ctha.fish
`

func (c *cli) completion(args []string) int {
	fs := c.flags("completion")
	if code, ok := c.parse(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(c.stderr, "ctha: completion: name one shell: bash, zsh or fish (run `ctha completion -h`)")
		return exitUsage
	}
	specs := completionSpecs()
	var b strings.Builder
	switch fs.Arg(0) {
	case "bash":
		bashCompletion(&b, specs)
	case "zsh":
		zshCompletion(&b, specs)
	case "fish":
		fishCompletion(&b, specs)
	default:
		fmt.Fprintf(c.stderr, "ctha: completion: unknown shell %q: bash, zsh or fish (run `ctha completion -h`)\n", fs.Arg(0))
		return exitUsage
	}
	if _, err := io.WriteString(c.stdout, b.String()); err != nil {
		return c.failf("write: %v", err)
	}
	return exitOK
}

// compFlag is one option of a command, as its -h shows it.
type compFlag struct {
	name  string // without dashes
	arg   string // the value's placeholder (FILE, SOCKET), "" for a switch
	usage string // the first line of its help
}

// dashed is the option as typed: -c, --offline.
func (f compFlag) dashed() string {
	if len(f.name) == 1 {
		return "-" + f.name
	}
	return "--" + f.name
}

// compSpec is what completes after `ctha NAME`.
type compSpec struct {
	name, summary string
	words         []string // positional words (operations, shells, commands)
	files         bool     // a positional argument is a file
	flags         []compFlag
}

// optionLine is a flag's line in the flag package's PrintDefaults.
var optionLine = regexp.MustCompile(`^  -([A-Za-z0-9-]+)(?: ([A-Z]+))?`)

// completionSpecs reads every command's help.
func completionSpecs() []compSpec {
	var specs []compSpec
	for _, cmd := range commands {
		s := compSpec{name: cmd.name, summary: cmd.summary}
		switch cmd.name {
		case "sync":
			s.words = slices.Sorted(maps.Keys(syncOps))
		case "help":
			for _, o := range commands {
				s.words = append(s.words, o.name)
			}
		default:
			// Lower-case alternatives of the usage: internal|external, bash|zsh|fish.
			for _, w := range strings.Fields(cmd.usage) {
				if strings.Contains(w, "|") && w == strings.ToLower(w) && !strings.ContainsAny(w, "[-") {
					s.words = append(s.words, strings.Split(w, "|")...)
				}
			}
			s.files = strings.Contains(cmd.usage, "FILE|") || strings.HasPrefix(cmd.usage, "[FILE")
		}
		if cmd.name != "help" {
			var out bytes.Buffer
			(&cli{stdout: &out, stderr: io.Discard}).dispatch([]string{cmd.name, "-h"})
			lines := strings.Split(out.String(), "\n")
			for i, l := range lines {
				m := optionLine.FindStringSubmatch(l)
				if m == nil {
					continue
				}
				f := compFlag{name: m[1], arg: m[2]}
				if i+1 < len(lines) {
					f.usage = strings.TrimSpace(lines[i+1])
				}
				s.flags = append(s.flags, f)
			}
		}
		specs = append(specs, s)
	}
	return specs
}

func bashCompletion(w *strings.Builder, specs []compSpec) {
	var names []string
	for _, s := range specs {
		names = append(names, s.name)
	}
	fmt.Fprintf(w, `# bash completion for ctha; written by ctha completion bash
_ctha() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} words= files=
	if [ "$COMP_CWORD" -eq 1 ]; then
		COMPREPLY=($(compgen -W %q -- "$cur"))
		return
	fi
	case ${COMP_WORDS[1]} in
`, strings.Join(names, " "))
	for _, s := range specs {
		var words, valued []string
		words = append(words, s.words...)
		for _, f := range s.flags {
			words = append(words, f.dashed())
			if f.arg != "" {
				valued = append(valued, f.dashed(), "-"+f.name, "--"+f.name)
			}
		}
		fmt.Fprintf(w, "\t%s)\n", s.name)
		if len(valued) > 0 {
			fmt.Fprintf(w, "\t\tcase $prev in %s) COMPREPLY=($(compgen -f -- \"$cur\")); return ;; esac\n", strings.Join(slices.Compact(valued), "|"))
		}
		fmt.Fprintf(w, "\t\twords=%q", strings.Join(words, " "))
		if s.files {
			fmt.Fprint(w, " files=1")
		}
		fmt.Fprint(w, " ;;\n")
	}
	fmt.Fprint(w, `	esac
	COMPREPLY=($(compgen -W "$words" -- "$cur"))
	if [ -n "$files" ] && [ "${cur#-}" = "$cur" ]; then
		COMPREPLY+=($(compgen -f -- "$cur"))
	fi
}
complete -F _ctha ctha
`)
}

func zshCompletion(w *strings.Builder, specs []compSpec) {
	fmt.Fprint(w, "#compdef ctha\n# zsh completion for ctha; written by ctha completion zsh\n\nlocal -a cmds\ncmds=(\n")
	for _, s := range specs {
		fmt.Fprintf(w, "\t%s\n", zshQuote(s.name+":"+s.summary))
	}
	fmt.Fprint(w, ")\nif (( CURRENT == 2 )); then\n\t_describe 'ctha command' cmds\n\treturn\nfi\ncase $words[2] in\n")
	for _, s := range specs {
		fmt.Fprintf(w, "%s)\n\t_arguments", s.name)
		for _, f := range s.flags {
			spec := f.dashed() + "[" + zshBracket(f.usage) + "]"
			if f.arg != "" {
				spec += ":" + strings.ToLower(f.arg) + ":_files"
			}
			fmt.Fprintf(w, " \\\n\t\t%s", zshQuote(spec))
		}
		switch {
		case len(s.words) > 0:
			fmt.Fprintf(w, " \\\n\t\t%s", zshQuote("*:argument:("+strings.Join(s.words, " ")+")"))
		case s.files:
			fmt.Fprintf(w, " \\\n\t\t%s", zshQuote("*:file:_files"))
		}
		fmt.Fprint(w, "\n\t;;\n")
	}
	fmt.Fprint(w, "esac\n")
}

func zshQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func zshBracket(s string) string {
	return strings.NewReplacer("[", `\[`, "]", `\]`, ":", `\:`).Replace(s)
}

func fishCompletion(w *strings.Builder, specs []compSpec) {
	fmt.Fprint(w, "# fish completion for ctha; written by ctha completion fish\ncomplete -c ctha -f\n")
	for _, s := range specs {
		fmt.Fprintf(w, "complete -c ctha -n __fish_use_subcommand -a %s -d %s\n", s.name, fishQuote(s.summary))
	}
	for _, s := range specs {
		cond := fishQuote("__fish_seen_subcommand_from " + s.name)
		if len(s.words) > 0 {
			fmt.Fprintf(w, "complete -c ctha -n %s -a %s\n", cond, fishQuote(strings.Join(s.words, " ")))
		}
		if s.files {
			fmt.Fprintf(w, "complete -c ctha -n %s -F\n", cond)
		}
		for _, f := range s.flags {
			opt := "-l " + f.name
			if len(f.name) == 1 {
				opt = "-o " + f.name
			}
			if f.arg != "" {
				opt += " -r -F"
			}
			fmt.Fprintf(w, "complete -c ctha -n %s %s -d %s\n", cond, opt, fishQuote(f.usage))
		}
	}
}

func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", `\'`).Replace(s) + "'"
}
