package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/ctha/ctha/cfg"
	"github.com/ctha/ctha/ctsync"
	"github.com/ctha/ctha/internal/control"
	"github.com/ctha/ctha/internal/events"
	"github.com/ctha/ctha/internal/failover"
	"github.com/ctha/ctha/vrrp"
	"github.com/hashicorp/hcl/v2"
	"golang.org/x/sys/unix"
)

func (c *cli) run(args []string) int {
	fs := c.flags("run")
	path := fs.String("c", cfg.DefaultConfigPath, "configuration `FILE`")
	socket := fs.String("s", "", "control `SOCKET` (overrides control.socket; for labs running several nodes on one host)")
	if code, ok := c.parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(c.stderr, "ctha: run: unexpected argument %q (the file is given with -c)\n", fs.Arg(0))
		return exitUsage
	}
	conf, diags := cfg.Load(*path)
	c.printDiagnostics(diags)
	if diags.HasErrors() {
		return c.failf("not starting: %s is invalid", *path)
	}
	d := &daemonState{
		log:          newLogger(c.stderr, conf.Log),
		path:         *path,
		socket:       conf.Control.Socket,
		socketInFile: conf.Control.Socket,
		started:      time.Now(),
	}
	if *socket != "" {
		conf.Control.Socket, d.socket = *socket, *socket
	}
	d.conf.Store(&conf)
	if err := d.run(); err != nil {
		return c.failf("%v", err)
	}
	return exitOK
}

func newLogger(w io.Writer, l cfg.Log) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.Level}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// daemonState is the running daemon. Its run loop owns it; the control
// handler reads the configuration snapshot and asks the engines, which are
// safe for concurrent use.
type daemonState struct {
	log    *slog.Logger
	path   string // configuration file, for reloads
	socket string // control socket in use
	// socketInFile is control.socket as the file said at start; a reload
	// that changes it is told to wait for a restart.
	socketInFile string
	started      time.Time
	conf         atomic.Pointer[cfg.Config]
	vrrp         *vrrp.Runner               // nil without VRRP instances
	sync         *ctsync.Handle             // nil without conntrack_sync
	groups       map[string]*failover.Group // the sync groups' choreography
	lone         map[string]*failover.Group // the notify commands of the instances in no sync group
	fanout       *failover.Fanout           // multiprimary: the engine shared by the groups
	changed      chan struct{}
	// bus carries what `ctha events` streams (events.go); elect is the
	// runner as the choreography uses it, publishing demotions.
	bus   *events.Bus
	elect *election
	// conntrackGroupName is the sync group that drives conntrack
	// (primary-backup), "" for none.
	conntrackGroupName string
}

