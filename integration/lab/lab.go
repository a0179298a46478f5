package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Roles of the lab's namespaces.
const (
	RoleSwitch = "sw"  // holds the bridges "lan" and "wan"
	RoleFW1    = "fw1" // first firewall: interfaces lan, wan, sync
	RoleFW2    = "fw2" // second firewall: interfaces lan, wan, sync
	RoleClient = "cl"  // client on the LAN: eth0
	RoleServer = "srv" // server on the WAN: eth0
	// RoleFW3 is the third firewall (Options.ThirdFirewall): interfaces
	// lan, wan, sync. It is not in Roles: the default lab has none.
	RoleFW3 = "fw3"
)

// Roles lists every role of the default lab, in the order the lab builds
// them; [Options].ThirdFirewall adds RoleFW3 after RoleFW2.
var Roles = []string{RoleSwitch, RoleFW1, RoleFW2, RoleClient, RoleServer}

// Firewalls returns the lab's firewall roles: fw1 and fw2, and fw3 with
// Options.ThirdFirewall.
func (l *Lab) Firewalls() []string {
	if l.opts.ThirdFirewall {
		return []string{RoleFW1, RoleFW2, RoleFW3}
	}
	return []string{RoleFW1, RoleFW2}
}

// roles lists the lab's roles in the order it builds them.
func (l *Lab) roles() []string {
	if !l.opts.ThirdFirewall {
		return Roles
	}
	return []string{RoleSwitch, RoleFW1, RoleFW2, RoleFW3, RoleClient, RoleServer}
}

// Addresses of the lab (spec/lab.md), with the prefix length they are
// configured with. The VIPs are not configured by the lab.
var (
	LANVIP  = netip.MustParsePrefix("10.10.1.1/24")
	WANVIP  = netip.MustParsePrefix("10.10.2.1/24")
	LANVIP6 = netip.MustParsePrefix("fd00:10:1::1/64")
	WANVIP6 = netip.MustParsePrefix("fd00:10:2::1/64")

	ClientAddr  = netip.MustParsePrefix("10.10.1.100/24")
	ServerAddr  = netip.MustParsePrefix("10.10.2.100/24")
	ClientAddr6 = netip.MustParsePrefix("fd00:10:1::100/64")
	ServerAddr6 = netip.MustParsePrefix("fd00:10:2::100/64")

	FW1LAN   = netip.MustParsePrefix("10.10.1.2/24")
	FW1WAN   = netip.MustParsePrefix("10.10.2.2/24")
	FW1Sync  = netip.MustParsePrefix("10.10.3.1/24")
	FW2LAN   = netip.MustParsePrefix("10.10.1.3/24")
	FW2WAN   = netip.MustParsePrefix("10.10.2.3/24")
	FW2Sync  = netip.MustParsePrefix("10.10.3.2/24")
	FW1LAN6  = netip.MustParsePrefix("fd00:10:1::2/64")
	FW1WAN6  = netip.MustParsePrefix("fd00:10:2::2/64")
	FW1Sync6 = netip.MustParsePrefix("fd00:10:3::1/64")
	FW2LAN6  = netip.MustParsePrefix("fd00:10:1::3/64")
	FW2WAN6  = netip.MustParsePrefix("fd00:10:2::3/64")
	FW2Sync6 = netip.MustParsePrefix("fd00:10:3::2/64")

	// The second sync link (Options.SecondSyncLink), interface "sync2".
	FW1Sync2  = netip.MustParsePrefix("10.10.4.1/24")
	FW2Sync2  = netip.MustParsePrefix("10.10.4.2/24")
	FW1Sync26 = netip.MustParsePrefix("fd00:10:4::1/64")
	FW2Sync26 = netip.MustParsePrefix("fd00:10:4::2/64")

	// The split VIPs (Options.SplitVIPs): a second pair of gateway VIPs
	// and the server's second address, whose traffic they carry.
	LANVIPB     = netip.MustParsePrefix("10.10.1.254/24")
	WANVIPB     = netip.MustParsePrefix("10.10.2.254/24")
	ServerAddrB = netip.MustParsePrefix("10.10.2.101/24")

	// The third firewall (Options.ThirdFirewall). Its sync interface
	// and those of fw1 and fw2 share one segment (the bridge "sync" in
	// the switch namespace) instead of the direct cable, with the same
	// addresses for fw1 and fw2.
	FW3LAN   = netip.MustParsePrefix("10.10.1.4/24")
	FW3WAN   = netip.MustParsePrefix("10.10.2.4/24")
	FW3Sync  = netip.MustParsePrefix("10.10.3.3/24")
	FW3LAN6  = netip.MustParsePrefix("fd00:10:1::4/64")
	FW3WAN6  = netip.MustParsePrefix("fd00:10:2::4/64")
	FW3Sync6 = netip.MustParsePrefix("fd00:10:3::3/64")

	// The third pair of gateway VIPs and the server's third address
	// (Options.SplitVIPs with Options.ThirdFirewall), as LANVIPB,
	// WANVIPB and ServerAddrB are the second.
	LANVIPC     = netip.MustParsePrefix("10.10.1.253/24")
	WANVIPC     = netip.MustParsePrefix("10.10.2.253/24")
	ServerAddrC = netip.MustParsePrefix("10.10.2.102/24")
)

