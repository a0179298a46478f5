package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/ctha/ctha/cfg"
)

// settings describes what the node runs with, as observed: for ctha its
// log level and the scheduling of its main thread and of every other
// thread; for conntrackd the scheduling of the daemon and the lines of
// its config that set its mode, buffers and filter; for keepalived the
// global_defs it was given and the scheduling of its VRRP process.
// Read while the daemons run (the scheduling is the kernel's, via
// chrt -p and /proc/PID/task/*/stat).
func (n *haNode) settings() []string {
	if n.ctha != nil {
		level := cfg.DefaultLogLevel + " (the default: the config sets no log block)"
		if b, err := os.ReadFile(n.ctha.config); err == nil && strings.Contains(string(b), "log {") {
			level = "as set in its config's log block"
		}
		pid := n.ctha.proc.Pid()
		return []string{
			"ctha: log level " + level,
			"ctha: main thread " + chrt(pid),
			"ctha: threads by scheduling class (/proc/PID/task/*/stat) " + threadClasses(pid),
		}
	}
	var out []string
	if b, err := os.ReadFile(n.ctd.ConfigPath); err == nil {
		out = append(out, "conntrackd: "+conntrackdExcerpt(string(b)))
	}
	out = append(out, "conntrackd: "+chrt(n.ctd.Pid()))
	if b, err := os.ReadFile(filepath.Join(n.ka.Dir, "keepalived.conf")); err == nil {
		out = append(out, "keepalived: "+globalDefs(string(b)))
	}
	if b, err := os.ReadFile(filepath.Join(n.ka.Dir, "vrrp.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			out = append(out, "keepalived VRRP process: "+chrt(pid))
		}
	}
	return out
}

// chrt is `chrt -p PID` on one line: "SCHED_OTHER priority 0".
func chrt(pid int) string {
	b, err := exec.Command("chrt", "-p", strconv.Itoa(pid)).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("chrt -p %d: %v %s", pid, err, strings.TrimSpace(string(b)))
	}
	var policy, prio string
	for _, line := range strings.Split(string(b), "\n") {
		if _, v, ok := strings.Cut(line, "scheduling policy: "); ok {
			policy = strings.TrimSpace(v)
		}
		if _, v, ok := strings.Cut(line, "scheduling priority: "); ok {
			prio = strings.TrimSpace(v)
		}
	}
	return fmt.Sprintf("%s priority %s (chrt -p)", policy, prio)
}

// schedPolicies names the policies of /proc/PID/stat's field 41.
var schedPolicies = map[int]string{0: "SCHED_OTHER", 1: "SCHED_FIFO", 2: "SCHED_RR", 3: "SCHED_BATCH", 5: "SCHED_IDLE", 6: "SCHED_DEADLINE"}

// threadClasses counts pid's threads per policy and realtime priority,
// e.g. "7 SCHED_OTHER, 1 SCHED_FIFO priority 50".
func threadClasses(pid int) string {
	stats, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	count := map[string]int{}
	for _, p := range stats {
		class, err := threadClass(p)
		if err != nil {
			continue // the thread ended
		}
		count[class]++
	}
	if len(count) == 0 {
		return "unreadable"
	}
	var parts []string
	for class, n := range count {
		parts = append(parts, fmt.Sprintf("%d %s", n, class))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// threadClass reads a /proc/PID/task/TID/stat's policy (field 41) and
// rt_priority (field 40).
func threadClass(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // f[0] is field 3
	if len(f) < 39 {
		return "", fmt.Errorf("%s: %d fields", path, len(f)+2)
	}
	prio, err1 := strconv.Atoi(f[37])
	policy, err2 := strconv.Atoi(f[38])
	if err1 != nil || err2 != nil {
		return "", fmt.Errorf("%s: %v %v", path, err1, err2)
	}
	name, ok := schedPolicies[policy]
	if !ok {
		name = "policy " + strconv.Itoa(policy)
	}
	if prio > 0 {
		name += " priority " + strconv.Itoa(prio)
	}
	return name, nil
}

var ctdKeys = regexp.MustCompile(`^(Mode|DisableExternalCache|StartupResync|CommitTimeout|PurgeTimeout|SndSocketBuffer|RcvSocketBuffer|NetlinkBufferSize|NetlinkBufferSizeMaxGrowth|NetlinkEventsReliable|Type|Priority|UDP|TCP)\b`)

// conntrackdExcerpt is the lines of a conntrackd.conf that set the sync
// mode, the buffers, the scheduler and the filter, on one line. An unset
// NetlinkEventsReliable is named with its default.
func conntrackdExcerpt(conf string) string {
	var parts []string
	inFilter := false
	var filter []string
	for _, line := range strings.Split(conf, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "Filter"):
			inFilter = true
		case inFilter:
			if line != "}" && line != "" {
				filter = append(filter, strings.TrimSuffix(line, " {"))
			}
		case ctdKeys.MatchString(line):
			if line == "UDP {" || line == "TCP {" {
				line = "transport " + strings.TrimSuffix(line, " {")
			}
			if strings.HasPrefix(line, "Type ") || strings.HasPrefix(line, "Priority ") {
				line = "Scheduler " + line
			}
			parts = append(parts, strings.TrimSuffix(line, " {"))
		}
	}
	if !strings.Contains(conf, "NetlinkEventsReliable") {
		parts = append(parts, "NetlinkEventsReliable not set (off, the default)")
	}
	if !strings.Contains(conf, "Scheduler") {
		parts = append(parts, "no Scheduler block")
	}
	if len(filter) > 0 {
		parts = append(parts, "Filter From Userspace: "+strings.Join(filter, " "))
	}
	return strings.Join(parts, "; ")
}

// globalDefs is a keepalived.conf's global_defs block on one line.
func globalDefs(conf string) string {
	start := strings.Index(conf, "global_defs {")
	if start < 0 {
		return "no global_defs"
	}
	end := strings.Index(conf[start:], "}")
	if end < 0 {
		return "global_defs unterminated"
	}
	return strings.Join(strings.Fields(conf[start:start+end+1]), " ")
}