func (d *daemonState) run() error {
	conf := d.conf.Load()
	d.changed = make(chan struct{}, 1)
	d.bus = events.New()
	for _, g := range conf.SyncGroups {
		if g.Conntrack && !conf.Multiprimary() {
			d.conntrackGroupName = g.Name
		}
	}
	// One daemon per state directory, before anything is touched.
	lock, err := lockStateDir(conf.StateDir)
	if err != nil {
		return err
	}
	defer lock.Close()
	// The control socket first: a second ctha on the same node stops here
	// with the clearest reason.
	ln, err := control.Listen(d.socket)
	if err != nil {
		return err
	}
	if conf.Sync != nil {
		eng, err := d.newSync(conf)
		if err != nil {
			ln.Close()
			return err
		}
		d.sync = eng
	}
	if len(conf.Instances) > 0 {
		opts := vrrp.Options{Log: d.log, OnChange: d.stateChanged, OnVIPsRestored: d.vipsRestored}
		d.groups = d.newGroups(conf)
		d.lone = d.newLone(conf)
		opts.InstanceHooks = d.instanceHooks
		for _, g := range d.groups {
			if g.WatchesSync() {
				opts.DeferPreemption = append(opts.DeferPreemption, g.Name())
			}
		}
		opts.Hooks = func(group string) vrrp.Hooks {
			if g, ok := d.groups[group]; ok {
				return groupEvents{g, d}
			}
			return nil
		}
		r, err := vrrp.New(vrrpConfig(conf), opts)
		if err != nil {
			ln.Close()
			return err
		}
		d.vrrp = r
		d.elect = &election{Election: r, d: d, demoted: map[[2]string]int{}}
		spareP()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	srv := control.NewServer(ln, d.handle, d.log)
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ctx)
	}()
	vctx, stopVRRP := context.WithCancel(context.Background())
	defer stopVRRP()
	// vrrpDone: the election and the groups' choreography have stopped.
	vrrpDone := make(chan struct{})
	go func() {
		defer close(vrrpDone)
		if d.vrrp == nil {
			return
		}
		var wg sync.WaitGroup
		if d.fanout != nil {
			wg.Go(func() { d.fanout.Run(vctx) })
		}
		for _, g := range d.groups {
			wg.Go(func() { g.Run(vctx, d.elect) })
		}
		for _, g := range d.lone {
			wg.Go(func() { g.Run(vctx, nil) })
		}
		d.vrrp.Run(vctx)
		wg.Wait()
	}()
	if addr := conf.Control.Metrics; addr != "" {
		go func() {
			if err := d.serveMetrics(ctx, addr); err != nil {
				d.log.Error("metrics endpoint failed", "addr", addr, "err", err)
			}
		}()
	}
	sctx, stopSync := context.WithCancel(context.Background())
	defer stopSync()
	syncDone := make(chan struct{})
	go func() {
		defer close(syncDone)
		if d.sync != nil {
			d.sync.Run(sctx)
		}
	}()

	d.log.Info("ctha started", "node", conf.NodeName, "version", version, "config", d.path, "socket", d.socket)
	d.waitFirstState(2 * time.Second)
	d.notify(daemon.SdNotifyReady, "STATUS="+statusLine(d.status()))

	var watchdog <-chan time.Time
	if interval, err := daemon.SdWatchdogEnabled(false); err == nil && interval > 0 {
		t := time.NewTicker(interval / 2)
		defer t.Stop()
		watchdog = t.C
	}

	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				d.reload()
				continue
			}
			d.log.Info("stopping", "reason", sig.String())
			d.publish(events.Event{Type: events.Stopping, Reason: sig.String()})
			d.notify(daemon.SdNotifyStopping, "STATUS=stopping")
			d.drainBeforeStop()
			stopVRRP() // a master resigns with priority 0 and removes its VIPs
			<-vrrpDone
			stopSync()
			<-syncDone
			d.notifyStop(d.conf.Load()) // the VIPs are gone, the sync engine has stopped
			d.bus.Close()               // the readers get what is left, then the end
			cancel()
			<-served
			return nil
		case <-d.changed:
			d.notify("STATUS=" + statusLine(d.status()))
		case <-watchdog:
			d.notify(daemon.SdNotifyWatchdog)
		case <-served:
			stopVRRP()
			<-vrrpDone
			stopSync()
			<-syncDone
			d.notifyStop(d.conf.Load())
			d.bus.Close()
			return fmt.Errorf("control socket %s closed unexpectedly", d.socket)
		}
	}
}

// stateChanged is called by the engines after a state change; it must
// not block.
func (d *daemonState) stateChanged() {
	select {
	case d.changed <- struct{}{}:
	default:
	}
}

