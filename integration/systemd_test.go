package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/lab"
	"github.com/ctha/ctha/internal/control"
)

// bootScript runs in the lab firewall's network namespace (via `ip netns
// exec`): it moves itself into a cgroup of its own, so that the booted
// systemd's cgroup namespace is rooted there and never in the host's
// cgroups, and starts the new namespaces of spec/lab.md. The cgroup2 mount
// is made in the mount namespace `ip netns exec` created (a slave of the
// host's: nothing propagates back). --uts and --ipc too: systemd as PID 1
// sets the hostname.
// $1 the test's directory, $2 the ctha binary, $3 the cgroup's name.
const bootScript = `set -eu
mount -t cgroup2 cgroup2 /sys/fs/cgroup
own=$(sed -n 's/^0:://p' /proc/self/cgroup)
cg="/sys/fs/cgroup${own%/}/$3"
mkdir "$cg"
echo $$ > "$cg/cgroup.procs"
exec unshare --pid --fork --kill-child --mount --propagation private --mount-proc \
	--cgroup --uts --ipc sh "$1/init.sh" "$1" "$2"
`

// initScript runs as PID 1 of the new namespaces. It gives the coming
// systemd a private view of everything it could write to (tmpfs on /run,
// /tmp, /var and /dev, an overlay on /etc, / read-only), hides every
// installed unit and generator but the few the test boots, puts the binary
// and configuration where examples/ctha.service expects them, and execs
// systemd as PID 1 with ctha-test.target.
// $1 the test's directory, $2 the ctha binary.
const initScript = `set -eu
mount --make-rprivate /
# Hold no other lab's network namespace alive (and show none to systemd).
if mountpoint -q /run/netns; then umount -R -l /run/netns; fi
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir /run/lab /run/ovl /run/hostdev
mount --bind "$1" /run/lab
T=/run/lab

# The binary where the unit wants it, /usr/sbin/ctha: an overlay adds it
# to the host's /usr/sbin (sysctl, the unit's ExecStartPre=+, stays).
mkdir /run/sbin /run/sbin/upper /run/sbin/work
mount -t overlay overlay -o lowerdir=/usr/sbin,upperdir=/run/sbin/upper,workdir=/run/sbin/work /usr/sbin
touch /usr/sbin/ctha
mount --bind "$2" /usr/sbin/ctha

# A private /dev with the usual nodes, bound from the host's.
mount --bind /dev /run/hostdev
mount -t tmpfs -o mode=0755,nosuid tmpfs /dev
for n in null zero full random urandom tty; do
	touch /dev/$n
	mount --bind /run/hostdev/$n /dev/$n
done
umount /run/hostdev
rmdir /run/hostdev
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
mkdir /dev/shm /dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts
ln -s pts/ptmx /dev/ptmx

# /etc: the host's files, but every write goes to a tmpfs.
mount -t tmpfs -o mode=0755 tmpfs /run/ovl
mkdir /run/ovl/upper /run/ovl/work
mount -t overlay overlay -o lowerdir=/etc,upperdir=/run/ovl/upper,workdir=/run/ovl/work /etc
mkdir -m 0700 /etc/ctha
mount --bind "$T/etc-ctha" /etc/ctha

# Only the units the test boots: a few of the distribution's, copied
# before its directory is hidden, and the test's own.
mount -t tmpfs -o mode=0755 tmpfs /etc/systemd/system
for u in $(cat "$T/dist-units"); do
	cp /usr/lib/systemd/system/$u /etc/systemd/system/
done
cp "$T"/units/* /etc/systemd/system/
for d in /usr/lib/systemd/system /usr/lib/systemd/system-generators \
	/usr/lib/systemd/system-environment-generators /usr/local/lib/systemd; do
	if [ -d $d ]; then mount -t tmpfs -o mode=0755,ro tmpfs $d; fi
done

mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /var
mkdir -m 1777 /var/tmp
mkdir /var/lib /var/log /var/cache
ln -s ../run /var/run
ln -s ../run/lock /var/lock

# cgroup2 as seen from the new cgroup namespace.
umount /sys/fs/cgroup
mount -t cgroup2 cgroup2 /sys/fs/cgroup

mount -o remount,bind,ro /
exec env -i container=ctha-lab /lib/systemd/systemd --unit=ctha-test.target \
	--log-target=journal --show-status=no
`

