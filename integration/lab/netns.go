package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// DefaultTimeout bounds every command the lab runs unless told otherwise.
const DefaultTimeout = 30 * time.Second

// EnvRequireNetns is the environment variable that turns the skip of
// [RequireNetns] into a failure (CI sets it to 1).
const EnvRequireNetns = "CTHA_REQUIRE_NETNS"

// TB is the part of testing.TB the lab needs, so that a demo program can
// provide it too. If the value also has a Failed() bool method (as
// testing.TB does), process logs are printed when the test failed.
type TB interface {
	Helper()
	Cleanup(func())
	Logf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	TempDir() string
}

// RequireNetns skips t with the reason when the lab cannot run here (not
// root, `ip` or `nft` missing, `ip netns add` failing). It calls t.Fatalf
// instead when the environment variable CTHA_REQUIRE_NETNS is 1.
//
// Under `go test -short` (the race run) it always skips: the namespace
// tests are timing-sensitive end-to-end tests, run by the normal run.
func RequireNetns(t TB) {
	t.Helper()
	if testing.Testing() && testing.Short() {
		t.Skipf("lab: namespace test skipped under -short")
		return
	}
	probeErr := Check()
	if probeErr == nil {
		return
	}
	if os.Getenv(EnvRequireNetns) == "1" {
		t.Fatalf("lab: network namespaces required (%s=1) but unavailable: %v", EnvRequireNetns, probeErr)
		return
	}
	t.Skipf("lab: skipping, network namespaces unavailable: %v (set %s=1 to fail instead)", probeErr, EnvRequireNetns)
}

// Check returns why the lab cannot run here (not root, `ip`, `nft` or
// `sysctl` missing, `ip netns add` failing), or nil. It probes once per
// process. RequireNetns is the form for tests; programs such as the demo
// call Check.
func Check() error {
	probeOnce.Do(func() { probeErr = probe() })
	return probeErr
}

// RequireCommands skips t, or fails it when CTHA_REQUIRE_NETNS is 1, when
// one of the named programs (e.g. "keepalived", "conntrackd") is not in
// PATH.
func RequireCommands(t TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			if os.Getenv(EnvRequireNetns) == "1" {
				t.Fatalf("lab: %s required (%s=1): %v", name, EnvRequireNetns, err)
				return
			}
			t.Skipf("lab: skipping, %v (set %s=1 to fail instead)", err, EnvRequireNetns)
			return
		}
	}
}

var (
	probeOnce sync.Once
	probeErr  error
)

// probe checks once per process that the lab can be built here.
func probe() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("not root (euid %d)", os.Geteuid())
	}
	for _, tool := range []string{"ip", "nft", "sysctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("look up %s: %w", tool, err)
		}
	}
	prefix, err := newPrefix()
	if err != nil {
		return err
	}
	name := prefix + "-probe"
	if err := addNetns(name); err != nil {
		return err
	}
	return delNetns(name)
}

// newPrefix returns a random lab prefix: "ct" and six hex digits.
func newPrefix() (string, error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random prefix: %w", err)
	}
	return "ct" + hex.EncodeToString(b[:]), nil
}

// run runs argv on the host side with a timeout, feeding it stdin (if not
// empty), and returns its combined output. The error names the command and
// includes its output.
func run(timeout time.Duration, stdin string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	// Grandchildren holding the output pipe must not block us forever.
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w after %v: %w", ErrTimeout, timeout, err)
		}
		err = fmt.Errorf("run %q: %w", strings.Join(argv, " "), err)
		if msg := strings.TrimSpace(string(out)); msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		return string(out), err
	}
	return string(out), nil
}

// nsArgv prefixes argv with `ip netns exec ns`.
func nsArgv(ns string, argv ...string) []string {
	return append([]string{"ip", "netns", "exec", ns}, argv...)
}

func addNetns(name string) error {
	_, err := run(DefaultTimeout, "", "ip", "netns", "add", name)
	return err
}

func delNetns(name string) error {
	_, err := run(DefaultTimeout, "", "ip", "netns", "del", name)
	return err
}

