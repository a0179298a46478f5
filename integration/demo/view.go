package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ctha/ctha/integration/lab"
	"github.com/ctha/ctha/internal/control"
)

// printer serialises the demo's output: explanations come from the
// scenario, lines from the live view's goroutine.
type printer struct {
	mu    sync.Mutex
	w     io.Writer
	color bool
	start time.Time
}

func newPrinter(w io.Writer) *printer {
	return &printer{w: w, color: isTerminal(w), start: time.Now()}
}

func (p *printer) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

// text prints an explanation, indented by two spaces, without its first
// newline (the texts are raw strings that start on a new line).
func (p *printer) text(s string) {
	var b strings.Builder
	s = strings.TrimRight(strings.TrimPrefix(s, "\n"), "\n")
	for _, line := range strings.Split(s, "\n") {
		if line == "" {
			b.WriteString("\n")
			continue
		}
		b.WriteString("  " + line + "\n")
	}
	p.printf("%s", b.String())
}

// phase starts a phase of the demo.
func (p *printer) phase(n, total int, title string) {
	p.printf("\n%s\n", p.paint("1", fmt.Sprintf("== %d/%d  %s ==", n, total, title)))
}

// event prints a timestamped line that stands out from the live view.
func (p *printer) event(format string, args ...any) {
	p.printf("%s  %s\n", p.stamp(), p.paint("1;36", ">> "+fmt.Sprintf(format, args...)))
}

// stamp is the time since the demo started, as the live view shows it.
func (p *printer) stamp() string {
	return fmt.Sprintf("%6.1fs", time.Since(p.start).Seconds())
}

// paint wraps s in an ANSI SGR sequence on a terminal.
func (p *printer) paint(sgr, s string) string {
	if !p.color {
		return s
	}
	return "\x1b[" + sgr + "m" + s + "\x1b[0m"
}

// node is one ctha daemon of the pair.
type node struct {
	role   string // lab.RoleFW1 or lab.RoleFW2
	dir    string // its config, key, state and socket
	config string
	socket string
	proc   atomic.Pointer[lab.Proc] // once started
	killed atomic.Bool              // the demo killed it on purpose
}

// process returns the daemon's process, nil before it started.
func (n *node) process() *lab.Proc { return n.proc.Load() }

// nodeSnap is what the live view shows of a node.
type nodeSnap struct {
	down     string // why there is no status: "killed", "starting", an error
	group    string // state of sync group "fw"
	lan, wan bool   // holds the LAN / WAN VIP (read from the kernel)
	peerUp   bool
	own      int // states of its own flows (internal cache)
	peer     int // states of the peer's flows (external cache)
}

// flowSnap is the last progress line of the flowgen client.
type flowSnap struct {
	lines          int // progress lines seen so far
	alive, flows   int
	stalled        int
	curGap, maxGap time.Duration
}

var progressRE = regexp.MustCompile(`alive=(\d+)/(\d+) stalled=(\d+) echo/s=\S+ cur_gap=(\d+)ms longest_gap=(\d+)ms`)

// parseProgress reads the last progress line of a flowgen client's log.
func parseProgress(log string) (flowSnap, bool) {
	all := progressRE.FindAllStringSubmatch(log, -1)
	if len(all) == 0 {
		return flowSnap{}, false
	}
	m := all[len(all)-1]
	n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
	return flowSnap{
		lines: len(all), alive: n(1), flows: n(2), stalled: n(3),
		curGap: time.Duration(n(4)) * time.Millisecond, maxGap: time.Duration(n(5)) * time.Millisecond,
	}, true
}

// viewer prints one line a second: each node's group state, the VIPs it
// holds, whether its sync peer answers, its own and its peer's state
// counts (from `ctha status --json` run in the node's namespace), and how
// many flows are alive.
type viewer struct {
	l     *lab.Lab
	out   *printer
	ctha  string
	nodes []*node

	mu     sync.Mutex // guards the fields below
	client *lab.Proc  // the flowgen client, once started
	header bool       // print the header before the next line
}

// setClient makes the view show the client's flows.
func (v *viewer) setClient(p *lab.Proc) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.client = p
}

// reheader makes the next line come with the column header again (after
// an explanation).
func (v *viewer) reheader() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.header = true
}

