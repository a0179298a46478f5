package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ConntrackdConfig is rendered into a conntrackd.conf by Render. The zero
// value, given a firewall role, is conntrackd's classic primary-backup
// setup: FTFW over UDP on the sync link, with the external cache.
type ConntrackdConfig struct {
	Mode      string // "FTFW" (default), "ALARM" or "NOTRACK"
	Transport string // "UDP" (default) or "TCP"
	// LocalAddr and PeerAddr are the sync link addresses; zero means the
	// role's own and its peer's (10.10.3.1 and 10.10.3.2).
	LocalAddr, PeerAddr netip.Addr
	Interface           string // default "sync"
	Port                int    // default 3780

	DisableExternalCache bool          // inject into the kernel table at once
	DisableInternalCache bool          // NOTRACK only
	StartupResync        bool          // FTFW and NOTRACK: ask the peer for a resync at start
	CommitTimeout        time.Duration // 0: conntrackd's estimate
	PurgeTimeout         time.Duration // 0: conntrackd's default (60 s)
	RefreshTime          time.Duration // ALARM; 0 means 15 s
	CacheTimeout         time.Duration // ALARM; 0 means 180 s

	// Protocols accepted by the event filter; nil means TCP and UDP.
	Protocols []string
	// IgnoreAddrs are the addresses whose flows are not replicated
	// (Filter Address Ignore); nil means loopback, the role's own
	// addresses and the four VIPs: only forwarded flows are replicated.
	IgnoreAddrs []netip.Prefix

	NetlinkBufferSize          int // bytes; 0 means 8 MiB
	NetlinkBufferSizeMaxGrowth int // bytes; 0 means 64 MiB

	// SchedulerFIFO, if above 0, is General { Scheduler { Type FIFO;
	// Priority N } }: conntrackd runs at that realtime priority.
	SchedulerFIFO int
}

// withDefaults fills the zero fields for a firewall role.
func (c ConntrackdConfig) withDefaults(role string) ConntrackdConfig {
	if c.Mode == "" {
		c.Mode = "FTFW"
	}
	if c.Transport == "" {
		c.Transport = "UDP"
	}
	local, peer := FW1Sync.Addr(), FW2Sync.Addr()
	if role == RoleFW2 {
		local, peer = peer, local
	}
	if !c.LocalAddr.IsValid() && (role == RoleFW1 || role == RoleFW2) {
		c.LocalAddr = local
	}
	if !c.PeerAddr.IsValid() && (role == RoleFW1 || role == RoleFW2) {
		c.PeerAddr = peer
	}
	if c.Interface == "" {
		c.Interface = "sync"
	}
	if c.Port == 0 {
		c.Port = 3780
	}
	if c.Mode == "ALARM" && c.RefreshTime == 0 {
		c.RefreshTime = 15 * time.Second
	}
	if c.Mode == "ALARM" && c.CacheTimeout == 0 {
		c.CacheTimeout = 180 * time.Second
	}
	if c.Protocols == nil {
		c.Protocols = []string{"TCP", "UDP"}
	}
	if c.IgnoreAddrs == nil {
		c.IgnoreAddrs = []netip.Prefix{
			netip.MustParsePrefix("127.0.0.1/32"),
			netip.MustParsePrefix("::1/128"),
		}
		for _, p := range append(HostAddrs(role), LANVIP, WANVIP, LANVIP6, WANVIP6) {
			c.IgnoreAddrs = append(c.IgnoreAddrs, netip.PrefixFrom(p.Addr(), p.Addr().BitLen()))
		}
	}
	if c.NetlinkBufferSize == 0 {
		c.NetlinkBufferSize = 8 << 20
	}
	if c.NetlinkBufferSizeMaxGrowth == 0 {
		c.NetlinkBufferSizeMaxGrowth = 64 << 20
	}
	return c
}