// DefaultRuleset is the strict firewall ruleset of spec/lab.md, loaded in
// fw1 and fw2 unless [Options] says otherwise.
const DefaultRuleset = `table inet fw {
	chain forward {
		type filter hook forward priority 0; policy drop;
		ct state established,related accept
		iifname "lan" tcp dport 5001 ct state new tcp flags syn accept
		meta l4proto { icmp, ipv6-icmp } accept
		ct state invalid counter drop
	}
}
`

// Options for [New]. The zero value builds the full lab of spec/lab.md.
type Options struct {
	NoIPv6    bool   // configure IPv4 addresses and routes only
	NoRuleset bool   // load no nftables ruleset in the firewalls
	Ruleset   string // ruleset for fw1 and fw2; empty means DefaultRuleset
	// SecondSyncLink adds a second sync cable between fw1 and fw2:
	// interface "sync2", FW1Sync2/FW2Sync2 (and the IPv6 ones).
	SecondSyncLink bool
	// SplitVIPs routes part of the traffic through a second pair of
	// gateway VIPs, LANVIPB and WANVIPB, for active-active tests (IPv4
	// only): the server gets a second address, ServerAddrB; the client
	// reaches it via LANVIPB, and the server answers from it via WANVIPB
	// (a rule on that source address, routing table SplitTable). Traffic
	// to ServerAddr keeps LANVIP and WANVIP. Which firewall holds which
	// VIP is the business of the daemons under test, so one flow's both
	// directions cross the same firewall as long as each pair of VIPs
	// (LANVIP and WANVIP, LANVIPB and WANVIPB) moves together.
	SplitVIPs bool
	// ThirdFirewall adds a third firewall, RoleFW3, with FW3LAN and
	// FW3WAN on the LAN and WAN bridges, the same sysctls and ruleset as
	// the others, and puts the sync interfaces of all three on one
	// segment, a bridge "sync" in the switch namespace (FW1Sync, FW2Sync,
	// FW3Sync, and the IPv6 ones), instead of the direct cable. With
	// SplitVIPs, a third pair of gateway VIPs, LANVIPC and WANVIPC,
	// carries the traffic to ServerAddrC (routing table SplitTableC).
	// SecondSyncLink, if also set, stays a cable between fw1 and fw2.
	ThirdFirewall bool
}

// SplitTable is the server's routing table of the traffic from
// ServerAddrB (Options.SplitVIPs); SplitTableC that from ServerAddrC
// (with Options.ThirdFirewall).
const (
	SplitTable  = 100
	SplitTableC = 101
)

