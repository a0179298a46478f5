package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// KeepalivedInstance is one vrrp_instance of a keepalived.conf.
type KeepalivedInstance struct {
	Name           string        // vrrp_instance name, e.g. "lan"
	Interface      string        // e.g. "lan"
	VRID           int           // 1..255
	Priority       int           // 1..255
	Version        int           // VRRP version 2 or 3; 0 means 3
	AdvertInterval time.Duration // 0 means 1 s; VRRPv2 needs whole seconds
	// VIPs are added on Interface. The family of the first one is the
	// instance's family; VIPs of the other family go to
	// virtual_ipaddress_excluded (keepalived wants one family per
	// advert).
	VIPs         []netip.Prefix
	NoPreempt    bool
	UnicastSrc   netip.Addr   // unicast_src_ip, if valid
	UnicastPeers []netip.Addr // unicast instead of multicast adverts, if any
	// Notify scripts: a path, possibly followed by arguments.
	NotifyMaster, NotifyBackup, NotifyFault string
	// AuthType "PASS" or "AH" (VRRPv2) writes an authentication block
	// with AuthPass; "" none.
	AuthType, AuthPass string
}

// KeepalivedConfig is rendered into a keepalived.conf by Render.
type KeepalivedConfig struct {
	RouterID  string // global_defs router_id; empty means the lab role
	Instances []KeepalivedInstance
	// SyncGroup, if set, names a vrrp_sync_group of all the instances,
	// with the group notify scripts below.
	SyncGroup                               string
	NotifyMaster, NotifyBackup, NotifyFault string
	// RealtimePriority, if above 0, is global_defs vrrp_rt_priority: the
	// VRRP process runs SCHED_RR at that priority. NoSwap is vrrp_no_swap
	// (its memory locked).
	RealtimePriority int
	NoSwap           bool
	// Extra is appended verbatim to the configuration.
	Extra string
}

var keepalivedName = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// Render returns the keepalived.conf text, or every problem it found.
func (c KeepalivedConfig) Render() (string, error) {
	var errs []error
	var b strings.Builder
	b.WriteString("global_defs {\n")
	if c.RouterID != "" {
		if !keepalivedName.MatchString(c.RouterID) {
			errs = append(errs, fmt.Errorf("router id %q: want letters, digits, '_', '.', '-'", c.RouterID))
		}
		fmt.Fprintf(&b, "\trouter_id %s\n", c.RouterID)
	}
	// Notify scripts run as root and must not be writable by anyone
	// else (a t.TempDir() is fine); without script security keepalived
	// warns and its config test fails.
	b.WriteString("\tscript_user root\n")
	b.WriteString("\tenable_script_security\n")
	switch {
	case c.RealtimePriority > 99:
		errs = append(errs, fmt.Errorf("realtime priority %d: want 1..99", c.RealtimePriority))
	case c.RealtimePriority > 0:
		fmt.Fprintf(&b, "\tvrrp_rt_priority %d\n", c.RealtimePriority)
	}
	if c.NoSwap {
		b.WriteString("\tvrrp_no_swap\n")
	}
	b.WriteString("}\n")

	if len(c.Instances) == 0 {
		errs = append(errs, errors.New("no vrrp instance"))
	}
	if c.SyncGroup != "" {
		if !keepalivedName.MatchString(c.SyncGroup) {
			errs = append(errs, fmt.Errorf("sync group %q: want letters, digits, '_', '.', '-'", c.SyncGroup))
		}
		if len(c.Instances) < 2 {
			// keepalived's config test rejects it too.
			errs = append(errs, fmt.Errorf("sync group %q: needs at least 2 instances", c.SyncGroup))
		}
		fmt.Fprintf(&b, "vrrp_sync_group %s {\n\tgroup {\n", c.SyncGroup)
		for _, in := range c.Instances {
			fmt.Fprintf(&b, "\t\t%s\n", in.Name)
		}
		b.WriteString("\t}\n")
		errs = append(errs, renderNotify(&b, "sync group "+c.SyncGroup, c.NotifyMaster, c.NotifyBackup, c.NotifyFault)...)
		b.WriteString("}\n")
	} else if c.NotifyMaster != "" || c.NotifyBackup != "" || c.NotifyFault != "" {
		errs = append(errs, errors.New("group notify scripts need a SyncGroup"))
	}

	names := map[string]bool{}
	for _, in := range c.Instances {
		if names[in.Name] {
			errs = append(errs, fmt.Errorf("instance %q: duplicate name", in.Name))
		}
		names[in.Name] = true
		errs = append(errs, in.render(&b)...)
	}
	if c.Extra != "" {
		b.WriteString(c.Extra)
		b.WriteString("\n")
	}
	if err := errors.Join(errs...); err != nil {
		return "", fmt.Errorf("keepalived config: %w", err)
	}
	return b.String(), nil
}