// Render returns the conntrackd.conf text for a daemon of role whose lock
// file and control socket live in dir, or every problem it found.
func (c ConntrackdConfig) Render(role, dir string) (string, error) {
	c = c.withDefaults(role)
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	var b strings.Builder
	b.WriteString("Sync {\n")
	fmt.Fprintf(&b, "\tMode %s {\n", c.Mode)
	switch c.Mode {
	case "FTFW":
		writeBool(&b, "\t\tDisableExternalCache", c.DisableExternalCache)
		writeBool(&b, "\t\tStartupResync", c.StartupResync)
	case "NOTRACK":
		writeBool(&b, "\t\tDisableInternalCache", c.DisableInternalCache)
		writeBool(&b, "\t\tDisableExternalCache", c.DisableExternalCache)
		writeBool(&b, "\t\tStartupResync", c.StartupResync)
	case "ALARM":
		fmt.Fprintf(&b, "\t\tRefreshTime %d\n", seconds(c.RefreshTime))
		fmt.Fprintf(&b, "\t\tCacheTimeout %d\n", seconds(c.CacheTimeout))
		if c.DisableExternalCache || c.DisableInternalCache || c.StartupResync {
			fail("mode ALARM has no DisableExternalCache, DisableInternalCache or StartupResync")
		}
	default:
		fail("mode %q: want FTFW, ALARM or NOTRACK", c.Mode)
	}
	if c.DisableInternalCache && c.Mode != "NOTRACK" {
		fail("DisableInternalCache needs mode NOTRACK")
	}
	if c.CommitTimeout > 0 {
		fmt.Fprintf(&b, "\t\tCommitTimeout %d\n", seconds(c.CommitTimeout))
	}
	if c.PurgeTimeout > 0 {
		fmt.Fprintf(&b, "\t\tPurgeTimeout %d\n", seconds(c.PurgeTimeout))
	}
	b.WriteString("\t}\n")

	if c.Transport != "UDP" && c.Transport != "TCP" {
		fail("transport %q: want UDP or TCP", c.Transport)
	}
	family := "IPv4"
	switch {
	case !c.LocalAddr.IsValid() || !c.PeerAddr.IsValid():
		fail("sync addresses: LocalAddr and PeerAddr are required for role %q", role)
	case c.LocalAddr.Is6() != c.PeerAddr.Is6():
		fail("sync addresses %v and %v: families differ", c.LocalAddr, c.PeerAddr)
	case c.LocalAddr.Is6():
		family = "IPv6"
	}
	if c.Port < 1 || c.Port > 65535 {
		fail("port %d out of 1..65535", c.Port)
	}
	fmt.Fprintf(&b, "\t%s {\n", c.Transport)
	fmt.Fprintf(&b, "\t\t%s_address %s\n", family, c.LocalAddr)
	fmt.Fprintf(&b, "\t\t%s_Destination_Address %s\n", family, c.PeerAddr)
	fmt.Fprintf(&b, "\t\tPort %d\n", c.Port)
	fmt.Fprintf(&b, "\t\tInterface %s\n", c.Interface)
	b.WriteString("\t\tSndSocketBuffer 4194304\n")
	b.WriteString("\t\tRcvSocketBuffer 4194304\n")
	b.WriteString("\t\tChecksum on\n")
	b.WriteString("\t}\n")
	b.WriteString("}\n")

	b.WriteString("General {\n")
	b.WriteString("\tSystemd off\n")
	b.WriteString("\tLogFile off\n")
	b.WriteString("\tSyslog off\n")
	b.WriteString("\tHashSize 65536\n")
	b.WriteString("\tHashLimit 524288\n") // twice nf_conntrack_max
	// Never the defaults /var/lock/conntrack.lock and /var/run/conntrackd.ctl.
	fmt.Fprintf(&b, "\tLockFile %s\n", filepath.Join(dir, "conntrackd.lock"))
	fmt.Fprintf(&b, "\tUNIX {\n\t\tPath %s\n\t}\n", filepath.Join(dir, "conntrackd.ctl"))
	fmt.Fprintf(&b, "\tNetlinkBufferSize %d\n", c.NetlinkBufferSize)
	fmt.Fprintf(&b, "\tNetlinkBufferSizeMaxGrowth %d\n", c.NetlinkBufferSizeMaxGrowth)
	switch {
	case c.SchedulerFIFO > 99:
		fail("scheduler priority %d: want 1..99", c.SchedulerFIFO)
	case c.SchedulerFIFO > 0:
		fmt.Fprintf(&b, "\tScheduler {\n\t\tType FIFO\n\t\tPriority %d\n\t}\n", c.SchedulerFIFO)
	}
	b.WriteString("\tFilter From Userspace {\n")
	b.WriteString("\t\tProtocol Accept {\n")
	known := []string{"TCP", "UDP", "SCTP", "DCCP", "ICMP", "IPv6-ICMP"}
	for _, p := range c.Protocols {
		if !slices.Contains(known, p) {
			fail("protocol %q: want one of %v", p, known)
		}
		fmt.Fprintf(&b, "\t\t\t%s\n", p)
	}
	b.WriteString("\t\t}\n")
	b.WriteString("\t\tAddress Ignore {\n")
	for _, p := range c.IgnoreAddrs {
		if !p.IsValid() {
			fail("invalid ignore address")
			continue
		}
		family, addr := "IPv4", p.Masked().String()
		if p.Addr().Is6() {
			family = "IPv6"
		}
		if p.IsSingleIP() {
			addr = p.Addr().String()
		}
		fmt.Fprintf(&b, "\t\t\t%s_address %s\n", family, addr)
	}
	b.WriteString("\t\t}\n")
	b.WriteString("\t}\n")
	b.WriteString("}\n")

	if err := errors.Join(errs...); err != nil {
		return "", fmt.Errorf("conntrackd config: %w", err)
	}
	return b.String(), nil
}

