// Command ctha keeps a Linux stateful firewall pair highly available: VRRP,
// conntrack replication and the choreography between them, in one process.
//
// Run `ctha help` for the commands.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/ctha/ctha/cfg"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// command is one subcommand.
type command struct {
	name    string
	usage   string // arguments, as shown in help
	summary string
	run     func(c *cli, args []string) int
}

// commands lists only what works today. It is filled in init because help
// refers to it.
var commands []command

func init() {
	commands = []command{
		{"run", "[-c FILE] [-s SOCKET]", "run the daemon in the foreground (systemd Type=notify)", (*cli).run},
		{"check", "[--offline] [-c FILE]", "validate a configuration; print every problem as file:line,col: message", (*cli).check},
		{"status", "[--json] [-s SOCKET]", "show the role of every sync group and instance, and sync health", (*cli).status},
		{"stats", "[--json] [-s SOCKET]", "show counters: VRRP adverts sent and received, drops by reason", (*cli).stats},
		{"dump", "internal|external [--json] [-s SOCKET]", "list the flows of a cache: this node's (internal) or the peer's (external)", (*cli).dump},
		{"failover", "[--cancel] [-s SOCKET] [GROUP]", "planned handover: drain sync, resign, stay demoted until --cancel", (*cli).failoverCmd},
		{"events", "[--json] [-s SOCKET]", "stream transitions and sync events (JSON lines with --json)", (*cli).eventsCmd},
		{"sync", "OP [-s SOCKET]", "conntrack operations: commit, flush, resync, bulk, request, purge", (*cli).syncCmd},
		{"keygen", "[FILE|-]", "write a new random sync key to FILE (mode 0600, never overwrites) or stdout (-, or no FILE)", (*cli).keygen},
		{"import", "[--keepalived F] [--conntrackd F] [-o FILE]", "convert keepalived.conf and conntrackd.conf into one ctha configuration", (*cli).importCmd},
		{"completion", "bash|zsh|fish", "print a shell completion script", (*cli).completion},
		{"version", "", "print the version", (*cli).version},
		{"help", "[COMMAND]", "show this help, or a command's", (*cli).help},
	}
}

// commandDetail is more of a command's help, after its summary.
var commandDetail = map[string]string{"check": checkDetail, "completion": completionDetail, "events": eventsDetail,
	"import": importDetail}

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1 // the operation failed
	exitUsage = 2 // the command line is wrong
)

// cli carries a command's output streams, so tests can run commands in
// process.
type cli struct {
	stdout, stderr io.Writer
	// host is the machine `ctha check` checks against; nil: this one.
	host cfg.Host
}

func main() {
	c := &cli{stdout: os.Stdout, stderr: os.Stderr}
	os.Exit(c.main(os.Args[1:]))
}

// main runs a command. A panic of the command (on this goroutine) is a
// failure, exit 1 with one line and the stack, not the runtime's exit 2,
// which the contract keeps for a wrong command line. (A panic on another
// goroutine of the daemon still ends the process with the runtime's 2:
// Go offers no way to catch it.)
func (c *cli) main(args []string) (code int) {
	defer func() {
		if p := recover(); p != nil {
			fmt.Fprintf(c.stderr, "ctha: internal error: %v\n%s", p, debug.Stack())
			code = exitFail
		}
	}()
	return c.dispatch(args)
}

func (c *cli) dispatch(args []string) int {
	if len(args) == 0 {
		c.usage(c.stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		c.usage(c.stdout)
		return exitOK
	case "-v", "--version":
		name = "version"
	}
	for _, cmd := range commands {
		if cmd.name == name {
			return cmd.run(c, args[1:])
		}
	}
	fmt.Fprintf(c.stderr, "ctha: unknown command %q; run `ctha help`\n", name)
	return exitUsage
}

func (c *cli) usage(w io.Writer) {
	fmt.Fprint(w, "ctha keeps a Linux stateful firewall pair highly available:\nVRRP, conntrack replication and failover in one process.\n\nUsage:\n")
	for _, cmd := range commands {
		fmt.Fprintf(w, "  ctha %-8s %-22s %s\n", cmd.name, cmd.usage, cmd.summary)
	}
	fmt.Fprint(w, "\nRun `ctha COMMAND -h` for a command's options.\n")
}

// flags returns a flag set for a command. The flag package prints
// nothing itself: parse says what is wrong in one `ctha:` line on stderr,
// and prints the help asked for with -h on stdout.
func (c *cli) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// commandHelp prints a command's help on w.
func (c *cli) commandHelp(w io.Writer, fs *flag.FlagSet) {
	for _, cmd := range commands {
		if cmd.name != fs.Name() {
			continue
		}
		fmt.Fprintf(w, "Usage: ctha %s %s\n\n%s.\n", cmd.name, cmd.usage, upperFirst(cmd.summary))
		if d := commandDetail[cmd.name]; d != "" {
			fmt.Fprintf(w, "\n%s", d)
		}
		if hasFlags(fs) {
			fmt.Fprintln(w, "\nOptions:")
			fs.SetOutput(w)
			fs.PrintDefaults()
			fs.SetOutput(io.Discard)
		}
	}
}

// parse parses a command's flags; ok is false when the command must end
// with the returned exit code (help asked, or a bad flag).
func (c *cli) parse(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			c.commandHelp(c.stdout, fs)
			return exitOK, false
		}
		fmt.Fprintf(c.stderr, "ctha: %s: %v (run `ctha %s -h`)\n", fs.Name(), err, fs.Name())
		return exitUsage, false
	}
	return exitOK, true
}

// parseMixed parses a command line whose flags may come before or after
// its positional arguments (`ctha sync commit -s SOCK`), which the flag
// package alone does not allow; it returns the positional arguments.
func (c *cli) parseMixed(fs *flag.FlagSet, args []string) (pos []string, code int, ok bool) {
	for {
		if code, ok := c.parse(fs, args); !ok {
			return nil, code, false
		}
		if fs.NArg() == 0 {
			return pos, exitOK, true
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// printJSON prints v as indented JSON (the documented --json documents);
// a failed write is a failure, not a silent exit 0.
func (c *cli) printJSON(v any) int {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return c.failf("write: %v", err)
	}
	return exitOK
}

// failf prints a one-line reason and returns exitFail.
func (c *cli) failf(format string, args ...any) int {
	fmt.Fprintf(c.stderr, "ctha: "+format+"\n", args...)
	return exitFail
}

func (c *cli) version(args []string) int {
	fs := c.flags("version")
	if code, ok := c.parse(fs, args); !ok {
		return code
	}
	fmt.Fprintf(c.stdout, "ctha %s %s %s/%s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}

func (c *cli) help(args []string) int {
	if len(args) == 0 {
		c.usage(c.stdout)
		return exitOK
	}
	for _, cmd := range commands {
		if cmd.name == args[0] && cmd.name != "help" {
			return cmd.run(c, []string{"-h"})
		}
	}
	if args[0] == "help" {
		c.usage(c.stdout)
		return exitOK
	}
	fmt.Fprintf(c.stderr, "ctha: unknown command %q; run `ctha help`\n", args[0])
	return exitUsage
}
