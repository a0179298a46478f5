package kernel

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// procNetfilter holds the conntrack sysctls of the calling thread's
// network namespace.
const procNetfilter = "/proc/sys/net/netfilter"

func readSysctl(name string) (int, error) {
	b, err := os.ReadFile(filepath.Join(procNetfilter, name))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", name, err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", name, err)
	}
	return v, nil
}

// TableCount returns the number of entries in the conntrack table of the
// calling thread's network namespace and the table's maximum
// (nf_conntrack_max: global, read-only inside a namespace, applied to each
// namespace's table).
func TableCount() (count, max int, err error) {
	if count, err = readSysctl("nf_conntrack_count"); err != nil {
		return 0, 0, fmt.Errorf("conntrack table count: %w", err)
	}
	if max, err = readSysctl("nf_conntrack_max"); err != nil {
		return 0, 0, fmt.Errorf("conntrack table count: %w", err)
	}
	return count, max, nil
}

// fixEvents is what an administrator runs when ctha may not set
// nf_conntrack_events itself.
const fixEvents = "sysctl -w net.netfilter.nf_conntrack_events=1"

// EnsureEvents makes sure net.netfilter.nf_conntrack_events is 1 in the
// calling thread's network namespace, setting it if needed. With the
// kernel's default of 2, flows created while no listener was subscribed
// never produce any event, not even DESTROY.
//
// Its errors are one line that says what to run.
func EnsureEvents() error {
	const name = "nf_conntrack_events"
	v, err := readSysctl(name)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("net.netfilter.%s does not exist: conntrack is not loaded; run `modprobe nf_conntrack && %s`", name, fixEvents)
	}
	if err != nil {
		return fmt.Errorf("ensure conntrack events: %w", err)
	}
	if v == 1 {
		return nil
	}
	if err := os.WriteFile(filepath.Join(procNetfilter, name), []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("net.netfilter.%s is %d, not 1, and ctha may not set it (%w): run `%s` "+
			"(the packaged ctha.service does, in its ExecStartPre=+)", name, v, err, fixEvents)
	}
	if v, err = readSysctl(name); err != nil || v != 1 {
		return fmt.Errorf("net.netfilter.%s is still %d after setting it to 1 (%v): run `%s`", name, v, err, fixEvents)
	}
	return nil
}
