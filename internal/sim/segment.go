package sim

import (
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/ctha/ctha/vrrp"
	"github.com/ctha/ctha/vrrp/packet"
)

// Segment is the LANs the VRRP instances advertise on, one per interface
// name: a packet to a multicast group reaches every other connection on
// the same interface, a packet to a unicast address the one with that
// source.
type Segment struct {
	mu    sync.Mutex
	conns map[string][]*vrrpConn // by interface
	cut   map[netip.Addr]bool
}

// NewSegment returns LANs with nobody on them.
func NewSegment() *Segment {
	return &Segment{conns: map[string][]*vrrpConn{}, cut: map[netip.Addr]bool{}}
}

// Dialer returns a node's vrrp.Options.Dial: its instance on interface
// i sends from addrs[i]. A connection is bound to the interface of the
// host as it is when dialled: once the interface is created again
// (Host.Create), it neither sends nor receives, as a raw socket bound
// to a deleted interface.
func (s *Segment) Dialer(h *Host, addrs map[string]netip.Addr) func(vrrp.Instance) (vrrp.Conn, error) {
	return func(in vrrp.Instance) (vrrp.Conn, error) {
		src, ok := addrs[in.Interface]
		if !ok {
			return nil, fmt.Errorf("sim: no address on %s", in.Interface)
		}
		l, err := h.Link(in.Interface)
		if err != nil {
			return nil, err
		}
		c := &vrrpConn{s: s, iface: in.Interface, src: src, host: h, index: l.Index,
			inbox: make(chan vrrp.PacketIn, 256), closed: make(chan struct{})}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.conns[in.Interface] = append(s.conns[in.Interface], c)
		return c, nil
	}
}

// Cut takes the addresses off the LANs (true) or puts them back (false):
// what they send is lost, and nothing reaches them.
func (s *Segment) Cut(cut bool, addrs ...netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range addrs {
		s.cut[a] = cut
	}
}

func (s *Segment) send(from *vrrpConn, b []byte, dst netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cut[from.src] || !from.live() {
		return
	}
	multicast := dst == packet.Group4 || dst == packet.Group6
	for _, c := range s.conns[from.iface] {
		if c == from || s.cut[c.src] || !multicast && c.src != dst || !c.live() {
			continue
		}
		p := vrrp.PacketIn{Payload: append([]byte(nil), b...), Src: from.src, Dst: dst, TTL: packet.TTL}
		select {
		case c.inbox <- p:
		case <-c.closed:
		default: // a full socket drops
		}
	}
}

// vrrpConn is an instance's connection to its LAN.
type vrrpConn struct {
	s      *Segment
	iface  string
	src    netip.Addr
	host   *Host
	index  int // of the interface it was opened on
	inbox  chan vrrp.PacketIn
	closed chan struct{}
	once   sync.Once
}

// live reports whether the interface it was opened on still exists.
func (c *vrrpConn) live() bool {
	l, err := c.host.Link(c.iface)
	return err == nil && l.Index == c.index
}

func (c *vrrpConn) ReadPacket(buf []byte) (vrrp.PacketIn, error) {
	select {
	case p := <-c.inbox:
		n := copy(buf, p.Payload)
		p.Payload = buf[:n]
		return p, nil
	case <-c.closed:
		return vrrp.PacketIn{}, net.ErrClosed
	}
}

func (c *vrrpConn) WritePacket(b []byte, dst netip.Addr) error {
	select {
	case <-c.closed:
		return net.ErrClosed
	default:
	}
	c.s.send(c, b, dst)
	return nil
}

func (c *vrrpConn) Source() netip.Addr { return c.src }

func (c *vrrpConn) Close() error {
	c.once.Do(func() {
		close(c.closed)
		c.s.mu.Lock()
		defer c.s.mu.Unlock()
		for i, x := range c.s.conns[c.iface] {
			if x == c {
				c.s.conns[c.iface] = append(c.s.conns[c.iface][:i], c.s.conns[c.iface][i+1:]...)
				break
			}
		}
	})
	return nil
}