// run prints a line every second until ctx ends.
func (v *viewer) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		v.line()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// line takes a snapshot and prints it.
func (v *viewer) line() {
	snaps := make([]nodeSnap, len(v.nodes))
	var wg sync.WaitGroup
	for i, n := range v.nodes {
		wg.Go(func() { snaps[i] = v.snapNode(n) })
	}
	wg.Wait()
	v.mu.Lock()
	client, header := v.client, v.header
	v.header = false
	v.mu.Unlock()
	flows := "-"
	if client != nil {
		if f, ok := parseProgress(client.Log()); ok {
			flows = fmt.Sprintf("%d/%d", f.alive, f.flows)
			if f.curGap >= 500*time.Millisecond {
				flows += fmt.Sprintf("  (no echo for %.1fs)", f.curGap.Seconds())
			}
		} else if client.Exited() {
			flows = "stopped"
		} else {
			flows = "starting"
		}
	}
	var b strings.Builder
	if header {
		fmt.Fprintf(&b, "\n%7s", "time")
		for _, n := range v.nodes {
			fmt.Fprintf(&b, " | %-3s %-7s %-8s %-5s %s", n.role, "group", "VIPs", "peer", "states own/peer")
		}
		b.WriteString(" | flows alive\n")
	}
	b.WriteString(v.out.stamp())
	for i, n := range v.nodes {
		b.WriteString(" | " + v.cell(n, snaps[i]))
	}
	b.WriteString(" | " + flows + "\n")
	v.out.printf("%s", b.String())
}

// cell formats one node's part of a line (42 columns).
func (v *viewer) cell(n *node, s nodeSnap) string {
	if s.down != "" {
		msg := s.down
		if len(msg) > 38 {
			msg = msg[:38]
		}
		return fmt.Sprintf("%-3s %s", n.role, v.out.paint("1;31", fmt.Sprintf("%-38s", msg)))
	}
	vips := "-"
	switch {
	case s.lan && s.wan:
		vips = "lan,wan"
	case s.lan:
		vips = "lan"
	case s.wan:
		vips = "wan"
	}
	peer := "down"
	if s.peerUp {
		peer = "up"
	}
	group := fmt.Sprintf("%-7s", s.group)
	switch s.group {
	case "MASTER":
		group = v.out.paint("1;32", group)
	case "FAULT":
		group = v.out.paint("1;31", group)
	}
	return fmt.Sprintf("%-3s %s %-8s %-5s %7d/%-7d", n.role, group, vips, peer, s.own, s.peer)
}

// snapNode reads a node's state as an administrator would: `ctha status
// --json` in its namespace, and the addresses on its interfaces.
func (v *viewer) snapNode(n *node) nodeSnap {
	if n.killed.Load() {
		return nodeSnap{down: "KILLED (SIGKILL, links down)"}
	}
	p := n.process()
	if p == nil {
		return nodeSnap{down: "not started"}
	}
	if p.Exited() {
		return nodeSnap{down: fmt.Sprintf("EXITED (%v)", p.Cmd.ProcessState)}
	}
	st, err := nodeStatus(v.l, v.ctha, n)
	if err != nil {
		return nodeSnap{down: "no status: " + firstLine(err.Error())}
	}
	s := nodeSnap{group: "?"}
	for _, g := range st.Groups {
		if g.Name == "fw" {
			s.group = g.State
		}
	}
	if st.Sync != nil {
		s.peerUp, s.own, s.peer = st.Sync.PeerUp, st.Sync.InternalEntries, st.Sync.ExternalEntries
	}
	s.lan, s.wan, _ = vipsHeld(v.l, n.role)
	return s
}

// nodeStatus runs `ctha status --json -s SOCKET` in the node's namespace.
func nodeStatus(l *lab.Lab, ctha string, n *node) (control.Status, error) {
	out, err := l.ExecTimeout(3*time.Second, n.role, ctha, "status", "--json", "-s", n.socket)
	if err != nil {
		return control.Status{}, err
	}
	var st control.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return control.Status{}, fmt.Errorf("ctha status --json in %s: %w", n.role, err)
	}
	return st, nil
}

// vipsHeld reports whether role has the LAN and the WAN VIP on its
// interfaces, with one `ip -o addr show`.
func vipsHeld(l *lab.Lab, role string) (lan, wan bool, err error) {
	out, err := l.ExecTimeout(3*time.Second, role, "ip", "-o", "addr", "show")
	if err != nil {
		return false, false, err
	}
	for _, line := range strings.Split(out, "\n") {
		// "3: lan    inet 10.10.1.1/24 scope global secondary lan ..."
		f := strings.Fields(line)
		if len(f) < 4 || f[2] != "inet" {
			continue
		}
		switch {
		case f[1] == "lan" && f[3] == lab.LANVIP.String():
			lan = true
		case f[1] == "wan" && f[3] == lab.WANVIP.String():
			wan = true
		}
	}
	return lan, wan, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// fileExists reports whether path exists.
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
