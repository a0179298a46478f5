package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestCompletionBash loads the bash script in a real bash and completes.
func TestCompletionBash(t *testing.T) {
	code, script, errs := runCLI("completion", "bash")
	if code != exitOK || errs != "" {
		t.Fatalf("completion bash: exit %d, %q", code, errs)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	for _, tc := range []struct {
		name  string
		words string // the command line, the last word the one completed
		want  []string
	}{
		{"commands", "ctha st", []string{"status", "stats"}},
		{"every command", "ctha co", []string{"completion"}},
		{"dump's cache", "ctha dump ", []string{"internal", "external", "--json", "-s"}},
		{"sync operations", "ctha sync re", []string{"request", "resync"}},
		{"check's options", "ctha check --", []string{"--offline"}},
		{"shells", "ctha completion ", []string{"bash", "zsh", "fish"}},
		{"help", "ctha help fa", []string{"failover"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			words := strings.Split(tc.words, " ")
			args := append([]string{"--norc", "--noprofile", "-c", script + `
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _ctha; printf '%s\n' "${COMPREPLY[@]}"`, "bash"}, words...)
			cmd := exec.Command(bash, args...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			got := strings.Fields(string(out))
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("%q completes to %q, want %q", tc.words, got, tc.want)
			}
		})
	}
}

// TestCompletionScripts: each shell's script parses in that shell, where
// it is installed, and names every command.
func TestCompletionScripts(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		code, script, errs := runCLI("completion", sh)
		if code != exitOK || errs != "" {
			t.Fatalf("completion %s: exit %d, %q", sh, code, errs)
		}
		for _, cmd := range commands {
			if !strings.Contains(script, cmd.name) {
				t.Errorf("%s script does not name %s", sh, cmd.name)
			}
		}
		if path, err := exec.LookPath(sh); err == nil {
			c := exec.Command(path, "-n")
			c.Stdin = strings.NewReader(script)
			if out, err := c.CombinedOutput(); err != nil {
				t.Errorf("%s -n: %v\n%s", sh, err, out)
			}
		}
	}
	if code, _, errs := runCLI("completion", "tcsh"); code != exitUsage || !strings.HasPrefix(errs, "ctha: completion: unknown shell") {
		t.Errorf("completion tcsh: exit %d, %q", code, errs)
	}
	if code, _, _ := runCLI("completion"); code != exitUsage {
		t.Errorf("completion without a shell: exit %d", code)
	}
}
