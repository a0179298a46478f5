package vrrp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/ctha/ctha/vrrp/packet"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// packetIn is a received VRRP packet with what the receive checks need.
type packetIn struct {
	payload  []byte
	src, dst netip.Addr
	ttl      int // TTL or hop limit
	ifindex  int
}

// conn is an instance's VRRP endpoint on its interface. A fake stands in
// for it in tests.
type conn interface {
	// ReadPacket blocks until a packet arrives or the conn is closed.
	ReadPacket(buf []byte) (packetIn, error)
	// WritePacket sends a VRRP message to dst with TTL 255 from Source().
	WritePacket(b []byte, dst netip.Addr) error
	// Source is the address adverts are sent from (and checksummed with).
	Source() netip.Addr
	Close() error
}

// tosNetworkControl is the DSCP class keepalived uses for adverts (CS6).
const tosNetworkControl = 0xc0

// dialConn opens a raw VRRP socket on ifi for one address family, bound
// to the interface (so adverts from other links are never seen), joined
// to the VRRP group when multicast is set.
func dialConn(ifi *net.Interface, family6, multicast bool) (conn, error) {
	src, err := sourceAddr(ifi, family6)
	if err != nil {
		return nil, err
	}
	network, laddr := "ip4:112", "0.0.0.0"
	if family6 {
		network, laddr = "ip6:112", "::"
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifi.Name)
			if serr != nil {
				return
			}
			// Only the groups this socket joined, not every group joined
			// on the host (IP_MULTICAST_ALL defaults to 1).
			if family6 {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_ALL, 0)
			} else {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0)
			}
		})
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(context.Background(), network, laddr)
	if err != nil {
		return nil, fmt.Errorf("vrrp socket on %s: %w", ifi.Name, err)
	}
	var c conn
	if family6 {
		c, err = newConn6(pc, ifi, src, multicast)
	} else {
		c, err = newConn4(pc, ifi, src, multicast)
	}
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("vrrp socket on %s: %w", ifi.Name, err)
	}
	return c, nil
}

// sourceAddr picks the address adverts are sent from: the interface's
// first IPv4 address, or its IPv6 link-local address (RFC 5798 5.1.2.1).
func sourceAddr(ifi *net.Interface, family6 bool) (netip.Addr, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("addresses of %s: %w", ifi.Name, err)
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if family6 && ip.Is6() && ip.IsLinkLocalUnicast() || !family6 && ip.Is4() {
			return ip, nil
		}
	}
	if family6 {
		return netip.Addr{}, fmt.Errorf("%s has no IPv6 link-local address to send VRRP from", ifi.Name)
	}
	return netip.Addr{}, fmt.Errorf("%s has no IPv4 address to send VRRP from", ifi.Name)
}

type conn4 struct {
	pc  *ipv4.PacketConn
	ifi *net.Interface
	src netip.Addr
}

func newConn4(pc net.PacketConn, ifi *net.Interface, src netip.Addr, multicast bool) (*conn4, error) {
	p := ipv4.NewPacketConn(pc)
	steps := []error{
		p.SetControlMessage(ipv4.FlagTTL|ipv4.FlagDst|ipv4.FlagInterface, true),
		p.SetTOS(tosNetworkControl),
		p.SetTTL(packet.TTL),
		p.SetMulticastTTL(packet.TTL),
		p.SetMulticastInterface(ifi),
		p.SetMulticastLoopback(false),
	}
	if multicast {
		steps = append(steps, p.JoinGroup(ifi, &net.IPAddr{IP: packet.Group4.AsSlice()}))
	}
	if err := errors.Join(steps...); err != nil {
		return nil, err
	}
	return &conn4{pc: p, ifi: ifi, src: src}, nil
}

func (c *conn4) ReadPacket(buf []byte) (packetIn, error) {
	n, cm, src, err := c.pc.ReadFrom(buf)
	if err != nil {
		return packetIn{}, err
	}
	p := packetIn{payload: buf[:n]}
	if ip, ok := src.(*net.IPAddr); ok {
		p.src, _ = netip.AddrFromSlice(ip.IP)
		p.src = p.src.Unmap()
	}
	if cm != nil {
		p.ttl, p.ifindex = cm.TTL, cm.IfIndex
		p.dst, _ = netip.AddrFromSlice(cm.Dst)
		p.dst = p.dst.Unmap()
	}
	return p, nil
}

func (c *conn4) WritePacket(b []byte, dst netip.Addr) error {
	cm := &ipv4.ControlMessage{Src: c.src.AsSlice(), IfIndex: c.ifi.Index}
	_, err := c.pc.WriteTo(b, cm, &net.IPAddr{IP: dst.AsSlice()})
	return err
}

func (c *conn4) Source() netip.Addr { return c.src }
func (c *conn4) Close() error       { return c.pc.Close() }

type conn6 struct {
	pc  *ipv6.PacketConn
	ifi *net.Interface
	src netip.Addr
}

func newConn6(pc net.PacketConn, ifi *net.Interface, src netip.Addr, multicast bool) (*conn6, error) {
	p := ipv6.NewPacketConn(pc)
	steps := []error{
		// The kernel computes and verifies the checksum (offset 6).
		p.SetChecksum(true, 6),
		p.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst|ipv6.FlagInterface, true),
		p.SetTrafficClass(tosNetworkControl),
		p.SetHopLimit(packet.TTL),
		p.SetMulticastHopLimit(packet.TTL),
		p.SetMulticastInterface(ifi),
		p.SetMulticastLoopback(false),
	}
	if multicast {
		steps = append(steps, p.JoinGroup(ifi, &net.IPAddr{IP: packet.Group6.AsSlice()}))
	}
	if err := errors.Join(steps...); err != nil {
		return nil, err
	}
	return &conn6{pc: p, ifi: ifi, src: src}, nil
}

func (c *conn6) ReadPacket(buf []byte) (packetIn, error) {
	n, cm, src, err := c.pc.ReadFrom(buf)
	if err != nil {
		return packetIn{}, err
	}
	p := packetIn{payload: buf[:n]}
	if ip, ok := src.(*net.IPAddr); ok {
		p.src, _ = netip.AddrFromSlice(ip.IP)
	}
	if cm != nil {
		p.ttl, p.ifindex = cm.HopLimit, cm.IfIndex
		p.dst, _ = netip.AddrFromSlice(cm.Dst)
	}
	return p, nil
}

func (c *conn6) WritePacket(b []byte, dst netip.Addr) error {
	cm := &ipv6.ControlMessage{Src: c.src.AsSlice(), IfIndex: c.ifi.Index, HopLimit: packet.TTL}
	_, err := c.pc.WriteTo(b, cm, &net.IPAddr{IP: dst.AsSlice(), Zone: c.ifi.Name})
	return err
}

func (c *conn6) Source() netip.Addr { return c.src }
func (c *conn6) Close() error       { return c.pc.Close() }
