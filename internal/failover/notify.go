package failover

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ctha/ctha/internal/proc"
	"github.com/ctha/ctha/vrrp"
)

// The notify rules:
//   - the commands run for the state the group is in (its tables done)
//     when the previous command finishes; states the group passed through
//     meanwhile are skipped, logged and counted (NotifySkipped), and
//     nothing runs when the group is back in the state last notified;
//   - each command keeps its timeout, whatever happens meanwhile;
//   - the commands run on a goroutine of their own: they never delay the
//     tables, the adverts or the virtual IPs.

// notifier runs the notify commands; its goroutine is notifier.run.
type notifier struct {
	log       *slog.Logger
	group     string
	instances string
	cmds      atomic.Pointer[Notify]
	skipped   atomic.Uint64
	// exec runs one command (tests replace it).
	exec func(ctx context.Context, path string, env []string, timeout time.Duration) (string, error)

	mu     sync.Mutex
	latest target // the state whose tables are done
	kick   chan struct{}
}

func newNotifier(log *slog.Logger, c Config) *notifier {
	n := &notifier{log: log, group: c.Group, instances: strings.Join(c.Instances, " "),
		kick: make(chan struct{}, 1), exec: func(ctx context.Context, path string, env []string, timeout time.Duration) (string, error) {
			return proc.Run(ctx, []string{path}, env, timeout)
		}}
	n.setCommands(c.Notify)
	return n
}

func (n *notifier) setCommands(c Notify) { n.cmds.Store(&c) }

// follow says the group is in t, its tables done.
func (n *notifier) follow(t target) {
	n.mu.Lock()
	n.latest = t
	n.mu.Unlock()
	signal(n.kick)
}

func (n *notifier) run(ctx context.Context) {
	var done target // the last state notified (INIT at first)
	for ctx.Err() == nil {
		n.mu.Lock()
		t := n.latest
		n.mu.Unlock()
		if t.seq == done.seq {
			select {
			case <-ctx.Done():
			case <-n.kick:
			}
			continue
		}
		if skipped := t.seq - done.seq - 1; skipped > 0 {
			n.skipped.Add(skipped)
			n.log.Warn("notify commands skipped for states the group has left", "transitions", skipped, "state", t.state)
		}
		if t.state != done.state {
			n.runAll(ctx, t)
		}
		done = t
	}
}

// runAll runs the commands for t's state, in order; failures are logged.
func (n *notifier) runAll(ctx context.Context, t target) {
	c := n.cmds.Load()
	var cmds []string
	switch t.state {
	case vrrp.Master:
		cmds = c.Master
	case vrrp.Backup:
		cmds = c.Backup
	case vrrp.Fault:
		cmds = c.Fault
	}
	env := append(os.Environ(), "CTHA_GROUP="+n.group, "CTHA_STATE="+t.state.String(),
		"CTHA_REASON="+t.reason.String(), "CTHA_INSTANCES="+n.instances)
	for _, path := range cmds {
		start := time.Now()
		out, err := n.exec(ctx, path, env, c.Timeout)
		if err != nil {
			if ctx.Err() == nil {
				n.log.Error("notify command failed", "command", path, "state", t.state, "err", err, "output", out, "took", time.Since(start))
			}
			continue
		}
		n.log.Info("notify command ran", "command", path, "state", t.state, "took", time.Since(start))
	}
}
