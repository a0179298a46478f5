package cfg

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestSplitCommand: notify entries are split as keepalived splits its
// script strings.
func TestSplitCommand(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
		err  error
	}{
		{name: "bare path", in: "/etc/ctha/on-master.sh", want: []string{"/etc/ctha/on-master.sh"}},
		{name: "arguments", in: "/bin/logger -t ctha master", want: []string{"/bin/logger", "-t", "ctha", "master"}},
		{name: "blanks around and between", in: " \t/bin/x \t a\n\nb  ", want: []string{"/bin/x", "a", "b"}},
		{name: "double quotes", in: `/bin/x "a b" c`, want: []string{"/bin/x", "a b", "c"}},
		{name: "single quotes", in: `/bin/x 'a "b"' c`, want: []string{"/bin/x", `a "b"`, "c"}},
		{name: "double quotes hold single", in: `/bin/x "it's"`, want: []string{"/bin/x", "it's"}},
		{name: "quotes join a word", in: `/bin/x a"b c"d'e f'`, want: []string{"/bin/x", "ab cde f"}},
		{name: "empty quoted word", in: `/bin/x "" ''`, want: []string{"/bin/x", "", ""}},
		{name: "escaped blank", in: `/bin/x a\ b`, want: []string{"/bin/x", "a b"}},
		{name: "escaped quotes and backslash", in: `/bin/x \"a\' \\`, want: []string{"/bin/x", `"a'`, `\`}},
		{name: "escape inside double quotes", in: `/bin/x "a\"b\\c"`, want: []string{"/bin/x", `a"b\c`}},
		// keepalived, unlike a shell, escapes inside single quotes too.
		{name: "escape inside single quotes", in: `/bin/x 'it\'s'`, want: []string{"/bin/x", "it's"}},
		{name: "control escapes", in: `/bin/x \t\n\r\a\b\f\v\E`, want: []string{"/bin/x", "\t\n\r\a\b\f\v\x1b"}},
		{name: "octal", in: `/bin/x \101\0618 \7`, want: []string{"/bin/x", "A18", "\a"}},
		{name: "hex", in: `/bin/x \x41\x4a2 \xg`, want: []string{"/bin/x", "A\xa2", "xg"}},
		{name: "control character", in: `/bin/x \cA\c[`, want: []string{"/bin/x", "\x01\x1b"}},
		{name: "c at the end", in: `/bin/x \c`, want: []string{"/bin/x", "c"}},
		{name: "other escaped letter", in: `/bin/x \q\$`, want: []string{"/bin/x", "q$"}},
		{name: "no shell", in: `/bin/x $HOME; rm -rf / | cat`, want: []string{"/bin/x", "$HOME;", "rm", "-rf", "/", "|", "cat"}},
		{name: "empty", in: "", err: ErrEmptyCommand},
		{name: "blanks only", in: " \t ", err: ErrEmptyCommand},
		{name: "unterminated double quote", in: `/bin/x "a b`, err: ErrUnterminated},
		{name: "unterminated single quote", in: `/bin/x 'a b`, err: ErrUnterminated},
		{name: "escaped closing quote", in: `/bin/x "a\"`, err: ErrUnterminated},
		{name: "trailing backslash", in: `/bin/x a\`, err: ErrTrailingEscape},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SplitCommand(tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("SplitCommand(%q) error %v, want %v", tt.in, err, tt.err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("SplitCommand(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

// FuzzSplitCommand: any string either splits into at least one word or
// fails with one of the documented errors; quoting each word again gives
// the same words back.
func FuzzSplitCommand(f *testing.F) {
	for _, s := range []string{"/bin/x a b", `/bin/x "a b" 'c\'d'`, `\x41\101\cA`, `"`, `\`, ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		words, err := SplitCommand(s)
		if err != nil {
			if !errors.Is(err, ErrEmptyCommand) && !errors.Is(err, ErrUnterminated) && !errors.Is(err, ErrTrailingEscape) {
				t.Fatalf("SplitCommand(%q): undocumented error %v", s, err)
			}
			return
		}
		if len(words) == 0 {
			t.Fatalf("SplitCommand(%q) gave no words and no error", s)
		}
		var line []byte
		for i, w := range words {
			if i > 0 {
				line = append(line, ' ')
			}
			line = append(line, '"')
			for j := 0; j < len(w); j++ {
				if w[j] == '"' || w[j] == '\\' {
					line = append(line, '\\')
				}
				line = append(line, w[j])
			}
			line = append(line, '"')
		}
		again, err := SplitCommand(string(line))
		if err != nil {
			t.Fatalf("quoted again as %q: %v", line, err)
		}
		if diff := cmp.Diff(words, again); diff != "" {
			t.Fatalf("SplitCommand(%q) quoted again as %q (-first +again):\n%s", s, line, diff)
		}
	})
}

// TestNotifyBlocks: an instance's and a sync group's notify blocks, each
// entry split into its argv; a bare path, as earlier versions took, is an
// argv of one word.
func TestNotifyBlocks(t *testing.T) {
	c, diags := Parse([]byte(`
vrrp_instance "lan" {
  interface   = "lan"
  vrid        = 51
  virtual_ips = ["10.10.1.1/24"]
  notify {
    master  = ["/etc/ctha/route.sh up lan 'first hop'", "/etc/ctha/on-master.sh"]
    stop    = ["/usr/bin/logger -t ctha \"lan stopped\""]
    notify  = ["/etc/keepalived/notify.sh"]
    timeout = "3s"
  }
}
sync_group "fw" {
  instances = ["lan"]
  notify {
    backup = ["/etc/ctha/on-backup.sh"]
    fault  = ["/etc/ctha/page.sh it\\'s down"]
  }
}
`), "notify.hcl")
	if len(diags) != 0 {
		t.Fatalf("unexpected diagnostics:\n%s", formatAll(diags))
	}
	wantInstance := Notify{
		Master:  [][]string{{"/etc/ctha/route.sh", "up", "lan", "first hop"}, {"/etc/ctha/on-master.sh"}},
		Stop:    [][]string{{"/usr/bin/logger", "-t", "ctha", "lan stopped"}},
		Generic: [][]string{{"/etc/keepalived/notify.sh"}},
		Timeout: 3 * time.Second,
	}
	if diff := cmp.Diff(wantInstance, c.Instances[0].Notify); diff != "" {
		t.Errorf("instance notify (-want +got):\n%s", diff)
	}
	wantGroup := Notify{
		Backup:  [][]string{{"/etc/ctha/on-backup.sh"}},
		Fault:   [][]string{{"/etc/ctha/page.sh", "it's", "down"}},
		Timeout: DefaultNotifyTimeout,
	}
	if diff := cmp.Diff(wantGroup, c.SyncGroups[0].Notify); diff != "" {
		t.Errorf("group notify (-want +got):\n%s", diff)
	}
}
