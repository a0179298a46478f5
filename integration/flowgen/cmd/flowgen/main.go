// Command flowgen runs long-lived TCP flows through a firewall pair and
// reports, per flow, whether it survived and the longest gap in its
// traffic. See package github.com/ctha/ctha/integration/flowgen for what
// it measures and the output formats.
//
//	flowgen server -listen ADDR [flags]
//	flowgen client -connect ADDR [flags]
//	flowgen rate -connect ADDR -rate N -duration D [flags]
//	flowgen sink -listen ADDR [-ready FILE]
//
// Exit status: 0 ok, 1 error (including a bad command line).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ctha/ctha/integration/flowgen"
)

const (
	exitOK   = 0
	exitFail = 1
)

const usage = `usage:
  flowgen server -listen ADDR [-user-timeout D] [-ready FILE]
  flowgen client -connect ADDR [-flows N] [-interval D] [-duration D]
                 [-json FILE] [-ready FILE] [-stop-file FILE] [-progress]
                 [-connect-timeout D] [-user-timeout D] [-alive-window D]
                 [-gap-threshold D]
  flowgen rate -connect ADDR -rate N -duration D [-sources A,B,...]
               [-timeout D] [-json FILE]
  flowgen sink -listen ADDR [-ready FILE]

Run "flowgen server -h" or "flowgen client -h" for the flags.
Exit status: 0 ok, 1 error.
`

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		// A second signal kills as usual.
		signal.Stop(sigs)
		cancel(fmt.Errorf("signal %v", s))
	}()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole command; ctx ends with the cause "signal ..." on
// SIGTERM/SIGINT.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitFail
	}
	switch args[0] {
	case "server":
		return server(ctx, args[1:], stdout, stderr)
	case "client":
		return client(ctx, args[1:], stdout, stderr)
	case "rate":
		return rate(ctx, args[1:], stdout, stderr)
	case "sink":
		return sink(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "flowgen: unknown command %q\n%s", args[0], usage)
		return exitFail
	}
}

// parse parses args; it returns false and the exit code when the command
// must end (-h, or an error already printed).
func parse(fs *flag.FlagSet, args []string) (bool, int) {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return false, exitOK
	}
	if err != nil {
		return false, exitFail
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "flowgen %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return false, exitFail
	}
	return true, exitOK
}