// Lab is one instance of the topology; its namespaces are named
// Prefix+"-"+role.
type Lab struct {
	Prefix string // unique per lab, e.g. "ct3fa9c2"

	opts      Options
	closeOnce sync.Once
	closeErr  error

	mu         sync.Mutex // guards the fields below
	namespaces []string   // created so far, in creation order
	procs      []*Proc    // started so far, in start order
	closed     bool
}

// veth is one cable of the topology. If bridge is set, end b is in the
// switch namespace and is enslaved to that bridge.
type veth struct {
	roleA, ifA string
	roleB, ifB string
	bridge     string
}

var veths = []veth{
	{RoleFW1, "lan", RoleSwitch, "fw1-lan", "lan"},
	{RoleFW1, "wan", RoleSwitch, "fw1-wan", "wan"},
	{RoleFW2, "lan", RoleSwitch, "fw2-lan", "lan"},
	{RoleFW2, "wan", RoleSwitch, "fw2-wan", "wan"},
	{RoleClient, "eth0", RoleSwitch, "cl-eth0", "lan"},
	{RoleServer, "eth0", RoleSwitch, "srv-eth0", "wan"},
	{RoleFW1, "sync", RoleFW2, "sync", ""},
}

// The second sync cable and its addresses (Options.SecondSyncLink).
var (
	sync2Veth  = veth{RoleFW1, "sync2", RoleFW2, "sync2", ""}
	sync2Addrs = []ifaddr{
		{RoleFW1, "sync2", FW1Sync2, FW1Sync26},
		{RoleFW2, "sync2", FW2Sync2, FW2Sync26},
	}
)

// The third firewall's cables and addresses (Options.ThirdFirewall): its
// LAN and WAN ports, and the sync segment that replaces the direct cable.
var (
	fw3Veths = []veth{
		{RoleFW3, "lan", RoleSwitch, "fw3-lan", "lan"},
		{RoleFW3, "wan", RoleSwitch, "fw3-wan", "wan"},
	}
	syncSegment = []veth{
		{RoleFW1, "sync", RoleSwitch, "fw1-sync", "sync"},
		{RoleFW2, "sync", RoleSwitch, "fw2-sync", "sync"},
		{RoleFW3, "sync", RoleSwitch, "fw3-sync", "sync"},
	}
	fw3Addrs = []ifaddr{
		{RoleFW3, "lan", FW3LAN, FW3LAN6},
		{RoleFW3, "wan", FW3WAN, FW3WAN6},
		{RoleFW3, "sync", FW3Sync, FW3Sync6},
	}
)

// ifaddr is an interface's configured addresses.
type ifaddr struct {
	role, ifname string
	v4, v6       netip.Prefix
}

var ifaddrs = []ifaddr{
	{RoleFW1, "lan", FW1LAN, FW1LAN6},
	{RoleFW1, "wan", FW1WAN, FW1WAN6},
	{RoleFW1, "sync", FW1Sync, FW1Sync6},
	{RoleFW2, "lan", FW2LAN, FW2LAN6},
	{RoleFW2, "wan", FW2WAN, FW2WAN6},
	{RoleFW2, "sync", FW2Sync, FW2Sync6},
	{RoleClient, "eth0", ClientAddr, ClientAddr6},
	{RoleServer, "eth0", ServerAddr, ServerAddr6},
}

// HostAddrs returns the addresses the lab configures on role's interfaces
// (IPv4 and IPv6, whatever Options.NoIPv6 says), not counting VIPs.
func HostAddrs(role string) []netip.Prefix {
	var addrs []netip.Prefix
	for _, a := range slices.Concat(ifaddrs, fw3Addrs) {
		if a.role == role {
			addrs = append(addrs, a.v4, a.v6)
		}
	}
	return addrs
}

// New builds the lab, registers a cleanup that removes it (stopping its
// processes first) and calls t.Fatalf, after removing what it had built,
// on any error.
func New(t TB, opts Options) *Lab {
	t.Helper()
	prefix, err := newPrefix()
	if err != nil {
		t.Fatalf("lab: %v", err)
		return nil
	}
	l := &Lab{Prefix: prefix, opts: opts}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Fatalf("lab %s: %v", l.Prefix, err)
		}
	})
	if err := l.build(); err != nil {
		cerr := l.Close()
		t.Fatalf("lab %s: build: %v", l.Prefix, errors.Join(err, cerr))
		return nil
	}
	return l
}