// listNetns returns the namespaces whose name starts with prefix+"-".
func listNetns(prefix string) ([]string, error) {
	out, err := run(DefaultTimeout, "", "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		// Lines look like "name" or "name (id: 3)".
		fields := strings.Fields(line)
		if len(fields) > 0 && strings.HasPrefix(fields[0], prefix+"-") {
			names = append(names, fields[0])
		}
	}
	return names, nil
}

// sysctl writes key=value settings inside namespace ns.
func sysctl(ns string, settings ...string) error {
	_, err := run(DefaultTimeout, "", nsArgv(ns, append([]string{"sysctl", "-q", "-w"}, settings...)...)...)
	return err
}

// ip runs `ip -n ns args...`.
func ip(ns string, args ...string) error {
	_, err := run(DefaultTimeout, "", append([]string{"ip", "-n", ns}, args...)...)
	return err
}

// Exec runs argv inside role's namespace (`ip netns exec NS argv...`) with
// DefaultTimeout and returns its combined output. The error includes the
// command and its output.
func (l *Lab) Exec(role string, argv ...string) (string, error) {
	return l.ExecTimeout(DefaultTimeout, role, argv...)
}

// ExecTimeout is Exec with a timeout of its own.
func (l *Lab) ExecTimeout(timeout time.Duration, role string, argv ...string) (string, error) {
	if err := checkRole(role); err != nil {
		return "", err
	}
	if len(argv) == 0 {
		return "", fmt.Errorf("exec in %s: no command", role)
	}
	return run(timeout, "", nsArgv(l.NS(role), argv...)...)
}

// MustExec is Exec that calls t.Fatalf on error.
func (l *Lab) MustExec(t TB, role string, argv ...string) string {
	t.Helper()
	out, err := l.Exec(role, argv...)
	if err != nil {
		t.Fatalf("lab %s: %v", role, err)
	}
	return out
}

// SetLink sets interface ifname ("lan", "wan", "sync", "eth0") of role up
// or down inside its namespace, to simulate a cut cable or a dead NIC. The
// lab keeps IPv6 addresses on down (keep_addr_on_down=1), so they are back
// at once when the link comes up again.
func (l *Lab) SetLink(role, ifname string, up bool) error {
	if err := checkRole(role); err != nil {
		return err
	}
	state := "down"
	if up {
		state = "up"
	}
	if err := ip(l.NS(role), "link", "set", "dev", ifname, state); err != nil {
		return fmt.Errorf("set %s/%s %s: %w", role, ifname, state, err)
	}
	return nil
}

// SetSwitchPort sets the switch side of role's ifname ("lan", "wan",
// "eth0") up or down: the firewall keeps its link configured but loses
// carrier, as when a cable is pulled at the switch.
func (l *Lab) SetSwitchPort(role, ifname string, up bool) error {
	for _, v := range l.veths() {
		if v.roleA == role && v.ifA == ifname && v.roleB == RoleSwitch {
			return l.SetLink(RoleSwitch, v.ifB, up)
		}
	}
	return fmt.Errorf("set switch port of %s/%s: no such switch port", role, ifname)
}

// HasAddr reports whether addr is configured on role's interface ifname.
func (l *Lab) HasAddr(role, ifname string, addr netip.Addr) (bool, error) {
	out, err := l.Exec(role, "ip", "-o", "addr", "show", "dev", ifname)
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(out, "\n") {
		// "3: lan    inet 10.10.1.1/24 scope global secondary lan ..."
		fields := strings.Fields(line)
		for i, f := range fields {
			if (f == "inet" || f == "inet6") && i+1 < len(fields) {
				if p, err := netip.ParsePrefix(fields[i+1]); err == nil && p.Addr() == addr {
					return true, nil
				}
			}
		}
	}
	return false, nil
}

func checkRole(role string) error {
	if !slices.Contains(Roles, role) && role != RoleFW3 {
		return fmt.Errorf("unknown lab role %q (want one of %v or %s)", role, Roles, RoleFW3)
	}
	return nil
}
