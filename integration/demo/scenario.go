package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/ctha/ctha/integration/flowgen"
	"github.com/ctha/ctha/integration/lab"
)

const phases = 5

// serverAddr is where the flows go, through both VIPs.
var serverAddr = lab.ServerAddr.Addr().String() + ":5001"

// demo is one run: the lab, the pair, the flows and what was measured.
type demo struct {
	opts  options
	out   *printer
	start time.Time
	tb    *demoTB

	l              *lab.Lab
	fw1, fw2       *node
	view           *viewer
	stopView       func() // stops the live view and waits for it; idempotent
	server, client *lab.Proc
	flowDir        string // the client's ready, stop and report files

	sum Summary
}

// main runs the scenario, prints the summary, and removes everything,
// whatever happened. It returns the exit status.
func (d *demo) main(ctx context.Context, stderr fmtWriter) int {
	if err := lab.Check(); err != nil {
		fmt.Fprintf(stderr, "demo: network namespaces do not work here: %v\n"+
			"The demo needs root, the `ip`, `nft` and `sysctl` commands, and a kernel with network\n"+
			"namespaces, veth, bridges, nf_conntrack and nf_tables (see integration/lab).\n", err)
		return exitFail
	}
	dir, err := os.MkdirTemp("", "ctha-demo-")
	if err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return exitFail
	}
	d.tb = &demoTB{dir: dir, logf: func(s string) { d.out.printf("  lab: %s\n", s) }}
	d.sum.Dir = dir
	d.sum.AdvertMs = ms(d.advert())
	d.stopView = func() {}

	err = d.scenarioSafe(ctx)
	d.stopView()
	if err == nil {
		d.printSummary()
		if d.sum.passed() {
			d.sum.Result = "pass"
		} else {
			d.sum.Result = "fail"
			d.tb.fail("the flows did not all survive")
		}
		if d.opts.keep && context.Cause(ctx) == nil {
			d.sum.Kept = true
			d.keepRunning(ctx)
		}
	} else {
		d.sum.Error = err.Error()
		if cause := context.Cause(ctx); errors.Is(cause, errInterrupted) {
			// Whatever failed then failed because of the signal.
			d.sum.Result, d.sum.Error = "interrupted", cause.Error()
			d.out.printf("\n%s\n", d.out.paint("1;33", fmt.Sprintf("demo: %v: removing everything it made.", cause)))
		} else {
			d.sum.Result = "error"
			d.tb.fail(err.Error())
			d.out.printf("\n%s\n", d.out.paint("1;31", "demo: "+err.Error()))
		}
	}
	d.cleanup()
	if d.opts.jsonPath != "" {
		if err := d.sum.writeJSON(d.opts.jsonPath); err != nil {
			fmt.Fprintf(stderr, "demo: %v\n", err)
		}
	}
	d.out.printf("%s\n", d.sum.resultLine())
	switch {
	case d.sum.Result == "interrupted":
		return exitInterrupted
	case d.sum.Result != "pass" || !d.sum.Cleaned:
		return exitFail
	}
	return exitOK
}

// fmtWriter is where errors before the scenario go.
type fmtWriter interface{ Write([]byte) (int, error) }

