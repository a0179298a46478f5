package ctsync

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ctha/ctha/ctsync/auth"
	"github.com/ctha/ctha/internal/linkwatch"
)

// linkSet is the engine's sync links and what it knows of them (see
// links_select.go): the carrier of each link here, and per peer (peer.go)
// whether it is heard on each link, and which link carries its traffic.
// The engine's goroutine owns it, except the atomic counter.
type linkSet struct {
	links     []*link
	views     []linkView // carrier and interface index; heard and peerHears are the peers'
	nextProbe time.Time
	switches  atomic.Uint64
}

// openLinks opens every link; it fails at once where an address does not
// exist, before anything of the kernel's conntrack settings is touched.
func openLinks(cs []Link, opts Options) (*linkSet, error) {
	ls := &linkSet{}
	for _, c := range cs {
		l, err := dialLink(c, opts.Listen)
		if err != nil {
			ls.Close()
			return nil, err
		}
		ls.links = append(ls.links, l)
		// Until rtnetlink says otherwise, a link that cannot be looked
		// up is taken as up: silence still tells.
		up := true
		if u, err := opts.Host.Link(c.Interface); err == nil {
			up, l.index = u.Up, u.Index
		}
		ls.views = append(ls.views, linkView{carrier: up, ifindex: l.index})
	}
	return ls, nil
}

// Close closes every link's socket.
func (ls *linkSet) Close() error {
	var errs []error
	for _, l := range ls.links {
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}

// groups returns the links' multicast groups.
func (ls *linkSet) groups() []netip.Addr {
	var out []netip.Addr
	for _, l := range ls.links {
		if l.multicast() {
			out = append(out, l.cfg.MulticastGroup)
		}
	}
	return out
}

// startLinks starts a receiver per link and the carrier watch; they stop
// when ctx is done and the links are closed.
func (e *Engine) startLinks(ctx context.Context) {
	for i, l := range e.ls.links {
		e.wg.Go(func() { e.receive(ctx, i, l.conn) })
	}
	e.wg.Add(1)
	go func() { defer e.wg.Done(); e.watchCarrier(ctx) }()
}

// receive authenticates the datagrams that conn, link i's socket, reads
// and forwards them to the loop, until conn is closed. Only the link's
// configuration is read of it: the loop may replace its socket
// (reopenLinks).
func (e *Engine) receive(ctx context.Context, i int, conn PacketConn) {
	l := e.ls.links[i]
	buf := make([]byte, 65536)
	var backoff time.Duration // after a read error: 1 ms, doubling up to 1 s
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A socket error (an ICMP error queued, ENOBUFS) is not worth
			// a busy loop: wait before the next read while they last.
			backoff = min(max(2*backoff, time.Millisecond), time.Second)
			if backoff == time.Millisecond {
				e.log.Warn("sync link read failed; retrying", "link", l.cfg.Name, "err", err)
			}
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			continue
		}
		backoff = 0
		p := e.peerOf(i, from.Addr())
		switch {
		case p == nil:
			e.stats.drop("unknown_source")
			continue
		case n > maxDatagram:
			e.stats.drop("oversize")
			continue
		}
		var h auth.Header
		payload := buf[:n] // protocol conntrackd: plain datagrams (ctdpeer.go)
		if p.ctd == nil {
			if h, payload, err = auth.Open(&e.cfg.Key, buf[:n]); err != nil {
				e.stats.dropErr(err)
				continue
			}
		}
		d := datagram{h: h, payload: append([]byte(nil), payload...), link: i, src: from.Addr().Unmap(), peer: p}
		select {
		case e.inbox <- d:
		case <-ctx.Done():
			return
		}
	}
}

// watchCarrier follows the links' interfaces through rtnetlink and tells
// the loop when one gains or loses carrier.
func (e *Engine) watchCarrier(ctx context.Context) {
	err := e.opts.Host.Watch(ctx, func(u linkwatch.Update) {
		for i, l := range e.ls.links { // cfg is immutable: safe to read here
			if l.cfg.Interface != u.Name {
				continue
			}
			_ = e.do(ctx, func() {
				v := &e.ls.views[i]
				if u.Index != 0 {
					v.ifindex = u.Index
				}
				if v.carrier != u.Up {
					e.log.Info("sync link carrier", "link", l.cfg.Name, "iface", u.Name, "up", u.Up)
					// What was heard before the change proves nothing
					// now: a link back from a cut carries traffic
					// again only once the probes show both ways work.
					for _, p := range e.peers {
						p.views[i].heard, p.views[i].peerHears = time.Time{}, false
					}
				}
				v.carrier = u.Up
				for _, p := range e.peers {
					p.views[i].carrier = u.Up
				}
			})
		}
	}, func(err error) { e.log.Warn("sync link watch failed", "err", err) })
	if err != nil {
		e.log.Warn("cannot watch the sync links' carrier; silence alone tells a link down", "err", err)
	}
}

