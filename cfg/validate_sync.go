package cfg

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ctha/ctha/ctsync/auth"
	"github.com/hashicorp/hcl/v2"
)

// MaxLinks is the most sync links a node may have.
const MaxLinks = 4

// Protocols the filter knows, as conntrack names them.
var filterProtocols = []string{"tcp", "udp", "udplite", "icmp", "icmpv6", "sctp", "dccp", "gre"}

// TCP states as conntrack names them.
var tcpStates = []string{"SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
	"LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

func (v *validator) sync(s *syncSyntax) Sync {
	c := Sync{
		Mode:               DefaultSyncMode,
		Cache:              DefaultCacheMode,
		Topology:           DefaultTopology,
		Protocol:           DefaultSyncProtocol,
		InsecureNoAuth:     boolOr(s.InsecureNoAuth, false),
		TCPWindowTracking:  boolOr(s.TCPWindowTracking, false),
		Expectations:       boolOr(s.Expectations, DefaultExpectations),
		CommitTimeout:      v.duration(s.CommitTimeout, "commit_timeout", DefaultCommitTimeout, positive),
		PurgeDelay:         v.duration(s.PurgeDelay, "purge_delay", DefaultPurgeDelay, positive),
		StartupSyncTimeout: v.duration(s.StartupSyncTimeout, "startup_sync_timeout", DefaultStartupSyncTimeout, positive),
		RefreshInterval:    v.duration(s.RefreshInterval, "refresh_interval", DefaultRefreshInterval, positive),
		CacheTimeout:       v.duration(s.CacheTimeout, "cache_timeout", DefaultCacheTimeout, positive),
		Filter:             v.filter(s.Filter),
	}
	if s.Mode.ok() {
		if !oneOf(s.Mode.Val, ModeReliable, ModeAlarm) {
			v.errorf(s.Mode.Range, "mode must be %q or %q, got %q", ModeReliable, ModeAlarm, s.Mode.Val)
		}
		c.Mode = s.Mode.Val
	}
	if s.Cache.ok() {
		if !oneOf(s.Cache.Val, CacheDirect, CacheExternal) {
			v.errorf(s.Cache.Range, "cache must be %q or %q, got %q", CacheDirect, CacheExternal, s.Cache.Val)
		}
		c.Cache = s.Cache.Val
	}
	if s.Topology.ok() {
		if !oneOf(s.Topology.Val, TopologyPrimaryBackup, TopologyMultiprimary) {
			v.errorf(s.Topology.Range, "topology must be %q or %q, got %q", TopologyPrimaryBackup, TopologyMultiprimary, s.Topology.Val)
		}
		c.Topology = s.Topology.Val
	}
	if s.Protocol.ok() {
		if !oneOf(s.Protocol.Val, ProtocolCtha, ProtocolConntrackd) {
			v.errorf(s.Protocol.Range, "protocol must be %q or %q, got %q", ProtocolCtha, ProtocolConntrackd, s.Protocol.Val)
		}
		c.Protocol = s.Protocol.Val
	}
	if c.Topology == TopologyMultiprimary && c.Cache == CacheExternal {
		// The default cache is direct: only an explicit one gets here.
		v.errorf(s.Cache.Range, "cache = %q cannot be used with topology = %q: every node forwards its own flows, so the peer's states must go into the kernel as they arrive (cache = %q, the default)",
			CacheExternal, TopologyMultiprimary, CacheDirect)
	}
	if s.SNATPortRange.ok() {
		c.SNATPorts = v.portRange(s.SNATPortRange)
		if c.Topology != TopologyMultiprimary {
			v.warnf(s.SNATPortRange.Range, "snat_port_range is only used with topology = %q", TopologyMultiprimary)
		}
	}
	v.deferral(s, &c)
	if c.Mode == ModeAlarm {
		if c.CacheTimeout <= c.RefreshInterval {
			r := s.DefRange
			if s.CacheTimeout.Set {
				r = s.CacheTimeout.Range
			}
			v.errorf(r, "cache_timeout (%s) must be longer than refresh_interval (%s), or every state expires between refreshes",
				c.CacheTimeout, c.RefreshInterval)
		}
	} else {
		for _, a := range []attr[string]{s.RefreshInterval, s.CacheTimeout} {
			if a.Set {
				v.warnf(a.Range, "refresh_interval and cache_timeout are only used with mode = %q", ModeAlarm)
			}
		}
	}
	c.Links = v.links(s)
	v.peerCount(s, &c)
	if c.Protocol == ProtocolConntrackd {
		v.conntrackd(s, &c)
	} else {
		v.key(s, &c)
	}
	return c
}

// conntrackd checks what protocol = "conntrackd" allows: conntrackd 1.4's
// FTFW with one peer over one unicast link, primary-backup, and no
// authentication (conntrackd has none: auth_key_file is ignored).
func (v *validator) conntrackd(s *syncSyntax, c *Sync) {
	const p = ProtocolConntrackd
	if c.Topology == TopologyMultiprimary {
		v.errorf(s.Topology.Range, "protocol = %q is primary-backup only: conntrackd 1.4 replicates with one peer and has no multiprimary", p)
	}
	if c.Mode == ModeAlarm {
		v.errorf(s.Mode.Range, "protocol = %q speaks conntrackd's FTFW, which is mode = %q; conntrackd's ALARM mode is not supported", p, ModeReliable)
	}
	if len(s.Links) > 1 {
		v.errorf(s.Links[1].DefRange, "protocol = %q uses one link: conntrackd's FTFW has no link probes to choose between several; remove link %q", p, s.Links[1].Name)
	}
	if len(s.Links) > 0 && s.Links[0].MulticastGroup.Set {
		v.errorf(s.Links[0].MulticastGroup.Range, "protocol = %q needs a unicast link (peer = ADDRESS): ctha speaks conntrackd's UDP unicast transport only", p)
	}
	if s.AuthKeyFile.Set {
		v.warnf(s.AuthKeyFile.Range, "auth_key_file is ignored with protocol = %q: conntrackd has no authentication; run the sync on a dedicated link and filter its port to the peer's address with nftables", p)
	}
}

// deferral checks defer and defer_queue: multiprimary only, and no longer
// than a lost SYN's first retransmission (1 s), which it exists to avoid.
func (v *validator) deferral(s *syncSyntax, c *Sync) {
	c.Defer = v.duration(s.Defer, "defer", 0, nonNegative)
	c.DeferQueue = uint16(v.intIn(s.DeferQueue, "defer_queue", DefaultDeferQueue, 0, 65535))
	switch {
	case c.Defer > MaxDefer:
		v.errorf(s.Defer.Range, "defer must be at most %s (a held SYN waits no longer than its retransmission would), got %q", MaxDefer, s.Defer.Val)
	case c.Defer > 0 && c.Topology != TopologyMultiprimary:
		v.errorf(s.Defer.Range, "defer needs topology = %q: in primary-backup one node forwards every flow, so no packet can reach a node that lacks its state", TopologyMultiprimary)
	case c.Defer > 0 && c.Mode == ModeAlarm:
		v.errorf(s.Defer.Range, "defer needs mode = %q: alarm mode has no acknowledgements to wait for", ModeReliable)
	case c.Defer == 0 && s.DeferQueue.Set:
		v.warnf(s.DeferQueue.Range, "defer_queue is only used with defer (which is off)")
	}
}

func (v *validator) links(s *syncSyntax) []Link {
	if len(s.Links) == 0 {
		v.errorf(s.DefRange, "conntrack_sync needs at least one link block")
		return nil
	}
	var (
		out   []Link
		binds = map[netip.AddrPort]string{}
	)
	for i, ls := range s.Links {
		if i == MaxLinks {
			v.errorf(ls.DefRange, "at most %d sync links are allowed", MaxLinks)
			break
		}
		l := v.link(ls)
		if l.Local.IsValid() && l.Port != 0 {
			b := netip.AddrPortFrom(l.Local, l.Port)
			if other, dup := binds[b]; dup {
				v.errorf(ls.Local.Range, "link %q binds %s like link %q; give each link its own address or port", l.Name, b, other)
			} else {
				binds[b] = l.Name
			}
		}
		out = append(out, l)
	}
	return out
}

func (v *validator) link(s *linkSyntax) Link {
	const kind = "link"
	l := Link{Name: s.Name, Port: DefaultSyncPort}
	if s.Port.Set {
		l.Port = uint16(v.intIn(s.Port, "port", 0, 1, 65535)) // 0: invalid, already reported
	}
	if v.required(s.Interface.Set, s.block, kind, "interface") && s.Interface.ok() {
		l.Interface = s.Interface.Val
		v.ifaceName(s.Interface.Range, l.Interface)
	}
	if v.required(s.Local.Set, s.block, kind, "local") && s.Local.ok() {
		a, err := netip.ParseAddr(s.Local.Val)
		if err != nil || !(a.IsGlobalUnicast() || a.IsLinkLocalUnicast()) {
			v.errorf(s.Local.Range, "local must be a unicast IP address of this node, got %q", s.Local.Val)
		} else {
			l.Local = a.Unmap()
		}
	}
	var set []string
	for _, a := range []struct {
		name string
		set  bool
	}{{"peer", s.Peer.Set}, {"peers", s.Peers.Set}, {"multicast_group", s.MulticastGroup.Set}} {
		if a.set {
			set = append(set, a.name)
		}
	}
	switch {
	case len(set) > 1:
		r := s.MulticastGroup.Range
		if !s.MulticastGroup.Set {
			r = s.Peers.Range
		}
		both := "both " + strings.Join(set, " and ")
		if len(set) == 3 {
			both = "peer, peers and multicast_group"
		}
		v.errorf(r, "link %q sets %s; use one", s.Name, both)
	case len(set) == 0:
		v.errorf(s.DefRange, "link %q needs peer or peers (unicast), or multicast_group", s.Name)
	case s.Peer.ok():
		if a, ok := v.peer(s.Peer.Val, s.Peer.Range, "peer", l.Local); ok {
			l.Peer, l.Peers = a, []netip.Addr{a}
		}
	case s.Peers.ok():
		if l.Peers = v.peers(s, l.Local); len(l.Peers) > 0 {
			l.Peer = l.Peers[0]
		}
	case s.MulticastGroup.ok():
		a, err := netip.ParseAddr(s.MulticastGroup.Val)
		switch {
		case err != nil || !a.IsMulticast():
			v.errorf(s.MulticastGroup.Range, "multicast_group must be a multicast address (e.g. \"225.0.0.50\"), got %q", s.MulticastGroup.Val)
		case l.Local.IsValid() && familyOf(a) != familyOf(l.Local):
			v.errorf(s.MulticastGroup.Range, "multicast_group %s is %s but local %s is %s", a, familyOf(a), l.Local, familyOf(l.Local))
		default:
			l.MulticastGroup = a.Unmap()
		}
	}
	return l
}

// portRange parses snat_port_range: "LO-HI", 1 <= LO <= HI <= 65535.
func (v *validator) portRange(a attr[string]) [2]uint16 {
	lo, hi, ok := strings.Cut(a.Val, "-")
	l, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	h, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	if !ok || err1 != nil || err2 != nil || l == 0 || l > h {
		v.errorf(a.Range, "snat_port_range must be \"LOW-HIGH\", ports 1 to 65535 with LOW <= HIGH (e.g. \"20000-29999\"), got %q", a.Val)
		return [2]uint16{}
	}
	return [2]uint16{uint16(l), uint16(h)}
}

// peer checks one peer address of a link whose local address is local
// (invalid: not known).
func (v *validator) peer(val string, r hcl.Range, key string, local netip.Addr) (netip.Addr, bool) {
	a, err := netip.ParseAddr(val)
	switch {
	case err != nil || !(a.IsGlobalUnicast() || a.IsLinkLocalUnicast()):
		v.errorf(r, "%s must be a unicast IP address, got %q", key, val)
	case a.Unmap() == local:
		v.errorf(r, "peer %s is this node's own local address", a)
	case local.IsValid() && familyOf(a) != familyOf(local):
		v.errorf(r, "peer %s is %s but local %s is %s", a, familyOf(a), local, familyOf(local))
	default:
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}

// peers checks a link's peers and returns them (none after an error).
func (v *validator) peers(s *linkSyntax, local netip.Addr) []netip.Addr {
	list := s.Peers.Val
	switch {
	case len(list) == 0:
		v.errorf(s.Peers.Range, "peers must list 1 to %d addresses, got none", MaxPeers)
		return nil
	case len(list) > MaxPeers:
		v.errorf(s.Peers.Range, "peers lists %d addresses; at most %d (8 nodes)", len(list), MaxPeers)
		return nil
	}
	var (
		out  []netip.Addr
		seen = map[netip.Addr]bool{}
		bad  bool
	)
	for i, str := range list {
		a, ok := v.peer(str, s.Peers.elem(i), "each address of peers", local)
		switch {
		case !ok:
			bad = true
		case seen[a]:
			v.errorf(s.Peers.elem(i), "peer %s is listed twice", a)
			bad = true
		default:
			out = append(out, a)
		}
		seen[a] = true
	}
	if bad {
		return nil
	}
	return out
}

// peerCount checks that every link of c reaches the same number of
// peers (a multicast link: one), that only multiprimary has more than
// one, and alarm mode only one; it is checked once the links are.
func (v *validator) peerCount(s *syncSyntax, c *Sync) {
	n, first := 0, ""
	for i, l := range c.Links {
		m := len(l.Peers)
		if l.MulticastGroup.IsValid() {
			m = 1
		}
		if m == 0 {
			return // an error already
		}
		switch {
		case i == 0:
			n, first = m, l.Name
		case m != n:
			what := fmt.Sprintf("%d peers", m)
			if l.MulticastGroup.IsValid() {
				what = "a multicast group, which serves two nodes only,"
			}
			v.errorf(s.Links[i].DefRange, "link %q reaches %s but link %q %d: every link lists the same nodes, in the same order", l.Name, what, first, n)
			return
		}
	}
	switch {
	case n > 1 && c.Protocol == ProtocolConntrackd:
		v.errorf(s.Links[0].DefRange, "%d peers: protocol = %q replicates with one peer (conntrackd 1.4 has one)", n, ProtocolConntrackd)
	case n > 1 && c.Topology != TopologyMultiprimary:
		v.errorf(s.Links[0].DefRange, "%d peers: primary-backup has one (topology = %q has up to %d)", n, TopologyMultiprimary, MaxPeers)
	case n > 1 && c.Mode == ModeAlarm:
		v.errorf(s.Links[0].DefRange, "%d peers: mode = %q replicates to one peer; use %q", n, ModeAlarm, ModeReliable)
	}
}

func (v *validator) filter(s *filterSyntax) Filter {
	f := Filter{IgnoreAddresses: DefaultIgnoreAddresses}
	if s == nil {
		return f
	}
	for i, p := range s.Protocols.Val {
		p = strings.ToLower(p)
		if !oneOf(p, filterProtocols...) {
			v.errorf(s.Protocols.elem(i), "unknown protocol %q (known: %s)", s.Protocols.Val[i], strings.Join(filterProtocols, ", "))
			continue
		}
		f.Protocols = append(f.Protocols, p)
	}
	if s.IgnoreAddresses.ok() {
		f.IgnoreAddresses = nil
		for i, str := range s.IgnoreAddresses.Val {
			p, err := parsePrefix(str)
			if err != nil {
				v.errorf(s.IgnoreAddresses.elem(i), "%q is not an address or prefix", str)
				continue
			}
			f.IgnoreAddresses = append(f.IgnoreAddresses, p.Masked())
		}
	}
	for i, st := range s.TCPStates.Val {
		st = strings.ToUpper(st)
		if !oneOf(st, tcpStates...) {
			v.errorf(s.TCPStates.elem(i), "unknown TCP state %q (known: %s)", s.TCPStates.Val[i], strings.Join(tcpStates, ", "))
			continue
		}
		f.TCPStates = append(f.TCPStates, st)
	}
	return f
}

// maxKeyFile bounds what is read of a key file: a mistaken path (a log, a
// device) must not be read whole.
const maxKeyFile = 4096

// readSmall reads a file of at most limit bytes.
func readSmall(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes; it is not a key file", path, limit)
	}
	return data, nil
}

// key loads the sync key, or accepts its absence with a warning when the
// user has said insecure_no_auth = true.
func (v *validator) key(s *syncSyntax, c *Sync) {
	if c.InsecureNoAuth {
		if s.AuthKeyFile.Set {
			v.errorf(s.AuthKeyFile.Range, "auth_key_file and insecure_no_auth = true contradict each other; remove one")
			return
		}
		v.warnf(s.InsecureNoAuth.Range, "sync datagrams are not authenticated: anyone who can reach the sync port can inject conntrack states")
		return
	}
	if !s.AuthKeyFile.Set {
		v.errorf(s.DefRange, "conntrack_sync: auth_key_file is required (create one with `ctha keygen FILE`), or set insecure_no_auth = true")
		return
	}
	if !s.AuthKeyFile.ok() {
		return
	}
	path := s.AuthKeyFile.Val
	if !filepath.IsAbs(path) {
		path = filepath.Join(v.dir, path)
	}
	c.KeyFile = path
	if v.offline {
		return // the key is this machine's; in CI it is not there
	}
	r := s.AuthKeyFile.Range
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		v.errorf(r, "key file %s does not exist (create it with `ctha keygen %s`)", path, path)
		return
	case err != nil:
		v.errorf(r, "key file: %v", err)
		return
	case !st.Mode().IsRegular():
		v.errorf(r, "key file %s is not a regular file", path)
		return
	case st.Mode().Perm()&0o077 != 0:
		v.errorf(r, "key file %s is accessible by group or others (mode %04o); run chmod 600 %s", path, st.Mode().Perm(), path)
		return
	}
	data, err := readSmall(path, maxKeyFile)
	if err != nil {
		v.errorf(r, "key file: %v", err)
		return
	}
	k, err := auth.ParseKey(data)
	if err != nil {
		v.errorf(r, "key file %s: %v", path, err)
		return
	}
	c.Key = k
}
