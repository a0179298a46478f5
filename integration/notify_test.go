package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ctha/ctha/integration/lab"
)

// TestNotifyKeepalivedStyle: notify like keepalived, on a real daemon.
// An instance's notify entries are command lines whose quoted words reach
// the program as one argument each; the generic notify gets keepalived's
// four arguments (type, name, state, priority); in each transition the
// instances' commands run before their group's; an instance in no sync
// group runs its own; on SIGTERM the stop commands run, once the VIPs are
// gone, before the process exits.
func TestNotifyKeepalivedStyle(t *testing.T) {
	lab.RequireNetns(t)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "notify.log")
	// Each run appends one line, in one write (the group's and the lone
	// instance's commands may run at the same time): its arguments, each
	// in brackets, then its CTHA_* variables ("-" when unset).
	const record = `line=
for a in "$@"; do line="$line[$a]"; done
line="$line | ${CTHA_TYPE:--} ${CTHA_INSTANCE:--} ${CTHA_GROUP:--} ${CTHA_STATE:--} ${CTHA_REASON:--} ${CTHA_PRIORITY:--}"
`
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rec := script("rec.sh", record+`echo "$line" >> `+logPath)
	// stop.sh also says whether fw1's LAN VIP is still on the interface.
	stop := script("stop.sh", record+`vip=present
ip -4 -o addr show dev lan | grep -q ' 10.10.1.1/' || vip=gone
echo "$line vip=$vip" >> `+logPath)

	conf := exampleConfig(t, "fw1.hcl")
	lanNotify := fmt.Sprintf(`virtual_ips     = ["10.10.1.1/24"]
  notify {
    master  = ["%[1]s lan-master 'first hop' \"a b\" c\\ d"]
    backup  = ["%[1]s lan-backup"]
    stop    = ["%[2]s lan-stop"]
    notify  = ["%[1]s generic"]
    timeout = "5s"
  }`, rec, stop)
	groupNotify := fmt.Sprintf(`conntrack = true
  notify {
    master = ["%[1]s fw-master"]
    stop   = ["%[2]s fw-stop"]
    notify = ["%[1]s generic"]
  }`, rec, stop)
	for old, new := range map[string]string{`virtual_ips     = ["10.10.1.1/24"]`: lanNotify, "conntrack = true": groupNotify} {
		if !strings.Contains(conf, old) {
			t.Fatalf("fw1.hcl lacks %q", old)
		}
		conf = strings.Replace(conf, old, new, 1)
	}
	conf += fmt.Sprintf(`
vrrp_instance "dmz" {
  interface       = "lan"
  vrid            = 53
  priority        = 120
  advert_interval = "1s"
  virtual_ips     = ["10.10.1.53/24"]
  notify {
    master = ["%[1]s dmz-master x"]
    stop   = ["%[2]s dmz-stop"]
    notify = ["%[1]s generic"]
  }
}
`, rec, stop)

	r := newRigLab(t, "direct")
	r.conf[lab.RoleFW1] = conf
	start := time.Now()
	fw1 := r.start(lab.RoleFW1)
	waitGroupState(t, fw1, "MASTER", 10*time.Second)
	read := func() []string {
		b, _ := os.ReadFile(logPath)
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	// The MASTER commands run after the transition, on their goroutine.
	if err := lab.WaitFor(5*time.Second, 50*time.Millisecond, func() (bool, error) {
		l := read()
		return slices.ContainsFunc(l, func(s string) bool { return strings.HasPrefix(s, "[generic][GROUP][fw][MASTER]") }) &&
			slices.ContainsFunc(l, func(s string) bool { return strings.HasPrefix(s, "[generic][INSTANCE][dmz][MASTER]") }), nil
	}); err != nil {
		t.Fatalf("the MASTER commands did not run: %q", read())
	}
	running := read()
	term := time.Now()
	if err := fw1.proc.Stop(20 * time.Second); err != nil {
		t.Fatalf("ctha did not stop cleanly on SIGTERM: %v\n%s", err, fw1.proc.Tail(20))
	}
	stopped := time.Since(term)
	lines := read()
	if !slices.Equal(lines[:len(running)], running) {
		t.Fatalf("the log changed under us: %q then %q", running, lines)
	}

	// The lone instance and the group run on goroutines of their own:
	// compare each one's lines, in order. A line is its arguments, then
	// type, instance, group, state and reason; the priority is checked
	// apart (the group's may be demoted while it has no sync peer).
	var fw, dmz []string
	for _, l := range lines {
		args, env, ok := strings.Cut(l, " | ")
		f := strings.Fields(env)
		if !ok || len(f) < 6 {
			t.Fatalf("malformed line %q", l)
		}
		// The generic notify's fourth argument is the instance's
		// priority, CTHA_PRIORITY; 0 for a group. fw's instances may be
		// demoted while fw1 has no sync peer: their priority is checked
		// here and written P.
		if strings.HasPrefix(args, "[generic]") {
			a := strings.Split(strings.Trim(args, "[]"), "][")
			if len(a) != 5 {
				t.Errorf("generic notify got %q, want 4 arguments", args)
				continue
			}
			want := f[5]
			if a[1] == "GROUP" {
				want = "0"
			}
			if a[4] != want || want == "-" {
				t.Errorf("generic notify's priority %q in %q, want %s", a[4], l, want)
			}
			if a[1] == "INSTANCE" && a[2] != "dmz" {
				args = strings.TrimSuffix(args, "["+a[4]+"]") + "[P]"
			}
		}
		if f[1] == "lan" && f[3] == "MASTER" && f[4] == "group" {
			f[4] = "master-down" // wan's Master_Down came a tick before lan's and took it along
		}
		short := args + " | " + strings.Join(append(f[:5:5], f[6:]...), " ")
		if f[1] == "dmz" {
			dmz = append(dmz, short)
		} else {
			fw = append(fw, short)
		}
	}
	wantFW := []string{
		"[lan-backup] | INSTANCE lan fw BACKUP startup",
		"[generic][INSTANCE][lan][BACKUP][P] | INSTANCE lan fw BACKUP startup",
		"[generic][GROUP][fw][BACKUP][0] | GROUP - fw BACKUP startup",
		"[lan-master][first hop][a b][c d] | INSTANCE lan fw MASTER master-down",
		"[generic][INSTANCE][lan][MASTER][P] | INSTANCE lan fw MASTER master-down",
		"[fw-master] | GROUP - fw MASTER master-down",
		"[generic][GROUP][fw][MASTER][0] | GROUP - fw MASTER master-down",
		"[lan-stop] | INSTANCE lan fw STOP shutdown vip=gone",
		"[generic][INSTANCE][lan][STOP][P] | INSTANCE lan fw STOP shutdown",
		"[fw-stop] | GROUP - fw STOP shutdown vip=gone",
		"[generic][GROUP][fw][STOP][0] | GROUP - fw STOP shutdown",
	}
	if diff := cmp.Diff(wantFW, fw); diff != "" {
		t.Errorf("group fw's commands (-want +got):\n%s", diff)
	}
	wantDMZ := []string{
		"[generic][INSTANCE][dmz][BACKUP][120] | INSTANCE dmz - BACKUP startup",
		"[dmz-master][x] | INSTANCE dmz - MASTER master-down",
		"[generic][INSTANCE][dmz][MASTER][120] | INSTANCE dmz - MASTER master-down",
		"[dmz-stop] | INSTANCE dmz - STOP shutdown vip=gone",
		"[generic][INSTANCE][dmz][STOP][120] | INSTANCE dmz - STOP shutdown",
	}
	if diff := cmp.Diff(wantDMZ, dmz); diff != "" {
		t.Errorf("lone instance dmz's commands (-want +got):\n%s", diff)
	}
	// The stop commands ran before the process exited (every line is in
	// the log once Stop has returned), after the VIPs had gone.
	t.Logf("figure: start -> MASTER commands %v; SIGTERM -> exit, stop commands included: %v", term.Sub(start).Round(time.Millisecond), stopped.Round(time.Millisecond))
}
