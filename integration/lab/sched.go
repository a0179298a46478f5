package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ThreadSched is one thread's scheduling, from /proc/PID/task/TID/stat.
type ThreadSched struct {
	TID    int
	PGID   int
	Comm   string
	Policy int // SCHED_OTHER 0, SCHED_FIFO 1, SCHED_RR 2, SCHED_BATCH 3, SCHED_IDLE 5
	RTPrio int
	PID    int // the process (thread group) id
}

// ParseTaskStat decodes the fields ThreadSched needs from a
// /proc/PID/task/TID/stat line (comm may hold spaces and parentheses).
func ParseTaskStat(line string) (ThreadSched, error) {
	open, end := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
	if open < 0 || end < open {
		return ThreadSched{}, fmt.Errorf("stat %q: no (comm)", line)
	}
	tid, err := strconv.Atoi(strings.TrimSpace(line[:open]))
	if err != nil {
		return ThreadSched{}, fmt.Errorf("stat %q: pid: %w", line, err)
	}
	f := strings.Fields(line[end+1:]) // f[0] is field 3 (state)
	if len(f) < 39 {
		return ThreadSched{}, fmt.Errorf("stat %q: %d fields after comm, want 39 or more", line, len(f))
	}
	var v [3]int
	for i, k := range []int{2, 37, 38} { // pgrp (5), rt_priority (40), policy (41)
		if v[i], err = strconv.Atoi(f[k]); err != nil {
			return ThreadSched{}, fmt.Errorf("stat %q: field %d: %w", line, k+3, err)
		}
	}
	return ThreadSched{TID: tid, Comm: line[open+1 : end], PGID: v[0], RTPrio: v[1], Policy: v[2]}, nil
}

// PolicyName names a scheduling policy as chrt(1) does.
func PolicyName(p int) string {
	switch p {
	case 0:
		return "SCHED_OTHER"
	case 1:
		return "SCHED_FIFO"
	case 2:
		return "SCHED_RR"
	case 3:
		return "SCHED_BATCH"
	case 5:
		return "SCHED_IDLE"
	case 6:
		return "SCHED_DEADLINE"
	}
	return "policy " + strconv.Itoa(p)
}

// GroupSched returns the scheduling of every thread of every process in
// process group pgid (a process the lab started, with what it forked).
func GroupSched(pgid int) ([]ThreadSched, error) {
	return threads(func(t ThreadSched) bool { return t.PGID == pgid })
}

// RealtimeThreads returns every user-space thread of the machine running
// SCHED_FIFO or SCHED_RR, whoever started it (kernel threads, in process
// group 0, left out): on a shared machine, others' realtime daemons take
// the CPU from everything at default scheduling.
func RealtimeThreads() ([]ThreadSched, error) {
	return threads(func(t ThreadSched) bool { return t.PGID != 0 && (t.Policy == 1 || t.Policy == 2) })
}

func threads(keep func(ThreadSched) bool) ([]ThreadSched, error) {
	procs, err := filepath.Glob("/proc/[0-9]*/task/[0-9]*/stat")
	if err != nil {
		return nil, err
	}
	var out []ThreadSched
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone meanwhile
		}
		t, err := ParseTaskStat(strings.TrimSpace(string(b)))
		if err != nil || !keep(t) {
			continue
		}
		t.PID, _ = strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
		out = append(out, t)
	}
	return out, nil
}

// SchedSummary prints threads grouped by command and scheduling, e.g.
// "keepalived SCHED_RR 50 x1, keepalived SCHED_OTHER x1".
func SchedSummary(threads []ThreadSched) string {
	count := map[string]int{}
	var keys []string
	for _, t := range threads {
		k := t.Comm + " " + PolicyName(t.Policy)
		if t.Policy == 1 || t.Policy == 2 {
			k += " " + strconv.Itoa(t.RTPrio)
		}
		if count[k] == 0 {
			keys = append(keys, k)
		}
		count[k]++
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s x%d", k, count[k]))
	}
	if len(parts) == 0 {
		return "(no threads)"
	}
	return strings.Join(parts, ", ")
}
