package sim

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/ctha/ctha/ctsync"
)

// socketQueue is how many datagrams a socket holds before it drops, as
// its receive buffer would.
const socketQueue = 4096

// Cond is what the network does to the datagrams from one address to
// another.
type Cond struct {
	Cut   bool          // every datagram is lost
	Loss  float64       // the share of datagrams lost, at random
	Delay time.Duration // one-way latency
	// Rate limits the bytes per second (0: none); datagrams wait their
	// turn, and those that would wait longer than Queue are dropped, as
	// a token bucket filter (tbf) does.
	Rate  int
	Queue time.Duration
}

// Net carries the sync links' datagrams between sockets bound to
// address:port pairs. Its random losses follow a seed.
type Net struct {
	mu    sync.Mutex
	socks map[netip.AddrPort]*socket
	conds map[[2]netip.Addr]Cond
	busy  map[[2]netip.Addr]time.Time // rate limits: the link is busy until
	down  map[netip.Addr]bool         // isolated addresses
	rng   *rand.Rand
}

// NewNet returns a network whose losses follow seed.
func NewNet(seed uint64) *Net {
	return &Net{socks: map[netip.AddrPort]*socket{}, conds: map[[2]netip.Addr]Cond{},
		busy: map[[2]netip.Addr]time.Time{}, down: map[netip.Addr]bool{}, rng: rand.New(rand.NewPCG(seed, seed))}
}

// Set sets the conditions from one address to another.
func (n *Net) Set(from, to netip.Addr, c Cond) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.conds[[2]netip.Addr{from, to}] = c
}

// SetBoth sets the conditions both ways between a and b.
func (n *Net) SetBoth(a, b netip.Addr, c Cond) {
	n.Set(a, b, c)
	n.Set(b, a, c)
}

// Isolate takes an address off the network (true) or puts it back
// (false), whatever the conditions set: nothing it sends leaves, nothing
// sent to it arrives (datagrams already in flight still do).
func (n *Net) Isolate(a netip.Addr, isolated bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.down[a] = isolated
}

// Listener returns a node's ctsync.Options.Listen: a socket bound to the
// link's local address and port, and to its interface on h as it is
// when the socket is opened. Once the interface is created again
// (Host.Create) the socket neither sends nor receives, as a socket bound
// (SO_BINDTODEVICE) to a deleted interface, and another may take its
// address.
func (n *Net) Listener(h *Host) func(ctsync.Link) (ctsync.PacketConn, error) {
	return func(l ctsync.Link) (ctsync.PacketConn, error) {
		if l.MulticastGroup.IsValid() {
			return nil, fmt.Errorf("sim: multicast sync links are not simulated")
		}
		dev, err := h.Link(l.Interface)
		if err != nil {
			return nil, err
		}
		at := netip.AddrPortFrom(l.Local, l.Port)
		n.mu.Lock()
		defer n.mu.Unlock()
		if old, ok := n.socks[at]; ok && old.live() {
			return nil, fmt.Errorf("listen udp %v: address already in use", at)
		}
		s := &socket{n: n, at: at, host: h, iface: l.Interface, index: dev.Index,
			inbox: make(chan datagram, socketQueue), closed: make(chan struct{})}
		n.socks[at] = s
		return s, nil
	}
}

type datagram struct {
	b    []byte
	from netip.AddrPort
}

// send carries b from s to dst under the conditions between them.
func (n *Net) send(s *socket, b []byte, dst netip.AddrPort) {
	n.mu.Lock()
	defer n.mu.Unlock()
	pair := [2]netip.Addr{s.at.Addr(), dst.Addr()}
	c := n.conds[pair]
	if c.Cut || n.down[pair[0]] || n.down[pair[1]] || !s.live() || c.Loss > 0 && n.rng.Float64() < c.Loss {
		return
	}
	wait := c.Delay
	if c.Rate > 0 {
		now := time.Now()
		start := now
		if busy := n.busy[pair]; busy.After(now) {
			start = busy
		}
		if c.Queue > 0 && start.Sub(now) > c.Queue {
			return
		}
		done := start.Add(time.Duration(len(b)) * time.Second / time.Duration(c.Rate))
		n.busy[pair] = done
		wait += done.Sub(now)
	}
	d := datagram{b: append([]byte(nil), b...), from: s.at}
	deliver := func() {
		n.mu.Lock()
		to := n.socks[dst]
		n.mu.Unlock()
		if to != nil && to.live() {
			to.deliver(d)
		}
	}
	if wait <= 0 {
		if to := n.socks[dst]; to != nil && to.live() {
			to.deliver(d)
		}
		return
	}
	time.AfterFunc(wait, deliver)
}

// socket is a bound UDP socket of the simulated network.
type socket struct {
	n      *Net
	at     netip.AddrPort
	host   *Host
	iface  string
	index  int // of the interface it was bound to
	inbox  chan datagram
	closed chan struct{}
	once   sync.Once
}

// live reports whether the interface it was bound to still exists.
func (s *socket) live() bool {
	l, err := s.host.Link(s.iface)
	return err == nil && l.Index == s.index
}

func (s *socket) deliver(d datagram) {
	select {
	case s.inbox <- d:
	default: // the receive buffer is full: dropped, as by the kernel
	}
}

func (s *socket) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	select {
	case d := <-s.inbox:
		return copy(b, d.b), d.from, nil
	case <-s.closed:
		return 0, netip.AddrPort{}, net.ErrClosed
	}
}

func (s *socket) WriteToUDPAddrPort(b []byte, dst netip.AddrPort) (int, error) {
	select {
	case <-s.closed:
		return 0, net.ErrClosed
	default:
	}
	s.n.send(s, b, dst)
	return len(b), nil
}

func (s *socket) Close() error {
	s.once.Do(func() {
		close(s.closed)
		s.n.mu.Lock()
		if s.n.socks[s.at] == s {
			delete(s.n.socks, s.at)
		}
		s.n.mu.Unlock()
	})
	return nil
}