// distUnits are the distribution's units the booted systemd gets: the
// targets the default dependencies of a service name, what a halt needs,
// and the journal (so that `systemctl status` shows ctha's log).
var distUnits = []string{
	"sysinit.target", "basic.target", "shutdown.target", "umount.target", "final.target",
	"halt.target", "systemd-halt.service", "network.target", "network-online.target",
	"systemd-journald.service", "systemd-journald.socket", "systemd-journald-dev-log.socket",
}

// testTarget is the target systemd boots: the journal and ctha, nothing else.
const testTarget = `[Unit]
Description=ctha test boot
Wants=systemd-journald.socket systemd-journald-dev-log.socket systemd-journald.service ctha.service
`

// sdBoot is a systemd booted as PID 1 of new namespaces in a lab firewall.
type sdBoot struct {
	proc   *lab.Proc // unshare, outside the new pid namespace
	pid    int       // systemd, as the host sees it
	cgroup string    // host path of the cgroup everything runs in
}

// bootSystemd boots systemd inside role's namespace with examples/ctha.service
// as is (the unit the Debian package ships), the ctha under test at
// /usr/sbin/ctha and config at /etc/ctha/ctha.hcl, and units, more units
// by file name (not started at boot). Cleanup halts it and removes its
// cgroup.
func bootSystemd(t *testing.T, l *lab.Lab, role, config string, units map[string]string) *sdBoot {
	t.Helper()
	dir := t.TempDir()
	b := &sdBoot{}
	unit, err := os.ReadFile(filepath.Join("..", "examples", "ctha.service"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"boot.sh":                bootScript,
		"init.sh":                initScript,
		"dist-units":             strings.Join(distUnits, "\n") + "\n",
		"units/ctha.service":     string(unit),
		"units/ctha-test.target": testTarget,
		"etc-ctha/ctha.hcl":      config,
		"etc-ctha/sync.key":      testKey,
	}
	for name, content := range units {
		files["units/"+name] = content
	}
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".key") {
			mode = 0o600 // ctha check refuses a key others can read
		}
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	cgName := "ctha-test-" + l.Prefix
	cgroot, err := ownCgroup2()
	if err != nil {
		t.Fatal(err)
	}
	b.cgroup = filepath.Join(cgroot, cgName)
	b.proc = l.Start(t, role, "systemd-"+role, "sh", filepath.Join(dir, "boot.sh"), dir, cthaBin, cgName)
	t.Cleanup(func() {
		if err := b.halt(t); err != nil {
			t.Error(err)
		}
	})

	// unshare's only child is systemd.
	err = lab.WaitFor(10*time.Second, 20*time.Millisecond, func() (bool, error) {
		if b.proc.Exited() {
			return false, fmt.Errorf("boot script exited: %v\n%s", b.proc.Wait(), b.proc.Log())
		}
		pid, err := onlyChild(b.proc.Pid())
		if err != nil {
			return false, err
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(comm)) != "systemd" {
			return false, fmt.Errorf("child %d is %q, not yet systemd", pid, comm)
		}
		b.pid = pid
		return true, nil
	})
	if err != nil {
		t.Fatalf("systemd did not start: %v", err)
	}
	err = lab.WaitFor(20*time.Second, 100*time.Millisecond, func() (bool, error) {
		out, err := b.systemctl("is-system-running")
		out = strings.TrimSpace(out)
		return out == "running" || out == "degraded", fmt.Errorf("is-system-running: %q %v", out, err)
	})
	if err != nil {
		t.Fatalf("systemd does not come up: %v\n%s", err, b.journal())
	}
	return b
}

// in runs argv in every namespace of the booted systemd.
func (b *sdBoot) in(argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := append([]string{"--target", strconv.Itoa(b.pid), "--all"}, argv...)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	// nsenter forks into the pid namespace; a child left running must not
	// hold the output pipe open forever.
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// waitPriority waits until the instance's effective priority, as `ctha
// status --json` run inside the booted systemd shows it, is want.
func (b *sdBoot) waitPriority(t *testing.T, instance string, want int) {
	t.Helper()
	var got int
	err := lab.WaitFor(5*time.Second, 100*time.Millisecond, func() (bool, error) {
		out, err := b.in("/usr/sbin/ctha", "status", "--json")
		if err != nil {
			return false, nil
		}
		var st control.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return false, nil
		}
		for _, in := range st.Instances {
			if in.Name == instance {
				got = int(in.EffectivePriority)
			}
		}
		return got == want, nil
	})
	if err != nil {
		t.Errorf("instance %s's effective priority is %d, want %d", instance, got, want)
	}
}