// waitFirstState waits until every instance has left INIT (systemd is told
// READY then), at most limit.
func (d *daemonState) waitFirstState(limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		ready := true
		for _, in := range d.status().Instances {
			ready = ready && in.State != stateInit
		}
		if ready {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// reload applies a valid new configuration file and keeps the old one,
// with its diagnostics logged, when the new one is invalid.
func (d *daemonState) reload() {
	d.notify(daemon.SdNotifyReloading, monotonicUsec())
	defer func() { d.notify(daemon.SdNotifyReady, "STATUS="+statusLine(d.status())) }()
	conf, diags := cfg.Load(d.path)
	for _, diag := range diags {
		lvl := slog.LevelWarn
		if diag.Severity == hcl.DiagError {
			lvl = slog.LevelError
		}
		d.log.Log(context.Background(), lvl, "configuration", "diagnostic", cfg.Format(diag))
	}
	if diags.HasErrors() {
		d.log.Error("reload refused: configuration invalid; keeping the running one", "config", d.path)
		d.publish(reloadEvent(nil, nil, reloadRefused(d.path, diags)))
		return
	}
	var changes, restart []string // for `ctha events`
	old := d.conf.Load()
	if conf.Control.Socket != d.socketInFile {
		d.log.Warn("control.socket changed; it takes effect at the next restart", "socket", d.socket)
		restart = append(restart, "control.socket changed; it takes effect at the next restart")
	}
	if d.vrrp == nil && (len(conf.Instances) > 0 || len(conf.SyncGroups) > 0) {
		d.log.Warn("VRRP instances added; restart ctha to run them")
		restart = append(restart, "VRRP instances added; restart ctha to run them")
		conf.Instances, conf.SyncGroups, conf.TrackScripts = old.Instances, old.SyncGroups, old.TrackScripts
	}
	if d.vrrp != nil {
		changed, err := d.vrrp.Reload(context.Background(), vrrpConfig(&conf))
		for _, c := range changed {
			d.log.Info("reload applied", "change", c)
		}
		changes = append(changes, changed...)
		if err != nil {
			// Status keeps showing the running instances.
			d.log.Warn("VRRP change not applied; restart ctha to apply it", "err", err)
			restart = append(restart, fmt.Sprintf("VRRP change not applied; restart ctha to apply it: %v", err))
			conf.Instances, conf.SyncGroups, conf.TrackScripts = old.Instances, old.SyncGroups, old.TrackScripts
		}
	}
	for _, g := range conf.SyncGroups {
		if fg := d.groups[g.Name]; fg != nil {
			fg.SetNotify(notifyConfig(g.Notify), instanceNotify(&conf, g.Instances))
		}
	}
	for _, in := range loneInstances(&conf) {
		if lg := d.lone[in.Name]; lg != nil {
			lg.SetNotify(failover.Notify{}, map[string]failover.Notify{in.Name: notifyConfig(in.Notify)})
		}
	}
	synced, syncRestart, syncErr := d.reloadSync(&conf, old)
	changes, restart = append(changes, synced...), append(restart, syncRestart...)
	if syncErr != nil {
		restart = append(restart, syncErr.Error())
	}
	conf.Control.Socket = d.socket
	d.conf.Store(&conf)
	d.log.Info("configuration reloaded", "config", d.path)
	d.publish(reloadEvent(changes, restart, ""))
}

// reloadRefused says why a reload was refused: how many errors, and the
// first.
func reloadRefused(path string, diags hcl.Diagnostics) string {
	errs := diags.Errs()
	plural := "s"
	if len(errs) == 1 {
		plural = ""
	}
	msg := fmt.Sprintf("%s is invalid (%d error%s); keeping the running configuration", path, len(errs), plural)
	for _, diag := range diags {
		if diag.Severity == hcl.DiagError {
			return msg + ": " + cfg.Format(diag)
		}
	}
	return msg
}

// monotonicUsec is the MONOTONIC_USEC= field systemd wants with
// RELOADING=1 (Type=notify-reload).
func monotonicUsec() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return ""
	}
	return fmt.Sprintf("MONOTONIC_USEC=%d", ts.Nano()/1000)
}

// notify tells systemd about the daemon's state; without systemd it does
// nothing.
func (d *daemonState) notify(lines ...string) {
	msg := ""
	for _, l := range lines {
		if l != "" {
			msg += l + "\n"
		}
	}
	if _, err := daemon.SdNotify(false, msg); err != nil {
		d.log.Warn("sd_notify failed", "err", err)
	}
}

func (d *daemonState) handle(ctx context.Context, req control.Request) (any, error) {
	switch req.Op {
	case "status":
		return d.status(), nil
	case "stats":
		return d.stats(ctx), nil
	case "events":
		if d.bus == nil {
			return nil, errors.New("events: the daemon is not running")
		}
		return eventStream{d.bus.Subscribe(0)}, nil
	}
	if req.Op == "dump" {
		return d.handleDump(ctx, req)
	}
	if req.Op == "failover" {
		return d.handleFailover(ctx, req)
	}
	if op, ok := strings.CutPrefix(req.Op, "sync."); ok {
		return d.handleSync(ctx, op)
	}
	return nil, fmt.Errorf("%w %q (is the daemon older than this ctha?)", control.ErrUnknown, req.Op)
}

// spareP gives the Go runtime one P more than it has CPUs, unless
// GOMAXPROCS is set. A VRRP timing thread woken by the kernel needs a P
// to run: while the sync engine keeps every CPU's P busy (a burst of
// conntrack events), it would wait for one until the runtime preempts a
// goroutine, up to 10 ms; with a spare P it runs at once. The timing
// threads need a few microseconds per wake-up, so the spare costs nothing
// when idle.
func spareP() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
	}
}
