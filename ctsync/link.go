package ctsync

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// maxDatagram is the largest datagram accepted; anything larger is
// dropped and counted (the protocol never sends one).
const maxDatagram = 9000

// link is the UDP socket of a sync link. A unicast link is bound to its
// local address and sends to the peer; a multicast link is bound to the
// group on its interface (loop off, TTL 1) and sends to the group.
type link struct {
	cfg  Link
	conn *net.UDPConn
	dst  netip.AddrPort // the peer, or the group
}

// multicast reports whether the link sends to a group.
func (l *link) multicast() bool { return l.cfg.MulticastGroup.IsValid() }

func dialLink(c Link) (*link, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, c.Interface)
			if serr == nil {
				// Bursts (a bulk of 100k flows) must not overflow the
				// socket; CAP_NET_ADMIN lifts rmem_max.
				if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20) != nil {
					unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 32<<20)
				}
				if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 8<<20) != nil {
					unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, 8<<20)
				}
			}
		})
		return errors.Join(err, serr)
	}}
	l := &link{cfg: c, dst: netip.AddrPortFrom(c.Peer, c.Port)}
	bind := netip.AddrPortFrom(c.Local, c.Port)
	if l.multicast() {
		// Datagrams to the group are delivered to a socket bound to the
		// group (or to any address), not to one bound to the local
		// address. SO_BINDTODEVICE keeps links on the same group and
		// port apart.
		l.dst = netip.AddrPortFrom(c.MulticastGroup, c.Port)
		bind = l.dst
	}
	pc, err := lc.ListenPacket(context.Background(), "udp", bind.String())
	if err != nil {
		return nil, fmt.Errorf("sync link %s: %w", c.Name, err)
	}
	l.conn = pc.(*net.UDPConn)
	if l.multicast() {
		if err := l.joinGroup(); err != nil {
			l.conn.Close()
			return nil, fmt.Errorf("sync link %s: multicast group %s on %s: %w", c.Name, c.MulticastGroup, c.Interface, err)
		}
	}
	return l, nil
}

// joinGroup joins the link's group on its interface and sends to it from
// there only, without looping back and without crossing a router.
func (l *link) joinGroup() error {
	ifi, err := net.InterfaceByName(l.cfg.Interface)
	if err != nil {
		return err
	}
	group := &net.UDPAddr{IP: l.cfg.MulticastGroup.AsSlice()}
	if l.cfg.MulticastGroup.Is4() {
		p := ipv4.NewPacketConn(l.conn)
		return errors.Join(p.JoinGroup(ifi, group), p.SetMulticastInterface(ifi),
			p.SetMulticastLoopback(false), p.SetMulticastTTL(1))
	}
	p := ipv6.NewPacketConn(l.conn)
	return errors.Join(p.JoinGroup(ifi, group), p.SetMulticastInterface(ifi),
		p.SetMulticastLoopback(false), p.SetMulticastHopLimit(1))
}

// fromPeer reports whether a datagram's source may be the peer: the
// configured peer on a unicast link; on a multicast link anyone but this
// node (the envelope's authentication decides).
func (l *link) fromPeer(from netip.Addr) bool {
	from = from.Unmap()
	if l.multicast() {
		return from != l.cfg.Local
	}
	return from == l.cfg.Peer
}

func (l *link) send(b []byte) error {
	_, err := l.conn.WriteToUDPAddrPort(b, l.dst)
	return err
}

func (l *link) Close() error { return l.conn.Close() }
