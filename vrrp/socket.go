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

// PacketIn is a received VRRP packet with what the receive checks need.
type PacketIn struct {
	Payload []byte
	// IP is the whole IPv4 packet, header first, when the conn has it
	// (AH authenticates the header); nil otherwise.
	IP       []byte
	Src, Dst netip.Addr
	TTL      int // TTL or hop limit
	Ifindex  int
}

// Conn is an instance's VRRP endpoint on its interface. A fake stands in
// for it in tests.
type Conn interface {
	// ReadPacket blocks until a packet arrives or the conn is closed.
	ReadPacket(buf []byte) (PacketIn, error)
	// WritePacket sends a VRRP message to dst with TTL 255 from Source().
	// Its group calls it with the group's lock held, never concurrently.
	WritePacket(b []byte, dst netip.Addr) error
	// Source is the address adverts are sent from (and checksummed with).
	Source() netip.Addr
	Close() error
}

// tosNetworkControl is the DSCP class keepalived uses for adverts (CS6).
const tosNetworkControl = 0xc0

// dialConn opens a raw VRRP socket on ifi for one address family, bound
// to the interface (so adverts from other links are never seen), joined
// to the VRRP group when multicast is set. With ah (IPv4 only) it is a
// socket of IP protocol 51 (AH) with IP_HDRINCL: it sends whole IPv4
// packets, built with their AH, and reads them whole.
func dialConn(ifi *net.Interface, family6, multicast, ah bool) (Conn, error) {
	src, err := sourceAddr(ifi, family6)
	if err != nil {
		return nil, err
	}
	network, laddr, newConn := "ip4:112", "0.0.0.0", newConn4
	switch {
	case family6 && ah:
		return nil, fmt.Errorf("vrrp socket on %s: AH over IPv6", ifi.Name)
	case family6:
		network, laddr, newConn = "ip6:112", "::", newConn6
	case ah:
		network = fmt.Sprintf("ip4:%d", packet.ProtocolAH)
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifi.Name)
			if serr == nil && ah {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_HDRINCL, 1)
			}
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
	c, err := newConn(pc, ifi, src, multicast)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("vrrp socket on %s: %w", ifi.Name, err)
	}
	c.hdrincl = ah
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

// rawConn is a raw VRRP socket of either family. What differs between
// them, golang.org/x/net's ipv4 and ipv6 packet conns and their control
// message types, stands behind read, oob and close; the rest is shared.
//
// The timing thread reads it without waiting (readNow) after ppoll said
// it is readable, and WritePacket sends with one sendmsg on the socket's
// descriptor: neither goes through Go's netpoller, and a send to a
// destination sent to before allocates nothing.
type rawConn struct {
	ifi     *net.Interface
	src     netip.Addr
	family6 bool
	// hdrincl: an AH socket; packets are sent and read whole.
	hdrincl bool
	// read receives one packet: its length, sender and the fields of its
	// control message (zero values when the kernel sent none).
	read func(b []byte) (n int, from net.Addr, cm controlIn, err error)
	// oob is the control message that sends from src out of ifindex.
	oob   func(src net.IP, ifindex int) []byte
	close func() error

	sc syscall.RawConn
	fd int // for ppoll; valid until close

	// The send in progress, and its destinations: socket address and
	// control message prepared once each.
	dests   []dest
	out     []byte
	outDest *dest
	sendErr error
	sendFn  func(fd uintptr)

	// The read in progress (readNow).
	in     []byte
	inOOB  [128]byte
	inN    int
	inOOBN int
	inFrom unix.Sockaddr
	inErr  error
	readFn func(fd uintptr)
}

// dest is a prepared destination.
type dest struct {
	addr netip.Addr
	sa   unix.Sockaddr
	oob  []byte
}

// controlIn is what ReadPacket uses of a received control message.
type controlIn struct {
	ttl     int // TTL or hop limit
	dst     net.IP
	ifindex int
}

func newConn4(pc net.PacketConn, ifi *net.Interface, src netip.Addr, multicast bool) (*rawConn, error) {
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
	return (&rawConn{
		ifi: ifi,
		src: src,
		read: func(b []byte) (int, net.Addr, controlIn, error) {
			n, cm, from, err := p.ReadFrom(b)
			if cm == nil {
				return n, from, controlIn{}, err
			}
			return n, from, controlIn{ttl: cm.TTL, dst: cm.Dst, ifindex: cm.IfIndex}, err
		},
		oob: func(src net.IP, ifindex int) []byte {
			return (&ipv4.ControlMessage{Src: src, IfIndex: ifindex}).Marshal()
		},
		close: p.Close,
	}).init(pc)
}

func newConn6(pc net.PacketConn, ifi *net.Interface, src netip.Addr, multicast bool) (*rawConn, error) {
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
	return (&rawConn{
		ifi:     ifi,
		src:     src,
		family6: true,
		read: func(b []byte) (int, net.Addr, controlIn, error) {
			n, cm, from, err := p.ReadFrom(b)
			if cm == nil {
				return n, from, controlIn{}, err
			}
			return n, from, controlIn{ttl: cm.HopLimit, dst: cm.Dst, ifindex: cm.IfIndex}, err
		},
		oob: func(src net.IP, ifindex int) []byte {
			return (&ipv6.ControlMessage{Src: src, IfIndex: ifindex, HopLimit: packet.TTL}).Marshal()
		},
		close: p.Close,
	}).init(pc)
}