// linkHeard records an accepted datagram from peer p on link i.
func (e *Engine) linkHeard(p *peer, i int, src netip.Addr, payload []byte, now time.Time) {
	if i < 0 || i >= len(p.views) {
		return
	}
	v := &p.views[i]
	v.heard = now
	p.addr, p.heard = src, now
	if flags, ok := parseProbe(payload); ok {
		v.peerHears = flags&probeHears != 0
	}
	if ni, ok := parseNode(payload); ok {
		if ni.snat != p.node.snat && e.cfg.SNATPorts.Overlaps(ni.snat) {
			e.stats.snatOverlaps.Add(1)
			e.log.Warn("a peer's SNAT port range overlaps this node's: flows translated to a shared address may collide",
				"peer", ni.name, "peer_range", ni.snat.String(), "range", e.cfg.SNATPorts.String())
		}
		p.node = ni
	}
}

// tickLinks sends the probes that are due, chooses the active link of
// each peer, and returns when it must run again.
func (e *Engine) tickLinks(ctx context.Context, now time.Time) time.Time {
	ls := e.ls
	e.reopenLinks(ctx, now)
	if !now.Before(ls.nextProbe) {
		ls.nextProbe = now.Add(probeEvery)
		var buf, probe []byte
		node := appendNode(nil, e.cfg.NodeName, e.masterGroups(), e.cfg.SNATPorts)
		for i, l := range ls.links {
			if !ls.views[i].carrier || e.cfg.Protocol == ProtocolConntrackd { // no probes: ctdpeer.go
				continue
			}
			for _, p := range e.peers {
				e.seq++
				h := auth.Header{Sender: e.sender, Epoch: e.epoch, Seq: e.seq}
				probe = append(appendProbe(probe[:0], i, p.views[i].hears(now, linkSilence)), node...)
				buf = auth.Seal(buf[:0], &e.cfg.Key, h, probe)
				if err := l.send(buf, p.dst(l, i)); err != nil {
					e.stats.sendErrors.Add(1)
					continue
				}
				e.stats.datagramsOut.Add(1)
				if l.multicast() {
					break // one datagram reaches every peer
				}
			}
		}
	}
	for _, p := range e.peers {
		if next, why := chooseLink(p.views, p.active, now, linkSilence); why != reasonNone {
			lvl := slog.LevelWarn
			if why == reasonPreferred {
				lvl = slog.LevelInfo
			}
			e.log.Log(context.Background(), lvl, "sync traffic moves to another link", "peer", p.name(),
				"from", ls.links[p.active].cfg.Name, "to", ls.links[next].cfg.Name, "reason", why.String())
			p.active = next
			ls.switches.Add(1)
		}
	}
	return ls.nextProbe
}

// sendTo sends a datagram to peer p on its active link.
func (e *Engine) sendTo(p *peer, b []byte) error {
	l := e.ls.links[p.active]
	return l.send(b, p.dst(l, p.active))
}

// LinkStatus is one sync link in Status.
type LinkStatus struct {
	Name, Interface string
	Peer            string // the peers' addresses (comma-separated), or the multicast group
	Carrier         bool   // the interface is up with carrier
	Up              bool   // every peer is heard on it and hears this node
	Active          bool   // it carries the traffic to some peer
}

func (e *Engine) linkStatus(now time.Time) []LinkStatus {
	out := make([]LinkStatus, len(e.ls.links))
	for i, l := range e.ls.links {
		s := LinkStatus{Name: l.cfg.Name, Interface: l.cfg.Interface, Carrier: e.ls.views[i].carrier, Up: true}
		if l.multicast() {
			s.Peer = l.dst.Addr().String()
		} else {
			var addrs []string
			for _, a := range l.cfg.Peers {
				addrs = append(addrs, a.String())
			}
			s.Peer = strings.Join(addrs, ",")
		}
		for _, p := range e.peers {
			s.Up = s.Up && p.views[i].up(now, linkSilence)
			s.Active = s.Active || p.active == i
		}
		out[i] = s
	}
	return out
}

// reopenLinks opens again the socket of each link whose interface was
// deleted and created again: a socket bound to the old one (as
// SO_BINDTODEVICE binds) would neither send nor receive any more. A link
// whose new interface cannot take the socket yet (its address is not
// there) is tried again every reopenRetry.
func (e *Engine) reopenLinks(ctx context.Context, now time.Time) {
	for i, l := range e.ls.links {
		v := &e.ls.views[i]
		if l.index == 0 { // not known when the socket was opened: this one
			l.index = v.ifindex
		}
		if v.ifindex == 0 || v.ifindex == l.index || now.Before(l.retryAt) {
			continue
		}
		conn, err := e.opts.Listen(l.cfg)
		if err != nil {
			if l.retryAt.IsZero() {
				e.log.Warn("sync link's interface created again; its socket cannot be opened on it yet",
					"link", l.cfg.Name, "iface", l.cfg.Interface, "err", err)
			}
			l.retryAt = now.Add(reopenRetry)
			continue
		}
		old := l.conn
		l.conn, l.index, l.retryAt = conn, v.ifindex, time.Time{}
		old.Close() // its receiver ends
		e.wg.Go(func() { e.receive(ctx, i, conn) })
		e.log.Info("sync link reopened on its interface, created again", "link", l.cfg.Name,
			"iface", l.cfg.Interface, "ifindex", l.index)
	}
}