func (in KeepalivedInstance) render(b *strings.Builder) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("instance %q: "+format, append([]any{in.Name}, args...)...))
	}
	if !keepalivedName.MatchString(in.Name) {
		fail("name: want letters, digits, '_', '.', '-'")
	}
	if !keepalivedName.MatchString(in.Interface) {
		fail("interface %q is not a valid name", in.Interface)
	}
	if in.VRID < 1 || in.VRID > 255 {
		fail("vrid %d out of 1..255", in.VRID)
	}
	if in.Priority < 1 || in.Priority > 255 {
		fail("priority %d out of 1..255", in.Priority)
	}
	version := in.Version
	if version == 0 {
		version = 3
	}
	if version != 2 && version != 3 {
		fail("version %d: want 2 or 3", in.Version)
	}
	advert := in.AdvertInterval
	if advert == 0 {
		advert = time.Second
	}
	switch {
	case advert < 10*time.Millisecond || advert%(10*time.Millisecond) != 0:
		fail("advert interval %v: want a positive multiple of 10ms", advert)
	case version == 2 && advert%time.Second != 0:
		fail("advert interval %v: VRRPv2 wants whole seconds", advert)
	}
	if len(in.VIPs) == 0 {
		fail("no VIP")
	}
	var vips, excluded []netip.Prefix
	for _, p := range in.VIPs {
		if !p.IsValid() {
			fail("invalid VIP")
			continue
		}
		if p.Addr().Is4() != in.VIPs[0].Addr().Is4() {
			excluded = append(excluded, p)
		} else {
			vips = append(vips, p)
		}
	}
	if version == 2 && len(vips) > 0 && vips[0].Addr().Is6() {
		fail("VRRPv2 has no IPv6")
	}

	fmt.Fprintf(b, "vrrp_instance %s {\n", in.Name)
	b.WriteString("\tstate BACKUP\n")
	fmt.Fprintf(b, "\tinterface %s\n", in.Interface)
	fmt.Fprintf(b, "\tvirtual_router_id %d\n", in.VRID)
	fmt.Fprintf(b, "\tpriority %d\n", in.Priority)
	fmt.Fprintf(b, "\tversion %d\n", version)
	fmt.Fprintf(b, "\tadvert_int %s\n", strconv.FormatFloat(advert.Seconds(), 'f', -1, 64))
	if in.NoPreempt {
		b.WriteString("\tnopreempt\n")
	}
	if in.UnicastSrc.IsValid() {
		fmt.Fprintf(b, "\tunicast_src_ip %s\n", in.UnicastSrc)
	}
	if len(in.UnicastPeers) > 0 {
		b.WriteString("\tunicast_peer {\n")
		for _, a := range in.UnicastPeers {
			fmt.Fprintf(b, "\t\t%s\n", a)
		}
		b.WriteString("\t}\n")
	}
	writeVIPs := func(block string, ps []netip.Prefix) {
		if len(ps) == 0 {
			return
		}
		fmt.Fprintf(b, "\t%s {\n", block)
		for _, p := range ps {
			fmt.Fprintf(b, "\t\t%s dev %s\n", p, in.Interface)
		}
		b.WriteString("\t}\n")
	}
	switch {
	case in.AuthType == "":
	case in.AuthType != "PASS" && in.AuthType != "AH":
		fail("auth type %q: want PASS or AH", in.AuthType)
	case !keepalivedName.MatchString(in.AuthPass):
		fail("auth pass %q: want letters, digits, '_', '.', '-'", in.AuthPass)
	default:
		fmt.Fprintf(b, "\tauthentication {\n\t\tauth_type %s\n\t\tauth_pass %s\n\t}\n", in.AuthType, in.AuthPass)
	}
	writeVIPs("virtual_ipaddress", vips)
	writeVIPs("virtual_ipaddress_excluded", excluded)
	errs = append(errs, renderNotify(b, "instance "+in.Name, in.NotifyMaster, in.NotifyBackup, in.NotifyFault)...)
	b.WriteString("}\n")
	return errs
}

// renderNotify writes the notify_* lines of an instance or group, quoted
// so a script can take arguments.
func renderNotify(b *strings.Builder, what, master, backup, fault string) []error {
	var errs []error
	for _, n := range []struct{ key, script string }{
		{"notify_master", master}, {"notify_backup", backup}, {"notify_fault", fault},
	} {
		if n.script == "" {
			continue
		}
		if strings.ContainsAny(n.script, "\"\n") {
			errs = append(errs, fmt.Errorf("%s: %s %q: no quotes or newlines", what, n.key, n.script))
			continue
		}
		fmt.Fprintf(b, "\t%s \"%s\"\n", n.key, n.script)
	}
	return errs
}

// StartKeepalived renders c into keepalived.conf in a new temp dir, checks
// it with `keepalived --config-test` in role's namespace (warnings fail
// too) and runs keepalived 2.2.7 in the foreground in role's namespace: VRRP only, logging
// to its console (the Proc's log), with its own pid files in that dir:
//
//	keepalived --dont-fork --log-console --log-detail --no-syslog --vrrp \
//		--use-file DIR/keepalived.conf --pid DIR/keepalived.pid \
//		--vrrp_pid DIR/vrrp.pid --checkers_pid DIR/checkers.pid
//
// keepalived forks a VRRP child; SIGTERM to the parent (Proc.Stop) stops
// both and removes the VIPs. Killing the parent alone also makes the child
// remove the VIPs; Proc.Kill kills the whole group, which leaves them in
// place, as a crash does.
func (l *Lab) StartKeepalived(t TB, role string, c KeepalivedConfig) *Proc {
	t.Helper()
	if c.RouterID == "" {
		c.RouterID = role
	}
	conf, err := c.Render()
	if err != nil {
		t.Fatalf("lab: start keepalived in %s: %v", role, err)
		return nil
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatalf("lab: start keepalived in %s: write config: %v", role, err)
		return nil
	}
	// keepalived starts with a bad config and logs; fail at once instead.
	if out, err := l.ExecTimeout(10*time.Second, role, "keepalived", "--config-test", "--use-file", path); err != nil {
		t.Fatalf("lab: start keepalived in %s: config test: %v\n%s", role, err, out)
		return nil
	}
	return l.startIn(t, dir, role, "keepalived-"+role,
		"keepalived",
		"--dont-fork", "--log-console", "--log-detail", "--no-syslog", "--vrrp",
		"--use-file", path,
		"--pid", filepath.Join(dir, "keepalived.pid"),
		"--vrrp_pid", filepath.Join(dir, "vrrp.pid"),
		"--checkers_pid", filepath.Join(dir, "checkers.pid"),
	)
}