func (b *sdBoot) systemctl(args ...string) (string, error) {
	return b.in(append([]string{"systemctl", "--no-pager"}, args...)...)
}

// show returns a property of ctha.service.
func (b *sdBoot) show(prop string) string { return b.showUnit("ctha.service", prop) }

// showUnit returns a property of unit.
func (b *sdBoot) showUnit(unit, prop string) string {
	out, _ := b.systemctl("show", "-p", prop, "--value", unit)
	return strings.TrimSpace(out)
}

// journal returns the end of the booted system's journal, for failures.
func (b *sdBoot) journal() string {
	out, err := b.in("journalctl", "--no-pager", "-n", "80")
	if err != nil {
		return fmt.Sprintf("journalctl: %v\n%s", err, out)
	}
	return out
}

// halt stops systemd by its pid: SIGRTMIN+3 starts halt.target (ctha is
// stopped like on a real shutdown) and a systemd in a container then exits.
// If it does not, everything in its cgroup is killed.
// It is idempotent; the error says what did not go cleanly.
func (b *sdBoot) halt(t *testing.T) error {
	t.Helper()
	var errs []error
	if b.pid != 0 && !b.proc.Exited() {
		if t.Failed() {
			t.Logf("journal of the booted systemd:\n%s", b.journal())
		}
		start := time.Now()
		_ = syscall.Kill(b.pid, sigRTMin+3)
		select {
		case <-b.proc.Done():
			t.Logf("systemd halted in %v", time.Since(start).Round(time.Millisecond))
		case <-time.After(30 * time.Second):
			errs = append(errs, fmt.Errorf("systemd (pid %d) did not halt in 30s; its cgroup was killed", b.pid))
		}
	}
	if !b.proc.Exited() {
		_ = os.WriteFile(filepath.Join(b.cgroup, "cgroup.kill"), []byte("1"), 0)
		_ = b.proc.Kill()
	}
	// Killed processes leave their cgroup a moment later.
	_ = lab.WaitFor(10*time.Second, 50*time.Millisecond, func() (bool, error) {
		ev, err := os.ReadFile(filepath.Join(b.cgroup, "cgroup.events"))
		return errors.Is(err, fs.ErrNotExist) || strings.Contains(string(ev), "populated 0"), err
	})
	if err := removeCgroup(b.cgroup); err != nil {
		errs = append(errs, fmt.Errorf("remove cgroup: %w", err))
	}
	return errors.Join(errs...)
}

// sigRTMin is glibc's SIGRTMIN, the base systemd's signals count from.
const sigRTMin = syscall.Signal(34)

// onlyChild returns the single child of pid.
func onlyChild(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) != 1 {
		return 0, fmt.Errorf("pid %d has children %v", pid, f)
	}
	return strconv.Atoi(f[0])
}

// ownCgroup2 returns the host path of this process's cgroup in the cgroup2
// hierarchy.
func ownCgroup2() (string, error) {
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	var own string
	for _, line := range strings.Split(string(cg), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			own = p
		}
	}
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer mi.Close()
	sc := bufio.NewScanner(mi)
	for sc.Scan() {
		// ... mountpoint ... - fstype source options
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if f := strings.Fields(pre); ok && len(f) > 4 && strings.HasPrefix(post, "cgroup2 ") {
			return filepath.Join(f[4], own), nil
		}
	}
	return "", errors.New("no cgroup2 hierarchy mounted")
}