// scenarioSafe runs the scenario and turns a lab failure (demoTB.Fatalf)
// or any other panic into an error, so that cleanup always happens.
func (d *demo) scenarioSafe(ctx context.Context) (err error) {
	defer func() {
		switch r := recover().(type) {
		case nil:
		case fatal:
			err = errors.New(r.msg)
		default:
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return d.scenario(ctx)
}

func (d *demo) scenario(ctx context.Context) error {
	d.out.text(introText)
	for _, step := range []func(context.Context) error{d.buildLab, d.startPair, d.startFlows, d.killMaster} {
		if err := context.Cause(ctx); err != nil {
			return err
		}
		if err := step(ctx); err != nil {
			return err
		}
	}
	return nil
}

// advert is the advert interval the pair runs with.
func (d *demo) advert() time.Duration {
	if d.opts.advert == 0 {
		return time.Second
	}
	return d.opts.advert
}

// masterDown is RFC 5798's Master_Down_Interval for priority prio.
func (d *demo) masterDown(prio int) time.Duration {
	a := d.advert()
	return 3*a + time.Duration(256-prio)*a/256
}

func (d *demo) buildLab(ctx context.Context) error {
	d.out.phase(1, phases, "The lab")
	d.out.text(labText)
	d.l = lab.New(d.tb, lab.Options{NoIPv6: true})
	d.sum.Prefix = d.l.Prefix
	for _, role := range lab.Roles {
		d.sum.Namespaces = append(d.sum.Namespaces, d.l.NS(role))
	}
	d.out.text("\n" + fmt.Sprintf(topologyText, d.l.Prefix))
	return nil
}

func (d *demo) startPair(ctx context.Context) error {
	d.out.phase(2, phases, "The firewall pair")
	d.out.text(fmt.Sprintf(pairText, d.advertText(), d.masterDown(150).Seconds()))
	key := filepath.Join(d.tb.dir, "sync.key")
	if out, err := exec.CommandContext(ctx, d.opts.ctha, "keygen", key).CombinedOutput(); err != nil {
		return fmt.Errorf("ctha keygen: %w: %s", err, out)
	}
	d.fw1 = d.newNode(lab.RoleFW1)
	d.fw2 = d.newNode(lab.RoleFW2)
	d.view = &viewer{l: d.l, out: d.out, ctha: d.opts.ctha, nodes: []*node{d.fw1, d.fw2}, header: true}
	viewCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { d.view.run(viewCtx) })
	var once sync.Once
	d.stopView = func() { once.Do(func() { cancel(); wg.Wait() }) }

	if err := d.runNode(ctx, d.fw1, key); err != nil {
		return err
	}
	if err := waitFor(ctx, d.masterDown(150)+5*time.Second, 20*time.Millisecond, func() (bool, error) {
		if p := d.fw1.process(); p.Exited() {
			return false, exited(p)
		}
		return d.groupState(d.fw1) == "MASTER", nil
	}); err != nil {
		return fmt.Errorf("fw1 never became MASTER: %w\n%s", err, d.fw1.process().Tail(20))
	}
	d.out.event("fw1 is MASTER: it holds the VIPs %v (LAN) and %v (WAN)", lab.LANVIP.Addr(), lab.WANVIP.Addr())
	if err := d.runNode(ctx, d.fw2, key); err != nil {
		return err
	}
	if err := waitFor(ctx, 15*time.Second, 20*time.Millisecond, func() (bool, error) {
		for _, n := range []*node{d.fw1, d.fw2} {
			if p := n.process(); p.Exited() {
				return false, exited(p)
			}
		}
		s2, err := nodeStatus(d.l, d.opts.ctha, d.fw2)
		if err != nil {
			return false, err
		}
		s1, err := nodeStatus(d.l, d.opts.ctha, d.fw1)
		if err != nil {
			return false, err
		}
		return len(s2.Groups) > 0 && s2.Groups[0].State == "BACKUP" &&
			s2.Sync != nil && s2.Sync.PeerUp && s2.Sync.BulkComplete && s1.Sync != nil && s1.Sync.PeerUp, nil
	}); err != nil {
		return fmt.Errorf("fw2 never became BACKUP with its sync peer up: %w\n%s", err, d.fw2.process().Tail(20))
	}
	d.out.event("fw2 is BACKUP, and the two nodes talk over the sync link")
	return nil
}

// newNode prepares a node's directory.
func (d *demo) newNode(role string) *node {
	dir := filepath.Join(d.tb.dir, role)
	return &node{role: role, dir: dir, config: filepath.Join(dir, "ctha.hcl"), socket: filepath.Join(dir, "ctha.sock")}
}

// runNode writes the node's configuration (the example's, with a state
// directory of its own, and the advert interval if -advert says so) and
// key, starts `ctha run` in its namespace and waits until it answers.
func (d *demo) runNode(ctx context.Context, n *node, key string) error {
	b, err := os.ReadFile(filepath.Join(d.opts.examples, n.role+".hcl"))
	if err != nil {
		return fmt.Errorf("config of %s: %w", n.role, err)
	}
	conf := string(b)
	if d.opts.advert != 0 {
		const line = `advert_interval = "1s"`
		if c := strings.Count(conf, line); c != 2 {
			return fmt.Errorf("config of %s: found %q %d times, want 2 (lan and wan)", n.role, line, c)
		}
		conf = strings.ReplaceAll(conf, line, fmt.Sprintf("advert_interval = %q", d.opts.advert.String()))
	}
	// Never the host's /var/lib/ctha, and one per node: both nodes of
	// the lab share the filesystem.
	conf = fmt.Sprintf("state_dir = %q\n", filepath.Join(n.dir, "state")) + conf
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		return fmt.Errorf("node %s: %w", n.role, err)
	}
	keyData, err := os.ReadFile(key)
	if err != nil {
		return fmt.Errorf("node %s: %w", n.role, err)
	}
	if err := os.WriteFile(filepath.Join(n.dir, "sync.key"), keyData, 0o600); err != nil {
		return fmt.Errorf("node %s: %w", n.role, err)
	}
	if err := os.WriteFile(n.config, []byte(conf), 0o644); err != nil {
		return fmt.Errorf("node %s: %w", n.role, err)
	}
	p := d.l.Start(d.tb, n.role, "ctha-"+n.role, d.opts.ctha, "run", "-c", n.config, "-s", n.socket)
	d.sum.Processes = append(d.sum.Processes, ProcInfo{Name: p.Name, Pid: p.Pid()})
	n.proc.Store(p)
	err = waitFor(ctx, 10*time.Second, 20*time.Millisecond, func() (bool, error) {
		if p.Exited() {
			return false, exited(p)
		}
		_, err := nodeStatus(d.l, d.opts.ctha, n)
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("ctha in %s does not answer: %w\n%s", n.role, err, p.Tail(20))
	}
	return nil
}

// groupState is the node's sync group state, "" when unknown.
func (d *demo) groupState(n *node) string {
	st, err := nodeStatus(d.l, d.opts.ctha, n)
	if err != nil || len(st.Groups) == 0 {
		return ""
	}
	return st.Groups[0].State
}

func (d *demo) startFlows(ctx context.Context) error {
	d.out.phase(3, phases, "Live connections")
	d.out.text(fmt.Sprintf(flowsText, d.opts.flows, d.opts.interval))
	d.view.reheader()
	d.flowDir = d.tb.TempDir()
	serverReady := filepath.Join(d.flowDir, "server.ready")
	d.server = d.l.Start(d.tb, lab.RoleServer, "flowgen-server", d.opts.flowgen, "server", "-listen", serverAddr, "-ready", serverReady)
	d.sum.Processes = append(d.sum.Processes, ProcInfo{Name: d.server.Name, Pid: d.server.Pid()})
	if err := waitFor(ctx, 10*time.Second, 20*time.Millisecond, func() (bool, error) {
		if d.server.Exited() {
			return false, exited(d.server)
		}
		return fileExists(serverReady), nil
	}); err != nil {
		return fmt.Errorf("flowgen server: %w\n%s", err, d.server.Tail(20))
	}
	ready := filepath.Join(d.flowDir, "client.ready")
	d.client = d.l.Start(d.tb, lab.RoleClient, "flowgen-client", d.opts.flowgen, "client",
		"-connect", serverAddr, "-flows", fmt.Sprint(d.opts.flows), "-interval", d.opts.interval.String(),
		"-duration", "10m", "-ready", ready, "-json", d.reportPath(), "-stop-file", d.stopPath(), "-progress")
	d.sum.Processes = append(d.sum.Processes, ProcInfo{Name: d.client.Name, Pid: d.client.Pid()})
	d.view.setClient(d.client)
	if err := waitFor(ctx, 20*time.Second, 20*time.Millisecond, func() (bool, error) {
		if d.client.Exited() {
			return false, exited(d.client)
		}
		return fileExists(ready), nil
	}); err != nil {
		return fmt.Errorf("the flows did not come up: %w\n%s", err, d.client.Tail(20))
	}
	d.out.event("%d TCP connections are up: client -> LAN VIP -> fw1 -> WAN -> server", d.opts.flows)
	if err := waitFor(ctx, 15*time.Second, 50*time.Millisecond, func() (bool, error) {
		st, err := nodeStatus(d.l, d.opts.ctha, d.fw2)
		return err == nil && st.Sync != nil && st.Sync.ExternalEntries >= d.opts.flows, err
	}); err != nil {
		return fmt.Errorf("fw2 never held the %d flows' states: %w", d.opts.flows, err)
	}
	d.out.event("fw2 holds a copy of all %d states, in its kernel table (cache = \"direct\")", d.opts.flows)
	d.out.text("\n\n" + d.lookCommands(true))
	d.view.reheader()
	return sleep(ctx, 4*time.Second)
}

func (d *demo) reportPath() string { return filepath.Join(d.flowDir, "report.json") }
func (d *demo) stopPath() string   { return filepath.Join(d.flowDir, "stop") }

func (d *demo) killMaster(ctx context.Context) error {
	d.out.phase(4, phases, "The master dies")
	d.out.text(fmt.Sprintf(killText, d.masterDown(100).Seconds()))
	d.view.reheader()
	st, err := nodeStatus(d.l, d.opts.ctha, d.fw2)
	if err != nil || st.Sync == nil {
		return fmt.Errorf("fw2 status before the kill: %w", err)
	}
	d.sum.StatesReplicated = st.Sync.ExternalEntries

	kill := time.Now()
	d.fw1.killed.Store(true)
	if err := d.fw1.process().Kill(); err != nil {
		return fmt.Errorf("kill fw1: %w", err)
	}
	for _, ifname := range []string{"lan", "wan"} {
		if err := d.l.SetLink(lab.RoleFW1, ifname, false); err != nil {
			return err
		}
	}
	d.out.event("fw1 killed (SIGKILL), its LAN and WAN links down")
	var lanAt, wanAt time.Duration
	err = waitFor(ctx, d.masterDown(100)+10*time.Second, 10*time.Millisecond, func() (bool, error) {
		lan, wan, err := vipsHeld(d.l, lab.RoleFW2)
		now := time.Since(kill)
		if lan && lanAt == 0 {
			lanAt = now
		}
		if wan && wanAt == 0 {
			wanAt = now
		}
		return lanAt > 0 && wanAt > 0, err
	})
	if err != nil {
		return fmt.Errorf("fw2 never took both VIPs: %w\n%s", err, d.fw2.process().Tail(20))
	}
	d.sum.KillToLANVIPMs, d.sum.KillToWANVIPMs = ms(lanAt), ms(wanAt)
	d.sum.KillToVIPsMs = ms(max(lanAt, wanAt))
	d.out.event("fw2 is MASTER: it holds both VIPs %.2f s after the kill", max(lanAt, wanAt).Seconds())

	// The flows come back at their first retransmission after the
	// takeover: wait for a progress line, written after the VIPs moved,
	// in which every flow echoes again.
	seen, _ := parseProgress(d.client.Log())
	recovered := waitFor(ctx, 20*time.Second, 100*time.Millisecond, func() (bool, error) {
		f, ok := parseProgress(d.client.Log())
		return ok && f.lines > seen.lines && f.stalled == 0 && f.alive == f.flows, nil
	})
	if err := context.Cause(ctx); err != nil {
		return err
	}
	if recovered == nil {
		f, _ := parseProgress(d.client.Log())
		d.out.event("all %d flows are moving again, through fw2 (longest gap so far %.1f s)", f.flows, f.maxGap.Seconds())
	} else {
		d.out.event("not every flow came back")
	}
	if err := sleep(ctx, 3*time.Second); err != nil {
		return err
	}
	// Read while the flows still run: what the client's teardown may trip
	// on is not a failover drop.
	if d.sum.InvalidDrops, err = d.l.InvalidDrops(lab.RoleFW2); err != nil {
		return err
	}
	return d.stopFlows(ctx)
}

// stopFlows ends the client through its stop file and reads its report.
func (d *demo) stopFlows(ctx context.Context) error {
	if err := os.WriteFile(d.stopPath(), nil, 0o644); err != nil {
		return fmt.Errorf("stop the flows: %w", err)
	}
	select {
	case <-d.client.Done():
	case <-time.After(15 * time.Second):
		return fmt.Errorf("the flowgen client did not stop within 15 s\n%s", d.client.Tail(20))
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	if err := d.client.Wait(); err != nil {
		return fmt.Errorf("flowgen client: %w\n%s", err, d.client.Tail(20))
	}
	d.stopView()
	b, err := os.ReadFile(d.reportPath())
	if err != nil {
		return fmt.Errorf("flow report: %w", err)
	}
	var r flowgen.Report
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("flow report: %w", err)
	}
	d.sum.Flows, d.sum.Survived, d.sum.LongestGapMs = r.Flows, r.Survived, r.LongestGapMs
	return nil
}

// permanent marks a cond error after which waitFor stops at once (a
// process exited).
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// exited is the permanent error of a process that ended early.
func exited(p *lab.Proc) error {
	return permanent{fmt.Errorf("%s exited: %v", p.Name, p.Cmd.ProcessState)}
}

// waitFor polls cond every interval until it is true, timeout passes,
// cond returns a permanent error, or ctx ends (then it returns ctx's
// cause).
func waitFor(ctx context.Context, timeout, interval time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if errors.As(err, new(permanent)) {
			return err
		}
		if cause := context.Cause(ctx); cause != nil {
			return cause
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("not within %v: %w", timeout, err)
			}
			return fmt.Errorf("not within %v", timeout)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(interval):
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-time.After(d):
		return nil
	}
}