// ReadPacket returns the packet with the TTL or hop limit, destination and
// interface index the receive checks need.
func (c *rawConn) ReadPacket(buf []byte) (PacketIn, error) {
	if c.hdrincl {
		return c.readWhole(buf)
	}
	n, from, cm, err := c.read(buf)
	if err != nil {
		return PacketIn{}, err
	}
	p := PacketIn{Payload: buf[:n], TTL: cm.ttl, Ifindex: cm.ifindex, Dst: c.addr(cm.dst)}
	if ip, ok := from.(*net.IPAddr); ok {
		p.Src = c.addr(ip.IP)
	}
	return p, nil
}

// addr converts an address the kernel reported. IPv4 ones come as 16-byte
// slices and are unmapped; IPv6 ones are kept as they are.
func (c *rawConn) addr(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	if !c.family6 {
		a = a.Unmap()
	}
	return a
}

// init takes the socket's descriptor and prepares the send and read
// functions, allocated once.
func (c *rawConn) init(pc net.PacketConn) (*rawConn, error) {
	sc, err := pc.(syscall.Conn).SyscallConn()
	if err != nil {
		return nil, err
	}
	c.sc, c.fd = sc, -1
	if err := sc.Control(func(fd uintptr) { c.fd = int(fd) }); err != nil {
		return nil, err
	}
	c.sendFn = func(fd uintptr) {
		c.sendErr = unix.Sendmsg(int(fd), c.out, c.outDest.oob, c.outDest.sa, 0)
	}
	c.readFn = func(fd uintptr) {
		c.inN, c.inOOBN, _, c.inFrom, c.inErr = unix.Recvmsg(int(fd), c.in, c.inOOB[:], unix.MSG_DONTWAIT)
	}
	return c, nil
}

// WritePacket sends b to dst with one sendmsg(2), not through the
// netpoller: a full socket buffer is an error (EAGAIN), counted by the
// caller, never a wait.
func (c *rawConn) WritePacket(b []byte, dst netip.Addr) error {
	c.out, c.outDest = b, c.dest(dst)
	err := c.sc.Control(c.sendFn)
	if err == nil {
		err = c.sendErr
	}
	c.out, c.outDest = nil, nil
	return err
}

// dest returns dst prepared, preparing it the first time.
func (c *rawConn) dest(dst netip.Addr) *dest {
	for i := range c.dests {
		if c.dests[i].addr == dst {
			return &c.dests[i]
		}
	}
	d := dest{addr: dst, oob: c.oob(c.src.AsSlice(), c.ifi.Index)}
	if c.family6 {
		d.sa = &unix.SockaddrInet6{Addr: dst.As16(), ZoneId: uint32(c.ifi.Index)}
	} else {
		d.sa = &unix.SockaddrInet4{Addr: dst.As4()}
	}
	c.dests = append(c.dests, d)
	return &c.dests[len(c.dests)-1]
}

func (c *rawConn) pollFD() int { return c.fd }

// readNow returns the next queued packet, or an error wrapping
// unix.EAGAIN if none is. An IPv4 raw socket delivers the IP header: the
// TTL, source and destination come from it.
func (c *rawConn) readNow(buf []byte) (PacketIn, error) {
	c.in = buf
	err := c.sc.Control(c.readFn)
	c.in = nil
	if err == nil {
		err = c.inErr
	}
	if err != nil {
		return PacketIn{}, err
	}
	b, oob := buf[:c.inN], c.inOOB[:c.inOOBN]
	if c.family6 {
		var cm ipv6.ControlMessage
		if err := cm.Parse(oob); err != nil {
			return PacketIn{}, fmt.Errorf("control message: %w", err)
		}
		p := PacketIn{Payload: b, TTL: cm.HopLimit, Ifindex: cm.IfIndex, Dst: c.addr(cm.Dst)}
		if sa, ok := c.inFrom.(*unix.SockaddrInet6); ok {
			p.Src = netip.AddrFrom16(sa.Addr)
		}
		return p, nil
	}
	var cm ipv4.ControlMessage
	if err := cm.Parse(oob); err != nil {
		return PacketIn{}, fmt.Errorf("control message: %w", err)
	}
	return c.packet4(b, cm.IfIndex)
}

// packet4 returns a received IPv4 packet b, header first.
func (c *rawConn) packet4(b []byte, ifindex int) (PacketIn, error) {
	h, err := ipv4.ParseHeader(b)
	if err != nil || h.Len > len(b) {
		return PacketIn{}, fmt.Errorf("IPv4 header: %v", err)
	}
	return PacketIn{Payload: b[h.Len:], IP: b, TTL: h.TTL, Ifindex: ifindex,
		Src: c.addr(h.Src), Dst: c.addr(h.Dst)}, nil
}

// readWhole reads an IPv4 packet, header included, waiting for one
// through the netpoller (ReadPacket of an AH socket).
func (c *rawConn) readWhole(buf []byte) (PacketIn, error) {
	var (
		oob     [128]byte
		n, oobn int
		rerr    error
	)
	err := c.sc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob[:], unix.MSG_DONTWAIT)
		return !errors.Is(rerr, unix.EAGAIN)
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		if errors.Is(err, unix.EBADF) {
			err = net.ErrClosed
		}
		return PacketIn{}, err
	}
	var cm ipv4.ControlMessage
	if err := cm.Parse(oob[:oobn]); err != nil {
		return PacketIn{}, fmt.Errorf("control message: %w", err)
	}
	return c.packet4(buf[:n], cm.IfIndex)
}

func (c *rawConn) Source() netip.Addr { return c.src }
func (c *rawConn) Close() error       { return c.close() }