// NS returns the full namespace name of a role: "sw", "fw1", "fw2", "fw3",
// "cl" or "srv".
func (l *Lab) NS(role string) string { return l.Prefix + "-" + role }

// veths lists the lab's cables, as its options have them.
func (l *Lab) veths() []veth {
	vs := slices.Clone(veths)
	if l.opts.ThirdFirewall {
		vs = slices.DeleteFunc(vs, func(v veth) bool { return v.ifA == "sync" })
		vs = slices.Concat(vs, fw3Veths, syncSegment)
	}
	if l.opts.SecondSyncLink {
		vs = append(vs, sync2Veth)
	}
	return vs
}

// ifaddrs lists the lab's interface addresses, as its options have them.
func (l *Lab) ifaddrs() []ifaddr {
	as := slices.Clone(ifaddrs)
	if l.opts.ThirdFirewall {
		as = append(as, fw3Addrs...)
	}
	if l.opts.SecondSyncLink {
		as = append(as, sync2Addrs...)
	}
	return as
}

func (l *Lab) build() error {
	for _, role := range l.roles() {
		if err := l.addNamespace(role); err != nil {
			return err
		}
	}
	bridges := []string{"lan", "wan"}
	if l.opts.ThirdFirewall {
		bridges = append(bridges, "sync")
	}
	for _, br := range bridges {
		// VRRP and IPv6 ND multicast must reach every port.
		if err := ip(l.NS(RoleSwitch), "link", "add", br, "type", "bridge", "mcast_snooping", "0"); err != nil {
			return fmt.Errorf("add bridge %s: %w", br, err)
		}
		if err := ip(l.NS(RoleSwitch), "link", "set", br, "up"); err != nil {
			return fmt.Errorf("bring up bridge %s: %w", br, err)
		}
	}
	for _, v := range l.veths() {
		if err := l.addVeth(v); err != nil {
			return err
		}
	}
	for _, a := range l.ifaddrs() {
		if err := l.addAddrs(a); err != nil {
			return err
		}
	}
	if err := l.addRoutes(); err != nil {
		return err
	}
	if l.opts.SplitVIPs {
		if err := l.addSplitRoutes(); err != nil {
			return err
		}
	}
	for _, fw := range l.Firewalls() {
		if err := l.setupFirewall(fw); err != nil {
			return err
		}
	}
	return nil
}

// addNamespace creates role's namespace, brings lo up and sets the sysctls
// that new interfaces must inherit, before any interface is created.
func (l *Lab) addNamespace(role string) error {
	ns := l.NS(role)
	if err := addNetns(ns); err != nil {
		return err
	}
	l.mu.Lock()
	l.namespaces = append(l.namespaces, ns)
	l.mu.Unlock()
	if err := ip(ns, "link", "set", "lo", "up"); err != nil {
		return fmt.Errorf("bring up lo in %s: %w", ns, err)
	}
	settings := []string{
		// Addresses usable at once, and kept when a link goes down
		// and up again (SetLink).
		"net.ipv6.conf.all.accept_dad=0",
		"net.ipv6.conf.default.accept_dad=0",
		"net.ipv6.conf.all.keep_addr_on_down=1",
		"net.ipv6.conf.default.keep_addr_on_down=1",
	}
	if role == RoleSwitch {
		// The switch forwards frames; it has no IP business.
		settings = append(settings,
			"net.ipv6.conf.all.disable_ipv6=1",
			"net.ipv6.conf.default.disable_ipv6=1")
	}
	if err := sysctl(ns, settings...); err != nil {
		return fmt.Errorf("set sysctls in %s: %w", ns, err)
	}
	return nil
}

