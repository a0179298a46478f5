package vrrp

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// processScanEvery is how often the processes are counted. keepalived
// follows them through the kernel's process events connector, but that
// exists only in the initial network namespace (a firewall in a container
// or a lab namespace has none), so ctha reads /proc as pgrep does.
var processScanEvery = time.Second

// procRoot is where the processes are read (tests use a fake tree).
var procRoot = "/proc"

// processTracker names a track_process by what decides its state: two
// instances that count the same process with other quorums see other
// states.
func processTracker(p TrackProcess) string {
	return fmt.Sprintf("process:%s|full=%t|quorum=%d..%d", p.Name, p.FullCommand, p.Quorum, p.QuorumMax)
}

// quorate reports whether n matching processes are a quorum.
func (p TrackProcess) quorate(n int) bool {
	return n >= p.Quorum && (p.QuorumMax < 0 || n <= p.QuorumMax)
}

// trackProcesses returns the distinct process trackers of the instances.
func trackProcesses(ins []Instance) []TrackProcess {
	var out []TrackProcess
	seen := map[string]bool{}
	for _, in := range ins {
		for _, p := range in.TrackProcesses {
			if k := processTracker(p); !seen[k] {
				seen[k] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// procInfo is what a process is matched by.
type procInfo struct {
	comm    string // the process name, /proc/PID/stat's second field
	cmdline string // its arguments joined by spaces; read only when needed
}

// countProcesses counts, for each of ps, the live processes under root
// that match it. A process matches by its name (comm), exactly as
// keepalived's track_process (pgrep -x), or with FullCommand by its
// command line (pgrep -f -x). Zombies do not count. A process that cannot
// be read (gone meanwhile, or hidden by the unit's ProtectProc=) does not
// count.
func countProcesses(root string, ps []TrackProcess) []int {
	counts := make([]int, len(ps))
	full := false
	for _, p := range ps {
		full = full || p.FullCommand
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		return counts
	}
	for _, e := range ents {
		if !isPID(e.Name()) {
			continue
		}
		info, ok := readProc(filepath.Join(root, e.Name()), full)
		if !ok {
			continue
		}
		for i, p := range ps {
			name := info.comm
			if p.FullCommand {
				name = info.cmdline
			}
			if name == p.Name {
				counts[i]++
			}
		}
	}
	return counts
}

func isPID(s string) bool {
	if s == "" || s[0] == '0' {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// readProc reads a process's name and state (and command line when
// full); ok is false for a zombie or one that cannot be read.
func readProc(dir string, full bool) (procInfo, bool) {
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return procInfo{}, false
	}
	// "PID (comm) S ...": the name may hold spaces and parentheses, so
	// it ends at the last ')'.
	open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if open < 0 || end < open || end+2 >= len(stat) {
		return procInfo{}, false
	}
	if st := stat[end+2]; st == 'Z' || st == 'X' {
		return procInfo{}, false
	}
	info := procInfo{comm: string(stat[open+1 : end])}
	if full {
		b, err := os.ReadFile(filepath.Join(dir, "cmdline"))
		if err != nil {
			return procInfo{}, false
		}
		b = bytes.TrimRight(b, "\x00")
		info.cmdline = string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
	}
	return info, true
}

// initProcesses sets the process trackers' state before the election,
// so that an instance whose process is missing starts as it should.
func (r *Runner) initProcesses() {
	ps := trackProcesses(r.conf.Instances)
	if len(ps) == 0 {
		return
	}
	counts := countProcesses(procRoot, ps)
	for i, p := range ps {
		up := p.quorate(counts[i])
		if !up {
			r.log.Warn("tracked process has no quorum", "tracker", p.Name, "processes", counts[i])
		}
		r.setTracker(processTracker(p), up, 0)
	}
}

// initFiles reads the tracked files before the election.
func (r *Runner) initFiles() {
	for _, path := range trackFiles(r.conf.Instances) {
		v, _ := readTrackFile(path)
		r.setTracker(fileTracker(path), true, v)
	}
}

// setTracker sets a tracker's state in every member that has it, before
// the groups run.
func (r *Runner) setTracker(name string, up bool, value int) {
	for _, g := range r.groups {
		for _, mb := range g.members {
			for _, t := range mb.trackers {
				if t.name == name {
					t.up, t.value = up, value
				}
			}
		}
	}
}

// startProcessTrackers counts the tracked processes every
// processScanEvery until ctx is done, and reports each change of quorum.
func (r *Runner) startProcessTrackers(ctx context.Context) {
	ps := trackProcesses(r.conf.Instances)
	if len(ps) == 0 {
		return
	}
	r.wg.Go(func() {
		last := make([]bool, len(ps))
		first := true // a change since initProcesses is not missed
		tick := time.NewTicker(processScanEvery)
		defer tick.Stop()
		for {
			counts := countProcesses(procRoot, ps)
			for i, p := range ps {
				up := p.quorate(counts[i])
				if !first && up == last[i] {
					continue
				}
				if !first {
					r.log.Info("tracked process changed", "tracker", p.Name, "processes", counts[i], "up", up)
				}
				last[i] = up
				r.broadcast(ctx, trackUpdate{name: processTracker(p), up: up})
			}
			first = false
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
}

// extraTrackers returns a member's track_file and track_process trackers.
func extraTrackers(in Instance) []*tracked {
	var out []*tracked
	for _, t := range in.TrackFiles {
		out = append(out, &tracked{name: fileTracker(t.Path), weight: t.Weight, reverse: t.Reverse, file: true, up: true})
	}
	for _, p := range in.TrackProcesses {
		out = append(out, &tracked{name: processTracker(p), weight: p.Weight, reverse: p.Reverse, up: true})
	}
	return out
}
