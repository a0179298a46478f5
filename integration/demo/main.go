// Command demo is `make demo`: it builds the namespace lab of spec/lab.md
// on this machine, runs a ctha pair in it (examples/fw1.hcl and fw2.hcl),
// opens live TCP flows from the client to the server through the virtual
// IPs, kills the master and shows that every flow survives on the backup.
// It shows the roles and sync state once a second while it runs, prints a
// summary and removes everything it made, also on Ctrl-C (SIGINT,
// SIGTERM) or failure.
//
//	demo [-ctha bin/ctha] [-flowgen bin/flowgen] [-examples examples]
//	     [-advert D] [-flows N] [-interval D] [-keep] [-json FILE]
//
// The environment variables DEMO_KEEP=1, DEMO_ADVERT=D and DEMO_JSON=FILE
// set -keep, -advert and -json (the Makefile passes them on). It needs
// root and working network namespaces (lab.Check).
//
// Exit status: 0 when every flow survived with no INVALID drop on the new
// master; 1 when the demo failed or could not run; 2 on a bad command
// line; 130 when interrupted. With -json the summary is written as JSON
// in every case, once the lab is removed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	exitOK          = 0
	exitFail        = 1
	exitUsage       = 2
	exitInterrupted = 130
)

// options are the demo's settings.
type options struct {
	ctha, flowgen, examples string
	advert                  time.Duration // 0: as in the examples (1 s)
	flows                   int
	interval                time.Duration
	keep                    bool
	jsonPath                string
}

// errInterrupted is the cause of the demo's context on SIGINT or SIGTERM.
var errInterrupted = errors.New("interrupted")

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		cancel(fmt.Errorf("%w by %s", errInterrupted, signalName(s)))
		for s := range sigs {
			// The cleanup is bounded; leaving now would leave the lab.
			fmt.Fprintf(os.Stderr, "\ndemo: %v: still removing the lab, a few seconds...\n", s)
		}
	}()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// signalName names the signals the demo handles as a user knows them.
func signalName(s os.Signal) string {
	switch s {
	case syscall.SIGINT:
		return "SIGINT (Ctrl-C)"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGHUP:
		return "SIGHUP (terminal closed)"
	}
	return s.String()
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, code, ok := parseFlags(args, stderr)
	if !ok {
		return code
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "demo: needs root: it creates network namespaces, links and daemons (nothing on the host's own network). Run: sudo make demo")
		return exitFail
	}
	if err := checkBinaries(&o); err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return exitFail
	}
	out := newPrinter(stdout)
	d := &demo{opts: o, out: out, start: time.Now()}
	return d.main(ctx, stderr)
}

func parseFlags(args []string, stderr io.Writer) (options, int, bool) {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.ctha, "ctha", "bin/ctha", "the ctha binary")
	fs.StringVar(&o.flowgen, "flowgen", "bin/flowgen", "the flowgen binary (integration/flowgen/cmd/flowgen)")
	fs.StringVar(&o.examples, "examples", "examples", "directory of fw1.hcl and fw2.hcl")
	fs.DurationVar(&o.advert, "advert", envDuration("DEMO_ADVERT"), "VRRP advert interval (0: as in the examples, 1s; e.g. 300ms for a faster takeover) [DEMO_ADVERT]")
	fs.IntVar(&o.flows, "flows", 200, "number of live TCP flows")
	fs.DurationVar(&o.interval, "interval", 50*time.Millisecond, "time between two messages on a flow")
	fs.BoolVar(&o.keep, "keep", envBool("DEMO_KEEP"), "after the summary, keep the lab running until Ctrl-C [DEMO_KEEP=1]")
	fs.StringVar(&o.jsonPath, "json", os.Getenv("DEMO_JSON"), "write the summary as JSON to this file at the end [DEMO_JSON]")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: demo [flags] (as root; `make demo` builds and runs it)\n\n"+
			"A ctha firewall pair in network namespaces, live TCP flows through it,\n"+
			"the master killed: every flow survives. Removes everything at the end.\n\n")
		fs.PrintDefaults()
	}
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return o, exitOK, false
	case err != nil:
		return o, exitUsage, false
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "demo: unexpected argument %q\n", fs.Arg(0))
		return o, exitUsage, false
	case o.advert < 0 || (o.advert > 0 && (o.advert < 100*time.Millisecond || o.advert%(10*time.Millisecond) != 0)):
		fmt.Fprintf(stderr, "demo: -advert %v: want 0 or a multiple of 10ms of at least 100ms\n", o.advert)
		return o, exitUsage, false
	case o.flows < 1 || o.flows > 10000:
		fmt.Fprintf(stderr, "demo: -flows %d: want 1..10000\n", o.flows)
		return o, exitUsage, false
	case o.interval < 10*time.Millisecond:
		fmt.Fprintf(stderr, "demo: -interval %v: want at least 10ms\n", o.interval)
		return o, exitUsage, false
	}
	return o, exitOK, true
}

// envDuration reads a duration from the environment; a bad value is
// reported by the flag check as a negative one.
func envDuration(name string) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return -1
	}
	return d
}

func envBool(name string) bool {
	b, _ := strconv.ParseBool(os.Getenv(name))
	return b
}

// checkBinaries makes the paths absolute (they are run from other
// directories and printed for copy and paste) and checks they exist.
func checkBinaries(o *options) error {
	for _, p := range []*string{&o.ctha, &o.flowgen, &o.examples} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return fmt.Errorf("%s: %w", *p, err)
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("%w (run it with `make demo`, which builds bin/ctha and bin/flowgen)", err)
		}
		*p = abs
	}
	return nil
}

// isTerminal reports whether w is a terminal: the live view then uses
// colours; otherwise it prints plain lines.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	if os.Getenv("TERM") == "dumb" || os.Getenv("NO_COLOR") != "" {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
