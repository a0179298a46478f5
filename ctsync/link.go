package ctsync

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// maxDatagram is the largest datagram accepted; anything larger is
// dropped and counted (the protocol never sends one).
const maxDatagram = 9000

// link is the socket of a sync link. A unicast link is bound to its
// local address and sends to each peer; a multicast link is bound to the
// group on its interface (loop off, TTL 1) and sends to the group.
type link struct {
	cfg  Link
	conn PacketConn
	dst  netip.AddrPort // the group (a multicast link)
	// index is the interface's index when conn was opened; retryAt,
	// when reopening it on a new interface may be tried again.
	index   int
	retryAt time.Time
}

// reopenRetry: a link whose interface was created again, and whose
// socket could not be opened on it, is tried again after this long.
const reopenRetry = time.Second

// multicast reports whether the link sends to a group.
func (l *link) multicast() bool { return l.cfg.MulticastGroup.IsValid() }

func dialLink(c Link, listen func(Link) (PacketConn, error)) (*link, error) {
	l := &link{cfg: c}
	if l.multicast() {
		l.dst = netip.AddrPortFrom(c.MulticastGroup, c.Port)
	}
	var err error
	if l.conn, err = listen(c); err != nil {
		return nil, fmt.Errorf("sync link %s: %w", c.Name, err)
	}
	return l, nil
}

// listenUDP opens the UDP socket of link c (Options.Listen's default).
func listenUDP(c Link) (PacketConn, error) {
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
	bind := netip.AddrPortFrom(c.Local, c.Port)
	if c.MulticastGroup.IsValid() {
		// Datagrams to the group are delivered to a socket bound to the
		// group (or to any address), not to one bound to the local
		// address. SO_BINDTODEVICE keeps links on the same group and
		// port apart.
		bind = netip.AddrPortFrom(c.MulticastGroup, c.Port)
	}
	pc, err := lc.ListenPacket(context.Background(), "udp", bind.String())
	if err != nil {
		return nil, err
	}
	conn := pc.(*net.UDPConn)
	if c.MulticastGroup.IsValid() {
		if err := joinGroup(conn, c); err != nil {
			conn.Close()
			return nil, fmt.Errorf("multicast group %s on %s: %w", c.MulticastGroup, c.Interface, err)
		}
	}
	return conn, nil
}

// joinGroup joins link c's group on its interface and sends to it from
// there only, without looping back and without crossing a router.
func joinGroup(conn *net.UDPConn, c Link) error {
	ifi, err := net.InterfaceByName(c.Interface)
	if err != nil {
		return err
	}
	group := &net.UDPAddr{IP: c.MulticastGroup.AsSlice()}
	if c.MulticastGroup.Is4() {
		p := ipv4.NewPacketConn(conn)
		return errors.Join(p.JoinGroup(ifi, group), p.SetMulticastInterface(ifi),
			p.SetMulticastLoopback(false), p.SetMulticastTTL(1))
	}
	p := ipv6.NewPacketConn(conn)
	return errors.Join(p.JoinGroup(ifi, group), p.SetMulticastInterface(ifi),
		p.SetMulticastLoopback(false), p.SetMulticastHopLimit(1))
}

func (l *link) send(b []byte, dst netip.AddrPort) error {
	_, err := l.conn.WriteToUDPAddrPort(b, dst)
	return err
}

func (l *link) Close() error { return l.conn.Close() }