func writeBool(b *strings.Builder, key string, v bool) {
	if v {
		fmt.Fprintf(b, "%s on\n", key)
	} else {
		fmt.Fprintf(b, "%s off\n", key)
	}
}

// seconds rounds d up to whole seconds, as conntrackd counts.
func seconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

// Conntrackd is a conntrackd daemon running in the lab.
type Conntrackd struct {
	*Proc
	ConfigPath string

	lab *Lab
}

// StartConntrackd renders c into conntrackd.conf in a new temp dir, with
// the lock file and control socket in that dir, runs `conntrackd -C conf`
// in the foreground in role's namespace and waits (up to 10 s) until it
// answers on its control socket.
//
// conntrackd refuses to start while its lock file exists, and only SIGTERM
// removes it: after Proc.Kill, start a new daemon (it gets a new dir)
// rather than reusing the old config.
func (l *Lab) StartConntrackd(t TB, role string, c ConntrackdConfig) *Conntrackd {
	t.Helper()
	dir := t.TempDir()
	conf, err := c.Render(role, dir)
	if err != nil {
		t.Fatalf("lab: start conntrackd in %s: %v", role, err)
		return nil
	}
	path := filepath.Join(dir, "conntrackd.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatalf("lab: start conntrackd in %s: write config: %v", role, err)
		return nil
	}
	p := l.startIn(t, dir, role, "conntrackd-"+role, "conntrackd", "-C", path)
	d := &Conntrackd{Proc: p, ConfigPath: path, lab: l}
	if err := d.WaitReady(10 * time.Second); err != nil {
		t.Fatalf("lab: start conntrackd in %s: %v\n%s", role, err, p.Tail(logTailLines))
		return nil
	}
	return d
}

// Ctl runs `conntrackd -C conf args...` in the daemon's namespace, for
// example -s (stats), -i / -e (internal / external cache), -c (commit),
// -f (flush caches), -R (resync with the kernel), -B (bulk send), -n
// (request a resync from the peer), -t (purge timer), -k (kill).
func (c *Conntrackd) Ctl(args ...string) (string, error) {
	out, err := c.lab.Exec(c.Role, append([]string{"conntrackd", "-C", c.ConfigPath}, args...)...)
	if err != nil {
		return out, fmt.Errorf("conntrackd ctl in %s: %w", c.Role, err)
	}
	return out, nil
}

// WaitReady waits until the daemon answers `conntrackd -s`.
func (c *Conntrackd) WaitReady(timeout time.Duration) error {
	err := WaitFor(timeout, 50*time.Millisecond, func() (bool, error) {
		if c.Exited() {
			return true, nil // reported below
		}
		_, err := c.Ctl("-s")
		return err == nil, err
	})
	if c.Exited() {
		return fmt.Errorf("wait for %s: exited: %v", c.Name, c.Wait())
	}
	if err != nil {
		return fmt.Errorf("wait for %s: %w", c.Name, err)
	}
	return nil
}
