package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// cleanup stops every process the demo started (by pid), deletes the
// lab's namespaces, then checks that none is left, independently of the
// lab. The demo's directory goes too, unless the demo failed (its logs
// are kept then).
func (d *demo) cleanup() {
	p := d.out
	if d.l != nil {
		d.out.phase(5, phases, "Cleaning up")
		p.text(fmt.Sprintf("Stopping the %d processes the demo started (by pid) and deleting the namespaces %s-*.",
			len(d.sum.Processes), d.sum.Prefix))
	}
	errs := d.tb.runCleanups()
	if d.sum.Prefix != "" {
		left, err := namespacesLeft(d.sum.Prefix)
		switch {
		case err != nil:
			errs = append(errs, err.Error())
		case len(left) > 0:
			errs = append(errs, fmt.Sprintf("namespaces left: %s", strings.Join(left, " ")))
		}
	}
	for _, pi := range d.sum.Processes {
		if err := syscall.Kill(pi.Pid, 0); !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Sprintf("process %s (pid %d) still exists", pi.Name, pi.Pid))
		}
	}
	d.sum.CleanupErrors = errs
	d.sum.Cleaned = len(errs) == 0
	if d.sum.Result == "pass" || d.sum.Result == "interrupted" {
		if err := os.RemoveAll(d.tb.dir); err != nil {
			d.sum.CleanupErrors = append(d.sum.CleanupErrors, err.Error())
		}
	} else {
		p.text(fmt.Sprintf("The configs and logs stay in %s (rm -r it when done).", d.tb.dir))
	}
	d.sum.DurationS = time.Since(d.start).Seconds()
	switch {
	case d.sum.Cleaned && d.l != nil:
		p.text(fmt.Sprintf("Done: no namespace %s-* and no process of the demo is left.", d.sum.Prefix))
	case !d.sum.Cleaned:
		p.printf("%s\n", p.paint("1;31", "demo: cleanup incomplete:\n  "+strings.Join(errs, "\n  ")))
		p.text(fmt.Sprintf("Remove what is left by hand:\n  for ns in $(ip netns list | awk '/^%s-/ {print $1}'); do ip netns del $ns; done", d.sum.Prefix))
	}
}

// namespacesLeft lists the namespaces named prefix-*.
func namespacesLeft(prefix string) ([]string, error) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns list: %w", err)
	}
	var left []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix+"-") {
			left = append(left, f[0])
		}
	}
	return left, nil
}

// keepRunning leaves the lab up after the summary until a signal.
func (d *demo) keepRunning(ctx context.Context) {
	p := d.out
	p.printf("\n%s\n", p.paint("1", "The lab stays up (DEMO_KEEP=1)"))
	p.text("fw1 is dead with its links down; fw2 is MASTER with the flows' states in its kernel\n" +
		"(the flows themselves have stopped). Look around:\n\n" + d.lookCommands(false))
	p.text(fmt.Sprintf("\n\nPress Ctrl-C here (or run `kill %d`) to remove the lab. If this program is\n"+
		"killed with SIGKILL instead, its daemons die with it and you remove the namespaces with\n"+
		"  for ns in $(ip netns list | awk '/^%s-/ {print $1}'); do ip netns del $ns; done",
		os.Getpid(), d.sum.Prefix))
	<-ctx.Done()
	p.printf("\n%s: removing the lab.\n", context.Cause(ctx))
}

// lookCommands are the commands to look further, with this run's
// namespaces, binary and sockets.
func (d *demo) lookCommands(during bool) string {
	var b strings.Builder
	if during {
		b.WriteString("To look further while it runs, in another terminal (the lab goes away at the end;\n" +
			"DEMO_KEEP=1 make demo keeps it up afterwards):\n")
	}
	ns := func(n *node) string { return d.l.NS(n.role) }
	cmd := func(comment, format string, args ...any) {
		fmt.Fprintf(&b, "  # %s\n  %s\n", comment, fmt.Sprintf(format, args...))
	}
	nodes := []*node{d.fw2, d.fw1}
	if !during {
		nodes = nodes[:1] // fw1 is dead
	}
	for _, n := range nodes {
		cmd(n.role+"'s role, VIPs and sync health", "ip netns exec %s %s status -s %s", ns(n), d.opts.ctha, n.socket)
	}
	cmd("fw1's flows, as fw2 holds them", "ip netns exec %s %s dump external -s %s", ns(d.fw2), d.opts.ctha, d.fw2.socket)
	cmd("VRRP and sync counters", "ip netns exec %s %s stats -s %s", ns(d.fw2), d.opts.ctha, d.fw2.socket)
	cmd("the strict ruleset, with its INVALID counter", "ip netns exec %s nft list ruleset", ns(d.fw2))
	if p1, p2 := d.fw1.process(), d.fw2.process(); p1 != nil && p2 != nil {
		cmd("the daemons' logs", "tail -f %s %s", p1.LogPath, p2.LogPath)
	}
	return strings.TrimRight(b.String(), "\n")
}
