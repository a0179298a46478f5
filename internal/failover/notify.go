package failover

import (
	"context"
	"log/slog"
	"os"
	"strconv"
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
//   - an instance's commands follow its own state the same way, once the
//     group's tables are done for the step the instance moved in; in one
//     pass the instances' commands run before the group's;
//   - each command keeps its timeout, whatever happens meanwhile;
//   - the commands run on a goroutine of their own: they never delay the
//     tables, the adverts or the virtual IPs;
//   - the stop commands run once the election has stopped (NotifyStop).

// Notify lists the commands run, in order, once an instance or a group is
// in a state. Each command is an argv whose first word is an absolute
// path.
type Notify struct {
	Master, Backup, Fault, Stop [][]string
	// Generic commands (keepalived's notify) run at every change with
	// four arguments appended: GROUP or INSTANCE, the name, the state
	// (MASTER, BACKUP, FAULT, STOP) and the priority (0 for a group).
	Generic [][]string
	Timeout time.Duration
}

// forState returns the state's own commands.
func (n *Notify) forState(st vrrp.State) [][]string {
	switch st {
	case vrrp.Master:
		return n.Master
	case vrrp.Backup:
		return n.Backup
	case vrrp.Fault:
		return n.Fault
	}
	return nil
}

// notifyCmds is what a notifier runs: the group's commands and its
// instances'.
type notifyCmds struct {
	group     Notify
	instances map[string]Notify
}

// moved is an instance's latest move as the notifier follows it.
type moved struct {
	state    vrrp.State
	reason   vrrp.Reason
	priority uint8
	seq      uint64 // the instance's moves so far
	after    uint64 // the group's transition whose tables come first
}

// notifier runs the notify commands; its goroutine is notifier.run.
type notifier struct {
	log       *slog.Logger
	group     string // "" for a lone instance
	members   []string
	instances string
	cmds      atomic.Pointer[notifyCmds]
	skipped   atomic.Uint64
	// exec runs one command (tests replace it).
	exec func(ctx context.Context, argv, env []string, timeout time.Duration) (string, error)

	mu     sync.Mutex
	latest target           // the state whose tables are done
	moves  map[string]moved // each instance's latest move
	kick   chan struct{}
}

func newNotifier(log *slog.Logger, c Config) *notifier {
	n := &notifier{log: log, group: c.Group, members: c.Instances, instances: strings.Join(c.Instances, " "),
		moves: map[string]moved{}, kick: make(chan struct{}, 1), exec: proc.Run}
	n.setCommands(c.Notify, c.InstanceNotify)
	return n
}

func (n *notifier) setCommands(group Notify, instances map[string]Notify) {
	n.cmds.Store(&notifyCmds{group: group, instances: instances})
}

// follow says the group is in t, its tables done.
func (n *notifier) follow(t target) {
	n.mu.Lock()
	n.latest = t
	n.mu.Unlock()
	signal(n.kick)
}

// moved records instances' moves; their commands wait for the tables of
// the group's transition after.
func (n *notifier) moved(moves []vrrp.InstanceTransition, after uint64) {
	n.mu.Lock()
	for _, m := range moves {
		prev := n.moves[m.Instance]
		n.moves[m.Instance] = moved{state: m.To, reason: m.Reason, priority: m.Priority, seq: prev.seq + 1, after: after}
	}
	n.mu.Unlock()
	signal(n.kick)
}

func (n *notifier) run(ctx context.Context) {
	var done target // the last state notified (INIT at first)
	doneMoves := map[string]moved{}
	type due struct {
		name string
		m    moved
	}
	var todo []due
	for ctx.Err() == nil {
		todo = todo[:0]
		n.mu.Lock()
		t := n.latest
		for _, name := range n.members {
			if m := n.moves[name]; m.seq != doneMoves[name].seq && m.after <= t.seq {
				todo = append(todo, due{name, m})
			}
		}
		n.mu.Unlock()
		if t.seq == done.seq && len(todo) == 0 {
			select {
			case <-ctx.Done():
			case <-n.kick:
			}
			continue
		}
		for _, d := range todo {
			prev := doneMoves[d.name]
			if skipped := d.m.seq - prev.seq - 1; skipped > 0 {
				n.skipped.Add(skipped)
				n.log.Warn("notify commands skipped for states the instance has left", "instance", d.name, "transitions", skipped, "state", d.m.state)
			}
			if d.m.state != prev.state {
				n.runInstance(ctx, d.name, d.m.state, d.m.reason, d.m.priority)
			}
			doneMoves[d.name] = d.m
		}
		if len(todo) > 0 || t.seq == done.seq {
			// Look again: the group's commands run for the state it is
			// in once its instances' have run, not the one seen before.
			continue
		}
		if skipped := t.seq - done.seq - 1; skipped > 0 {
			n.skipped.Add(skipped)
			n.log.Warn("notify commands skipped for states the group has left", "transitions", skipped, "state", t.state)
		}
		if t.state != done.state {
			n.runGroup(ctx, t.state, t.reason)
		}
		done = t
	}
}

// stop runs the stop commands: each instance's, in order, then the
// group's. Each is bounded by its timeout; ctx ends them all.
func (n *notifier) stop(ctx context.Context) {
	n.mu.Lock()
	prio := map[string]uint8{}
	for name, m := range n.moves {
		prio[name] = m.priority
	}
	n.mu.Unlock()
	for _, name := range n.members {
		n.runInstance(ctx, name, stopState, vrrp.ReasonShutdown, prio[name])
	}
	if n.group != "" {
		n.runGroup(ctx, stopState, vrrp.ReasonShutdown)
	}
}

// stopState stands for STOP: the daemon stops (no VRRP state).
const stopState = vrrp.State(255)

func stateWord(st vrrp.State) string {
	if st == stopState {
		return "STOP"
	}
	return st.String()
}

// runInstance runs an instance's commands for st.
func (n *notifier) runInstance(ctx context.Context, name string, st vrrp.State, reason vrrp.Reason, prio uint8) {
	c, ok := n.cmds.Load().instances[name]
	if !ok || st == vrrp.Init {
		return
	}
	env := append(os.Environ(), "CTHA_TYPE=INSTANCE", "CTHA_INSTANCE="+name, "CTHA_STATE="+stateWord(st),
		"CTHA_REASON="+reason.String(), "CTHA_PRIORITY="+strconv.Itoa(int(prio)))
	if n.group != "" {
		env = append(env, "CTHA_GROUP="+n.group)
	}
	n.runAll(ctx, &c, st, env, []string{"INSTANCE", name, stateWord(st), strconv.Itoa(int(prio))}, "instance", name)
}

// runGroup runs the group's commands for st.
func (n *notifier) runGroup(ctx context.Context, st vrrp.State, reason vrrp.Reason) {
	if st == vrrp.Init {
		return
	}
	c := n.cmds.Load().group
	env := append(os.Environ(), "CTHA_TYPE=GROUP", "CTHA_GROUP="+n.group, "CTHA_STATE="+stateWord(st),
		"CTHA_REASON="+reason.String(), "CTHA_INSTANCES="+n.instances)
	n.runAll(ctx, &c, st, env, []string{"GROUP", n.group, stateWord(st), "0"})
}

// runAll runs c's commands for st, in order: the state's own, then the
// generic ones with args appended. Failures are logged, with attrs.
func (n *notifier) runAll(ctx context.Context, c *Notify, st vrrp.State, env, args []string, attrs ...any) {
	cmds := c.forState(st)
	if st == stopState {
		cmds = c.Stop
	}
	run := func(argv []string) {
		start := time.Now()
		line := strings.Join(argv, " ") // as a log shows it
		out, err := n.exec(ctx, argv, env, c.Timeout)
		if err != nil {
			if ctx.Err() == nil {
				n.log.Error("notify command failed", append(attrs, "command", line, "state", stateWord(st), "err", err, "output", out, "took", time.Since(start))...)
			}
			return
		}
		n.log.Info("notify command ran", append(attrs, "command", line, "state", stateWord(st), "took", time.Since(start))...)
	}
	for _, argv := range cmds {
		run(argv)
	}
	for _, argv := range c.Generic {
		run(append(argv[:len(argv):len(argv)], args...))
	}
}