func server(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "", "address to listen on, host:port (required; port 0 picks one)")
	userTimeout := fs.Duration("user-timeout", flowgen.DefaultUserTimeout, "TCP_USER_TIMEOUT of every connection (0: kernel default)")
	ready := fs.String("ready", "", "also write the \"listening ADDR\" line to this file, atomically, once listening")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: flowgen server -listen ADDR [flags]\n\nEchoes every connection until SIGTERM or SIGINT; prints \"listening ADDR\" on stdout once listening.\n\n")
		fs.PrintDefaults()
	}
	if ok, code := parse(fs, args); !ok {
		return code
	}
	if *listen == "" {
		fmt.Fprintln(stderr, "flowgen server: -listen is required")
		return exitFail
	}
	if *userTimeout < 0 {
		fmt.Fprintln(stderr, "flowgen server: -user-timeout must not be negative")
		return exitFail
	}
	if err := removeStale(*ready); err != nil {
		fmt.Fprintf(stderr, "flowgen server: %v\n", err)
		return exitFail
	}
	s, err := flowgen.Listen(*listen)
	if err != nil {
		fmt.Fprintf(stderr, "flowgen server: %v\n", err)
		return exitFail
	}
	s.UserTimeout = *userTimeout
	var logMu sync.Mutex
	s.Logf = func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(stderr, "flowgen server: "+format+"\n", args...)
	}
	line := fmt.Sprintf("listening %s\n", s.Addr())
	if *ready != "" {
		if err := writeAtomic(*ready, []byte(line)); err != nil {
			s.Close()
			fmt.Fprintf(stderr, "flowgen server: %v\n", err)
			return exitFail
		}
	}
	fmt.Fprint(stdout, line)
	if err := s.Serve(ctx); err != nil {
		fmt.Fprintf(stderr, "flowgen server: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stderr, "flowgen server: stopped (%v), %d connections served\n", context.Cause(ctx), s.Accepted())
	return exitOK
}

func client(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c flowgen.Client
	fs.StringVar(&c.Addr, "connect", "", "server address, host:port (required)")
	fs.IntVar(&c.Flows, "flows", 200, "number of TCP connections")
	fs.DurationVar(&c.Interval, "interval", flowgen.DefaultInterval, "time between two messages on one flow")
	fs.DurationVar(&c.Duration, "duration", 30*time.Second, "how long traffic runs once every flow is up (0: until a signal or -stop-file)")
	fs.DurationVar(&c.ConnectTimeout, "connect-timeout", flowgen.DefaultConnectTimeout, "bound on the setup: every flow connected and echoing once")
	userTimeout := fs.Duration("user-timeout", flowgen.DefaultUserTimeout, "TCP_USER_TIMEOUT of every connection (0: kernel default)")
	fs.DurationVar(&c.AliveWindow, "alive-window", flowgen.DefaultAliveWindow, "a flow survived if it echoed within this window before the end")
	fs.DurationVar(&c.GapThreshold, "gap-threshold", 0, "gaps longer than this are listed per flow (0: max(5*interval, 150ms))")
	jsonOut := fs.String("json", "", "write the report, indented, to this file (atomically) instead of one line on stdout")
	ready := fs.String("ready", "", "when every flow is up, write the ready line to this file (atomically) instead of stdout")
	stopFile := fs.String("stop-file", "", "stop early when this file appears (must not exist at start)")
	progress := fs.Bool("progress", false, "print a progress line to stderr every second")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: flowgen client -connect ADDR [flags]

Opens -flows connections, then prints "ready N flows to ADDR" (stdout, or
-ready FILE). Sends a message every -interval on each flow and times the
echoes. Stops after -duration, on SIGTERM/SIGINT or when -stop-file appears,
then writes the JSON report (-json FILE, or one line on stdout) and a
summary on stderr. Exit status 0 when the report was written, whatever
happened to the flows; 1 on any error.

`)
		fs.PrintDefaults()
	}
	if ok, code := parse(fs, args); !ok {
		return code
	}
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "flowgen client: "+format+"\n", args...)
		return exitFail
	}
	switch {
	case c.Addr == "":
		return fail("-connect is required")
	case c.Flows < 1:
		return fail("-flows must be at least 1")
	case c.Interval < time.Millisecond:
		return fail("-interval must be at least 1ms")
	case c.Duration < 0:
		return fail("-duration must not be negative")
	case c.ConnectTimeout <= 0:
		return fail("-connect-timeout must be positive")
	case *userTimeout < 0:
		return fail("-user-timeout must not be negative")
	case c.AliveWindow <= 0:
		return fail("-alive-window must be positive")
	case c.GapThreshold < 0:
		return fail("-gap-threshold must not be negative")
	}
	c.UserTimeout = *userTimeout
	if c.UserTimeout == 0 {
		c.UserTimeout = -1 // library: negative leaves the kernel default
	}
	if err := removeStale(*ready); err != nil {
		return fail("%v", err)
	}
	if *stopFile != "" {
		if _, err := os.Stat(*stopFile); err == nil {
			return fail("stop file %s already exists: remove it first", *stopFile)
		}
	}
	if *jsonOut != "" {
		// Fail now rather than after the run if the report cannot be written.
		if _, err := os.Stat(filepath.Dir(*jsonOut)); err != nil {
			return fail("-json: %v", err)
		}
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if *stopFile != "" {
		go watchStopFile(ctx, cancel, *stopFile)
	}

	var outMu sync.Mutex // stdout and stderr are shared with Progress
	readyLine := fmt.Sprintf("ready %d flows to %s\n", c.Flows, c.Addr)
	var readyErr error // written by Ready, read after Run returned
	c.Ready = func() {
		if *ready != "" {
			if readyErr = writeAtomic(*ready, []byte(readyLine)); readyErr != nil {
				cancel(readyErr) // nobody will know we are ready: give up
			}
			return
		}
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprint(stdout, readyLine)
	}
	if *progress {
		c.Progress = func(p flowgen.Progress) {
			outMu.Lock()
			defer outMu.Unlock()
			fmt.Fprintf(stderr, "flowgen: %v\n", p)
		}
	}

	rep, err := c.Run(ctx)
	if err != nil {
		return fail("%v", err)
	}
	if readyErr != nil {
		return fail("-ready: %v", readyErr)
	}
	outMu.Lock()
	defer outMu.Unlock()
	if *jsonOut != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return fail("report: %v", err)
		}
		if err := writeAtomic(*jsonOut, append(b, '\n')); err != nil {
			return fail("%v", err)
		}
	} else {
		b, err := json.Marshal(rep)
		if err != nil {
			return fail("report: %v", err)
		}
		if _, err := fmt.Fprintf(stdout, "%s\n", b); err != nil {
			return fail("writing the report: %v", err)
		}
	}
	fmt.Fprintf(stderr, "flowgen client: %d/%d flows survived (%d errors), longest gap %.1f ms, p50 %.1f ms; %.1f s, stop: %s\n",
		rep.Survived, rep.Flows, rep.Errored, rep.LongestGapMs, rep.GapsMs.P50, rep.DurationMs/1000, rep.StopReason)
	return exitOK
}

// watchStopFile cancels ctx when path appears.
func watchStopFile(ctx context.Context, cancel context.CancelCauseFunc, path string) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := os.Stat(path); err == nil {
				cancel(fmt.Errorf("stop file %s", path))
				return
			}
		}
	}
}

// removeStale removes a ready file left by an earlier run, so a waiter
// cannot mistake it for this run's.
func removeStale(path string) error {
	if path == "" {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing stale ready file: %w", err)
	}
	return nil
}

// writeAtomic writes data to path through a temporary file in the same
// directory, so a reader never sees it partly written.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// rate opens short connections at a fixed rate and reports their
// handshake times (flowgen.RateClient).
func rate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c flowgen.RateClient
	fs.StringVar(&c.Addr, "connect", "", "server address, host:port (required)")
	fs.IntVar(&c.Rate, "rate", 0, "new connections per second (required)")
	fs.DurationVar(&c.Duration, "duration", 0, "how long connections are opened (required)")
	fs.DurationVar(&c.Timeout, "timeout", 3*time.Second, "longest handshake: longer is a failure")
	sources := fs.String("sources", "", "comma-separated local addresses to connect from, in turn")
	fs.IntVar(&c.UDPRate, "udp-rate", 0, "background load: new UDP flows per second to the server's address (0: none)")
	udpPorts := fs.String("udp-ports", "10000-60000", "the background load's destination ports, LO-HI: one new flow per datagram until they come round")
	jsonOut := fs.String("json", "", "write the report to this file (atomically) instead of stdout")
	if ok, code := parse(fs, args); !ok {
		return code
	}
	for _, s := range strings.Split(*sources, ",") {
		if s == "" {
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			fmt.Fprintf(stderr, "flowgen rate: -sources: %v\n", err)
			return exitFail
		}
		c.Sources = append(c.Sources, a)
	}
	if _, err := fmt.Sscanf(*udpPorts, "%d-%d", &c.UDPPorts[0], &c.UDPPorts[1]); err != nil {
		fmt.Fprintf(stderr, "flowgen rate: -udp-ports %q: want LO-HI\n", *udpPorts)
		return exitFail
	}
	rep, err := c.Run(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "flowgen rate: %v\n", err)
		return exitFail
	}
	b, _ := json.MarshalIndent(rep, "", "  ")
	if *jsonOut != "" {
		if err := writeAtomic(*jsonOut, append(b, '\n')); err != nil {
			fmt.Fprintf(stderr, "flowgen rate: %v\n", err)
			return exitFail
		}
	} else {
		fmt.Fprintf(stdout, "%s\n", b)
	}
	fmt.Fprintf(stderr, "flowgen rate: %d of %d connected (%.0f/s), %d failed, %d skipped; handshake p50 %.0f us, p99 %.0f us; %d UDP flows sent (%d refused)\n",
		rep.Connected, rep.Attempted, rep.AchievedPerSec, rep.Failed, rep.Skipped, rep.HandshakeUs.P50, rep.HandshakeUs.P99, rep.UDPSent, rep.UDPErrors)
	return exitOK
}

// sink accepts connections and closes each at once: the server of
// flowgen rate, whose connections carry nothing (the client's reset ends
// them, so neither end keeps a TIME_WAIT).
func sink(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sink", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "", "address to listen on, host:port (required)")
	ready := fs.String("ready", "", "also write the \"listening ADDR\" line to this file, atomically, once listening")
	if ok, code := parse(fs, args); !ok {
		return code
	}
	if err := removeStale(*ready); err != nil {
		fmt.Fprintf(stderr, "flowgen sink: %v\n", err)
		return exitFail
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "flowgen sink: %v\n", err)
		return exitFail
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	line := fmt.Sprintf("listening %s\n", ln.Addr())
	if *ready != "" {
		if err := writeAtomic(*ready, []byte(line)); err != nil {
			ln.Close()
			fmt.Fprintf(stderr, "flowgen sink: %v\n", err)
			return exitFail
		}
	}
	fmt.Fprint(stdout, line)
	n := 0
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				fmt.Fprintf(stderr, "flowgen sink: stopped (%v), %d connections\n", context.Cause(ctx), n)
				return exitOK
			}
			if errors.Is(err, net.ErrClosed) {
				return exitFail
			}
			continue // a connection reset before it was accepted
		}
		n++
		c.Close() // a FIN, not a reset: one that came before the client saw its handshake done would fail it
	}
}
