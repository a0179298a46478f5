package bench

import (
	"bufio"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// NewRun starts a run of benchmark now, with this machine's description
// (load average included) and the versions of the stacks.
func NewRun(benchmark string, runs int, quick bool) *Run {
	return &Run{Benchmark: benchmark, Started: time.Now(), Runs: runs, Quick: quick,
		Machine: CurrentMachine(), Versions: CurrentVersions()}
}

// Finish records the end of the run and the load average then.
func (r *Run) Finish() {
	r.Finished = time.Now()
	r.Machine.LoadEnd = LoadAverage()
}

// CurrentMachine describes this machine, its load average now as
// LoadStart.
func CurrentMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), LoadStart: LoadAverage()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	return m
}

// LoadAverage is /proc/loadavg's 1, 5 and 15 minute figures, "unknown"
// if unreadable.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// CurrentVersions asks git (the commit of the working directory's tree,
// "-dirty" if it has changes), keepalived and conntrackd; a missing one
// is empty.
func CurrentVersions() Versions {
	first := func(name string, args ...string) string {
		out, _ := exec.Command(name, args...).CombinedOutput()
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return line
	}
	return Versions{
		Ctha:       first("git", "describe", "--always", "--dirty", "--exclude", "*"),
		Keepalived: first("keepalived", "--version"),
		Conntrackd: first("conntrackd", "-v"),
	}
}
