package kernel

import (
	"fmt"
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

// EnsureEvents makes sure net.netfilter.nf_conntrack_events is 1 in the
// calling thread's network namespace, setting it if needed. With the
// kernel's default of 2, flows created while no listener was subscribed
// never produce any event, not even DESTROY.
func EnsureEvents() error {
	const name = "nf_conntrack_events"
	v, err := readSysctl(name)
	if err != nil {
		return fmt.Errorf("ensure conntrack events: %w", err)
	}
	if v == 1 {
		return nil
	}
	if err := os.WriteFile(filepath.Join(procNetfilter, name), []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("net.netfilter.%s is %d: flows created while no listener is subscribed produce no events; "+
			"setting it to 1 failed (%w): set it to 1 (examples/ctha-sysctl.conf)", name, v, err)
	}
	if v, err = readSysctl(name); err != nil || v != 1 {
		return fmt.Errorf("net.netfilter.%s is still %d after setting it to 1 (%v): set it to 1 (examples/ctha-sysctl.conf)", name, v, err)
	}
	return nil
}
