package ctsync

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/ctha/ctha/cfg"
	"golang.org/x/sys/unix"
)

// maxDatagram is the largest datagram accepted; anything larger is
// dropped and counted (the protocol never sends one).
const maxDatagram = 9000

// link is the UDP socket of a sync link.
type link struct {
	cfg  cfg.Link
	conn *net.UDPConn
	peer netip.AddrPort
}

func dialLink(c cfg.Link) (*link, error) {
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
	pc, err := lc.ListenPacket(context.Background(), "udp", netip.AddrPortFrom(c.Local, c.Port).String())
	if err != nil {
		return nil, fmt.Errorf("sync link %s: %w", c.Name, err)
	}
	return &link{cfg: c, conn: pc.(*net.UDPConn), peer: netip.AddrPortFrom(c.Peer, c.Port)}, nil
}

func (l *link) send(b []byte) error {
	_, err := l.conn.WriteToUDPAddrPort(b, l.peer)
	return err
}

func (l *link) Close() error { return l.conn.Close() }