// removeCgroup removes a cgroup and its children, deepest first.
func removeCgroup(path string) error {
	var dirs []string
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return err
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range slices.Backward(dirs) {
		if err := os.Remove(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// notifiedUnit is the unit fw1's notify command restarts in
// TestSystemdStatus: its InvocationID changes at each restart.
const notifiedUnit = `[Unit]
Description=restarted by ctha's notify (TestSystemdStatus)

[Service]
ExecStart=/bin/sleep infinity
`

// TestSystemdStatus boots a real systemd as PID 1 of new namespaces inside
// the lab's fw1 (spec/lab.md), runs examples/ctha.service as is there and
// fw2 as a plain process, and checks that `systemctl status ctha` shows
// the role, follows a failover and its cancel, survives a reload and the
// watchdog, and that `systemctl stop` hands over cleanly. A notify command
// run under the unit's sandbox restarts another unit with `systemctl
// restart` at each MASTER.
func TestSystemdStatus(t *testing.T) {
	lab.RequireNetns(t)
	lab.RequireCommands(t, "unshare", "nsenter", "mountpoint", "systemctl", "journalctl", "/lib/systemd/systemd")
	// Proof that the booted systemd leaves the host's /tmp alone.
	sentinel, err := os.CreateTemp("", "ctha-systemd-sentinel-")
	if err != nil {
		t.Fatal(err)
	}
	sentinel.Close()
	defer os.Remove(sentinel.Name())

	l := lab.New(t, lab.Options{NoIPv6: true})
	// The first start on a host with the kernel's defaults (issue 17):
	// nf_conntrack_events is 2, which ctha may not change under
	// ProtectKernelTunables; the unit's ExecStartPre=+ sets it. It is per
	// network namespace: fw1's, never the host's.
	hostEvents := readEvents(t, "")
	l.MustExec(t, lab.RoleFW1, "sysctl", "-q", "-w", "net.netfilter.nf_conntrack_events=2")
	// The group's master notify restarts another unit from inside the
	// sandbox (issue 18): systemctl as root reaches PID 1 on its private
	// socket, which authorizes root by uid, capabilities or not.
	conf := strings.Replace(exampleConfig(t, "fw1.hcl"), "conntrack = true", `conntrack = true
  notify {
    master = ["/usr/bin/systemctl restart ctha-notified.service"]
  }`, 1)
	if !strings.Contains(conf, "ctha-notified") {
		t.Fatal(`examples/fw1.hcl has no "conntrack = true" to add the notify block after`)
	}
	// track_process under ProtectProc=invisible (issue 18): the notified
	// unit's sleep, a process of another unit holding every capability
	// ctha lacks, counts. /proc's hidepid hides a process from those
	// outside the mount's group (root's) that may not ptrace it; ctha is
	// root, group root.
	conf = strings.Replace(conf, `virtual_ips     = ["10.10.1.1/24"]`, `virtual_ips     = ["10.10.1.1/24"]
  track_process "sleep" { weight = 10 }`, 1)
	if !strings.Contains(conf, "track_process") {
		t.Fatal(`examples/fw1.hcl has no lan virtual_ips line to add track_process after`)
	}
	sd := bootSystemd(t, l, lab.RoleFW1, conf, map[string]string{"ctha-notified.service": notifiedUnit})
	fw2 := startNode(t, l, lab.RoleFW2, exampleConfig(t, "fw2.hcl"))

	// The unit is the example, unchanged and without drop-ins.
	unit, _ := os.ReadFile(filepath.Join("..", "examples", "ctha.service"))
	if out, err := sd.systemctl("cat", "ctha"); err != nil || !strings.Contains(out, string(unit)) {
		t.Errorf("systemctl cat ctha does not show examples/ctha.service: %v\n%s", err, out)
	}
	if got := sd.show("DropInPaths"); got != "" {
		t.Errorf("drop-ins %q", got)
	}
	if got := sd.show("WatchdogUSec"); got != "10s" {
		t.Errorf("WatchdogUSec = %q, want 10s", got)
	}
	mainPID := sd.show("MainPID")
	started := time.Now()

	sd.waitStatus(t, "fw MASTER | lan MASTER, wan MASTER | sync peer up")
	waitGroup(t, fw2, "BACKUP")
	sd.checkStatusLine(t, "fw MASTER | lan MASTER, wan MASTER | sync peer up, ")
	sd.checkHardening(t, mainPID)
	restarted := sd.waitRestarted(t, "ctha-notified.service", "")
	sd.waitPriority(t, "lan", 160) // 150 + the sleep's 10
	if got := readEvents(t, l.NS(lab.RoleFW1)); got != "1" || sd.show("NRestarts") != "0" || sd.show("MainPID") != mainPID {
		t.Errorf("first start from nf_conntrack_events=2: fw1's value %s, NRestarts %s; want 1 and a start that worked the first time",
			got, sd.show("NRestarts"))
	}
	if got := readEvents(t, ""); got != hostEvents {
		t.Errorf("the host's nf_conntrack_events changed from %s to %s", hostEvents, got)
	}

	// A reload keeps the daemon and its role; systemd waits for READY=1.
	if out, err := sd.systemctl("reload", "ctha"); err != nil {
		t.Errorf("systemctl reload ctha: %v\n%s", err, out)
	}
	if out, _ := sd.in("journalctl", "--no-pager", "-u", "ctha"); !strings.Contains(out, "configuration reloaded") {
		t.Errorf("no reload in ctha's journal:\n%s", out)
	}
	sd.checkStatusLine(t, "fw MASTER | lan MASTER, wan MASTER | sync peer up, ")

	// A planned failover: fw1 stays demoted, fw2 takes over.
	if out, err := sd.in("/usr/sbin/ctha", "failover"); err != nil {
		t.Fatalf("ctha failover: %v\n%s", err, out)
	}
	sd.waitStatus(t, "fw BACKUP | lan BACKUP, wan BACKUP | sync peer up")
	waitGroup(t, fw2, "MASTER")
	sd.checkStatusLine(t, "fw BACKUP | lan BACKUP, wan BACKUP | sync peer up, ")
	// The demotion's metric (examples/monitoring's CthaDemotedAfterFailover).
	demoted := `ctha_group_demoted{group="fw",reason="failover"} `
	if m := l.MustExec(t, lab.RoleFW1, "curl", "-sf", "http://127.0.0.1:9477/metrics"); !strings.Contains(m, demoted+"1\n") {
		t.Errorf("after ctha failover, metrics lack %s1", demoted)
	}

	// Cancelled: fw1, with the higher priority, takes the role back.
	if out, err := sd.in("/usr/sbin/ctha", "failover", "--cancel"); err != nil {
		t.Fatalf("ctha failover --cancel: %v\n%s", err, out)
	}
	sd.waitStatus(t, "fw MASTER | lan MASTER, wan MASTER | sync peer up")
	waitGroup(t, fw2, "BACKUP")
	sd.waitRestarted(t, "ctha-notified.service", restarted)
	if m := l.MustExec(t, lab.RoleFW1, "curl", "-sf", "http://127.0.0.1:9477/metrics"); !strings.Contains(m, demoted+"0\n") {
		t.Errorf("after ctha failover --cancel, metrics lack %s0", demoted)
	}

	// The watchdog (WatchdogSec=10s) has been fed: the same process is
	// running past 10 s, never restarted, and pings keep arriving.
	if d := 11*time.Second - time.Since(started); d > 0 {
		time.Sleep(d)
	}
	ping := sd.show("WatchdogTimestampMonotonic")
	err = lab.WaitFor(10*time.Second, 200*time.Millisecond, func() (bool, error) {
		now := sd.show("WatchdogTimestampMonotonic")
		return now != ping && now != "0", fmt.Errorf("last watchdog ping at %s", now)
	})
	if err != nil {
		t.Errorf("watchdog: %v", err)
	}
	if got := sd.show("MainPID"); got != mainPID || sd.show("NRestarts") != "0" || sd.show("SubState") != "running" {
		t.Errorf("after %v: MainPID %s (was %s), NRestarts %s, SubState %s", time.Since(started).Round(time.Second),
			got, mainPID, sd.show("NRestarts"), sd.show("SubState"))
	}

	// systemctl stop: a graceful handover (fw1 resigns: fw2 takes over
	// after its skew time, 0.61 s, not its Master_Down_Interval, 3.61 s)
	// and a clean exit.
	stop := time.Now()
	if out, err := sd.systemctl("stop", "ctha"); err != nil {
		t.Errorf("systemctl stop ctha: %v\n%s", err, out)
	}
	waitGroup(t, fw2, "MASTER")
	took := time.Since(stop)
	st, err := fw2.status()
	if err != nil {
		t.Fatal(err)
	}
	// The limit of the other handover tests, plus systemctl and polling.
	if limit := handoverLimit(st) + 500*time.Millisecond; took > limit {
		t.Errorf("systemctl stop -> fw2 MASTER took %v, want a resign (under %v), not a missing master", took, limit)
	}
	t.Logf("figure: systemctl stop -> fw2 MASTER in %v", took.Round(time.Millisecond))
	if st, res := sd.show("ActiveState"), sd.show("Result"); st != "inactive" || res != "success" {
		t.Errorf("after stop: ActiveState %s, Result %s; want inactive, success", st, res)
	}

	if err := sd.halt(t); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(sentinel.Name()); err != nil {
		t.Errorf("the host's /tmp lost a file while systemd ran: %v", err)
	}
}

// checkHardening checks that the unit's sandbox really applies in these
// nested namespaces: systemd warned about nothing in the unit, and the
// daemon runs with two capabilities, no new privileges, a seccomp filter,
// a read-only /etc and an invisible /proc.
func (b *sdBoot) checkHardening(t *testing.T, mainPID string) {
	t.Helper()
	if out, err := b.in("journalctl", "--no-pager", "-q", "-u", "ctha", "-p", "warning"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd warned about ctha.service (%v):\n%s", err, out)
	}
	status, err := b.in("cat", "/proc/"+mainPID+"/status")
	if err != nil {
		t.Fatalf("status of ctha (pid %s in the booted system): %v\n%s", mainPID, err, status)
	}
	const netAdminRaw = "0000000000003000" // CAP_NET_ADMIN (12), CAP_NET_RAW (13)
	for _, want := range []string{"CapEff:\t" + netAdminRaw, "CapBnd:\t" + netAdminRaw, "CapAmb:\t" + netAdminRaw,
		"NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(status, want+"\n") {
			t.Errorf("ctha's /proc status lacks %q:\n%s", want, status)
		}
	}
	mounts, err := b.in("cat", "/proc/"+mainPID+"/mountinfo")
	if err != nil {
		t.Fatalf("mounts of ctha: %v\n%s", err, mounts)
	}
	for _, want := range []string{" /etc ro,", " /proc rw,", "hidepid=invisible", " /var/lib/ctha rw,", " /run/ctha rw,"} {
		if !strings.Contains(mounts, want) {
			t.Errorf("ctha's mounts lack %q:\n%s", want, mounts)
		}
	}
}

// waitRestarted waits until unit is active with an InvocationID other
// than before ("": any), which it returns: a notify command restarted it.
func (b *sdBoot) waitRestarted(t *testing.T, unit, before string) string {
	t.Helper()
	var id string
	err := lab.WaitFor(10*time.Second, 100*time.Millisecond, func() (bool, error) {
		id = b.showUnit(unit, "InvocationID")
		state := b.showUnit(unit, "ActiveState")
		return state == "active" && id != "" && id != before, fmt.Errorf("%s %s, InvocationID %q (before: %q)", unit, state, id, before)
	})
	if err != nil {
		out, _ := b.in("journalctl", "--no-pager", "-u", "ctha", "-u", unit)
		t.Fatalf("the notify command did not restart %s: %v\n%s", unit, err, out)
	}
	return id
}

// waitStatus waits until ctha's STATUS= starts with prefix.
func (b *sdBoot) waitStatus(t *testing.T, prefix string) {
	t.Helper()
	err := lab.WaitFor(20*time.Second, 100*time.Millisecond, func() (bool, error) {
		got := b.show("StatusText")
		return strings.HasPrefix(got, prefix), fmt.Errorf("StatusText %q", got)
	})
	if err != nil {
		t.Fatalf("want status %q: %v", prefix, err)
	}
}

// checkStatusLine checks what an administrator reads: `systemctl status
// ctha` says active (running) and its Status: line starts with want.
func (b *sdBoot) checkStatusLine(t *testing.T, want string) {
	t.Helper()
	out, err := b.systemctl("status", "ctha")
	if err != nil || !strings.Contains(out, "Active: active (running)") || !strings.Contains(out, `Status: "`+want) {
		t.Errorf("systemctl status ctha: %v; want active (running) and Status: %q...\n%s", err, want, out)
		return
	}
	t.Logf("systemctl status ctha:\n%s", out)
}

// waitGroup waits until the node's sync group is in state.
func waitGroup(t *testing.T, n *node, state string) {
	t.Helper()
	err := lab.WaitFor(20*time.Second, 50*time.Millisecond, func() (bool, error) {
		st, err := n.status()
		if err != nil {
			return false, err
		}
		return len(st.Groups) == 1 && st.Groups[0].State == state, fmt.Errorf("groups %+v", st.Groups)
	})
	if err != nil {
		t.Fatalf("%s: want group %s: %v", n.role, state, err)
	}
}

// readEvents reads net.netfilter.nf_conntrack_events in network namespace
// ns ("": this process's, the host's).
func readEvents(t *testing.T, ns string) string {
	t.Helper()
	argv := []string{"sysctl", "-n", "net.netfilter.nf_conntrack_events"}
	if ns != "" {
		argv = append([]string{"ip", "netns", "exec", ns}, argv...)
	}
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}