// addVeth creates a veth pair directly inside the lab's namespaces, so
// nothing ever appears in the host namespace.
func (l *Lab) addVeth(v veth) error {
	nsA, nsB := l.NS(v.roleA), l.NS(v.roleB)
	if err := ip(nsA, "link", "add", v.ifA, "type", "veth", "peer", "name", v.ifB, "netns", nsB); err != nil {
		return fmt.Errorf("add veth %s/%s-%s/%s: %w", v.roleA, v.ifA, v.roleB, v.ifB, err)
	}
	if v.bridge != "" {
		if err := ip(nsB, "link", "set", v.ifB, "master", v.bridge); err != nil {
			return fmt.Errorf("enslave %s to bridge %s: %w", v.ifB, v.bridge, err)
		}
	}
	if err := ip(nsA, "link", "set", v.ifA, "up"); err != nil {
		return fmt.Errorf("bring up %s/%s: %w", v.roleA, v.ifA, err)
	}
	if err := ip(nsB, "link", "set", v.ifB, "up"); err != nil {
		return fmt.Errorf("bring up %s/%s: %w", v.roleB, v.ifB, err)
	}
	return nil
}

func (l *Lab) addAddrs(a ifaddr) error {
	ns := l.NS(a.role)
	if err := ip(ns, "addr", "add", a.v4.String(), "dev", a.ifname); err != nil {
		return fmt.Errorf("add %v to %s/%s: %w", a.v4, a.role, a.ifname, err)
	}
	if l.opts.NoIPv6 {
		return nil
	}
	if err := ip(ns, "addr", "add", a.v6.String(), "dev", a.ifname, "nodad"); err != nil {
		return fmt.Errorf("add %v to %s/%s: %w", a.v6, a.role, a.ifname, err)
	}
	return nil
}

// addRoutes points the client and the server at the VIPs.
func (l *Lab) addRoutes() error {
	routes := []struct {
		role string
		via  netip.Prefix
	}{
		{RoleClient, LANVIP}, {RoleServer, WANVIP},
		{RoleClient, LANVIP6}, {RoleServer, WANVIP6},
	}
	for _, r := range routes {
		if r.via.Addr().Is6() && l.opts.NoIPv6 {
			continue
		}
		family := "-4"
		if r.via.Addr().Is6() {
			family = "-6"
		}
		if err := ip(l.NS(r.role), family, "route", "add", "default", "via", r.via.Addr().String()); err != nil {
			return fmt.Errorf("add default route via %v in %s: %w", r.via.Addr(), r.role, err)
		}
	}
	return nil
}

// addSplitRoutes gives the server ServerAddrB, answered via WANVIPB, and
// routes the client's traffic to it via LANVIPB (Options.SplitVIPs); with
// a third firewall, ServerAddrC the same way via LANVIPC and WANVIPC.
func (l *Lab) addSplitRoutes() error {
	srv, cl := l.NS(RoleServer), l.NS(RoleClient)
	table := fmt.Sprint(SplitTable)
	steps := []struct {
		ns   string
		args []string
	}{
		{srv, []string{"addr", "add", ServerAddrB.String(), "dev", "eth0"}},
		{srv, []string{"route", "add", ServerAddrB.Masked().String(), "dev", "eth0", "src", ServerAddrB.Addr().String(), "table", table}},
		{srv, []string{"route", "add", "default", "via", WANVIPB.Addr().String(), "table", table}},
		{srv, []string{"rule", "add", "from", ServerAddrB.Addr().String(), "table", table}},
		{cl, []string{"route", "add", ServerAddrB.Addr().String() + "/32", "via", LANVIPB.Addr().String()}},
	}
	if l.opts.ThirdFirewall {
		tableC := fmt.Sprint(SplitTableC)
		steps = append(steps, []struct {
			ns   string
			args []string
		}{
			{srv, []string{"addr", "add", ServerAddrC.String(), "dev", "eth0"}},
			{srv, []string{"route", "add", ServerAddrC.Masked().String(), "dev", "eth0", "src", ServerAddrC.Addr().String(), "table", tableC}},
			{srv, []string{"route", "add", "default", "via", WANVIPC.Addr().String(), "table", tableC}},
			{srv, []string{"rule", "add", "from", ServerAddrC.Addr().String(), "table", tableC}},
			{cl, []string{"route", "add", ServerAddrC.Addr().String() + "/32", "via", LANVIPC.Addr().String()}},
		}...)
	}
	for _, s := range steps {
		if err := ip(s.ns, s.args...); err != nil {
			return fmt.Errorf("split VIPs: %w", err)
		}
	}
	return nil
}

// setupFirewall sets the forwarding and conntrack sysctls of a firewall and
// loads its ruleset.
func (l *Lab) setupFirewall(role string) error {
	ns := l.NS(role)
	err := sysctl(ns,
		"net.ipv4.ip_forward=1",
		"net.ipv6.conf.all.forwarding=1",
		"net.netfilter.nf_conntrack_tcp_loose=0",
		"net.netfilter.nf_conntrack_tcp_be_liberal=0",
		"net.netfilter.nf_conntrack_events=1",
	)
	if err != nil {
		return fmt.Errorf("set firewall sysctls in %s: %w", ns, err)
	}
	if l.opts.NoRuleset {
		return nil
	}
	ruleset := l.opts.Ruleset
	if ruleset == "" {
		ruleset = DefaultRuleset
	}
	if err := l.Nft(role, ruleset); err != nil {
		return fmt.Errorf("load ruleset: %w", err)
	}
	return nil
}

// Close stops the lab's processes (by pid) and deletes its namespaces. It
// is idempotent and safe for concurrent use; the cleanup registered by New
// calls it.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() { l.closeErr = l.close() })
	return l.closeErr
}

func (l *Lab) close() error {
	l.mu.Lock()
	l.closed = true
	procs := slices.Clone(l.procs)
	namespaces := slices.Clone(l.namespaces)
	l.mu.Unlock()

	var errs []error
	for _, p := range slices.Backward(procs) {
		// An exit error is the process's business, not a cleanup
		// failure; a process that does not die is.
		_ = p.Stop(5 * time.Second)
		if !p.Exited() {
			errs = append(errs, fmt.Errorf("stop %s (pid %d): still running", p.Name, p.Pid()))
		}
	}
	for _, ns := range slices.Backward(namespaces) {
		if err := delNetns(ns); err != nil {
			errs = append(errs, fmt.Errorf("delete namespace: %w", err))
		}
	}
	left, err := listNetns(l.Prefix)
	if err != nil {
		errs = append(errs, fmt.Errorf("list namespaces: %w", err))
	} else if len(left) > 0 {
		errs = append(errs, fmt.Errorf("namespaces left after cleanup: %v", left))
	}
	return errors.Join(errs...)
}

// RecreateLink deletes role's interface ifname (a veth: its other end
// goes with it), waits gone, and creates it again as the lab built it,
// addresses included, as ifupdown or networkd do when they rebuild a VLAN
// or a bond: the interface comes back under its name with a new index.
func (l *Lab) RecreateLink(role, ifname string, gone time.Duration) error {
	vs := l.veths()
	i := slices.IndexFunc(vs, func(v veth) bool {
		return v.roleA == role && v.ifA == ifname || v.roleB == role && v.ifB == ifname
	})
	if i < 0 {
		return fmt.Errorf("lab: no interface %s in %s", ifname, role)
	}
	v := vs[i]
	if err := ip(l.NS(role), "link", "del", ifname); err != nil {
		return fmt.Errorf("delete %s/%s: %w", role, ifname, err)
	}
	time.Sleep(gone)
	if err := l.addVeth(v); err != nil {
		return err
	}
	for _, a := range l.ifaddrs() {
		if a.role == v.roleA && a.ifname == v.ifA || a.role == v.roleB && a.ifname == v.ifB {
			if err := l.addAddrs(a); err != nil {
				return err
			}
		}
	}
	return nil
}
