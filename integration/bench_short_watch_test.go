package integration

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/ctha/ctha/integration/lab"
)

// advertCapture records the VRRP adverts (IPv4) arriving on one interface
// of a lab namespace with the kernel's receive timestamps: an AF_PACKET
// socket opened in the namespace, filtered to IP protocol 112 by a BPF
// program, read by one goroutine. The timestamp is taken when the packet
// enters the receiving veth, in the sender's transmit path, so it does
// not depend on when the test process gets the CPU.
type advertCapture struct {
	f    *os.File
	done chan struct{} // closed when the reader has returned

	mu      sync.Mutex // guards the fields below
	ads     []lab.Advert
	err     error         // why the reader stopped, if not Close
	drops   uint32        // PACKET_STATISTICS drops, read at close
	arrived chan struct{} // closed and replaced at each advert
}

// captureAdverts starts a capture on role's interface ifname, stopped
// when tb ends.
func captureAdverts(tb testing.TB, l *lab.Lab, role, ifname string) *advertCapture {
	tb.Helper()
	var fd int
	err := inNS(l.NS(role), func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err = openAdvertSocket(ifi.Index)
		return err
	})
	if err != nil {
		tb.Fatalf("capture adverts on %s/%s: %v", role, ifname, err)
	}
	c := &advertCapture{f: os.NewFile(uintptr(fd), "vrrp-capture-"+role+"-"+ifname), done: make(chan struct{}), arrived: make(chan struct{})}
	go c.read()
	tb.Cleanup(func() { c.close() })
	return c
}

// openAdvertSocket opens a non-blocking AF_PACKET datagram socket on
// ifindex, with nanosecond timestamps, a 4 MiB receive buffer and a
// filter that keeps IPv4 protocol 112. It listens to every protocol
// (ETH_P_ALL), the only way to see the packets the node sends as well.
func openAdvertSocket(ifindex int) (int, error) {
	proto := int(htons(unix.ETH_P_ALL))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return -1, fmt.Errorf("packet socket: %w", err)
	}
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtProto}, // the frame's ethertype
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_IP, SkipFalse: 3},
		bpf.LoadAbsolute{Off: 9, Size: 1}, // IPv4 protocol (SOCK_DGRAM: no link header)
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 112, SkipFalse: 1},
		bpf.RetConstant{Val: 0xffff},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("assemble filter: %w", err)
	}
	filter := make([]unix.SockFilter, len(prog))
	for i, in := range prog {
		filter[i] = unix.SockFilter{Code: in.Op, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	steps := []struct {
		what string
		err  func() error
	}{
		{"filter", func() error {
			return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]})
		}},
		{"timestamps", func() error { return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1) }},
		{"receive buffer", func() error { return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20) }},
		{"bind", func() error { return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifindex}) }},
	}
	for _, s := range steps {
		if err := s.err(); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("packet socket %s: %w", s.what, err)
		}
	}
	return fd, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *advertCapture) read() {
	defer close(c.done)
	rc, err := c.f.SyscallConn()
	if err != nil {
		c.stop(err)
		return
	}
	buf := make([]byte, 2048)
	oob := make([]byte, 128)
	for {
		var n, oobn int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, 0)
			return rerr != unix.EAGAIN
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			c.stop(err)
			return
		}
		at, ok := kernelTimestamp(oob[:oobn])
		if !ok {
			at = time.Now()
		}
		a, ok := lab.ParseIPv4Advert(buf[:n])
		if !ok {
			continue
		}
		a.At = at
		c.mu.Lock()
		c.ads = append(c.ads, a)
		close(c.arrived)
		c.arrived = make(chan struct{})
		c.mu.Unlock()
	}
}

// kernelTimestamp finds SCM_TIMESTAMPNS in a control message.
func kernelTimestamp(oob []byte) (time.Time, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}, false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
			sec := int64(binary.NativeEndian.Uint64(m.Data[0:8]))
			nsec := int64(binary.NativeEndian.Uint64(m.Data[8:16]))
			return time.Unix(sec, nsec), true
		}
	}
	return time.Time{}, false
}

func (c *advertCapture) stop(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
}

// close stops the capture and reads the socket's drop counter. It is
// idempotent.
func (c *advertCapture) close() {
	if rc, err := c.f.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			if st, err := unix.GetsockoptTpacketStats(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
				c.mu.Lock()
				c.drops += st.Drops
				c.mu.Unlock()
			}
		})
	}
	c.f.Close()
	<-c.done
}

// adverts returns a copy of what was captured so far, and why the
// capture stopped if it did (nil while it runs or after close).
func (c *advertCapture) adverts() ([]lab.Advert, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]lab.Advert(nil), c.ads...), c.err
}

// dropped returns the packets the socket dropped (known after close).
func (c *advertCapture) dropped() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.drops
}

// next waits for an advert of src for vrid received after after.
func (c *advertCapture) next(src netip.Addr, vrid int, after time.Time, timeout time.Duration) (lab.Advert, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		for i := len(c.ads) - 1; i >= 0 && c.ads[i].At.After(after); i-- {
			if a := c.ads[i]; a.Src == src && a.VRID == vrid {
				c.mu.Unlock()
				return a, nil
			}
		}
		arrived, err := c.arrived, c.err
		c.mu.Unlock()
		if err != nil {
			return lab.Advert{}, fmt.Errorf("capture stopped: %w", err)
		}
		select {
		case <-arrived:
		case <-deadline.C:
			return lab.Advert{}, fmt.Errorf("no advert of %v vrid %d within %v", src, vrid, timeout)
		}
	}
}

// addrWatch records every address added to or deleted from the
// interfaces of a lab namespace, from a netlink subscription opened in
// it; each event is stamped when the test process read it.
type addrWatch struct {
	stop chan struct{}
	done chan struct{} // closed when the reader has returned

	mu     sync.Mutex // guards the fields below
	events []lab.AddrEvent
	err    error
}

// watchAddrs subscribes to role's address events; the subscription ends
// with tb.
func watchAddrs(tb testing.TB, l *lab.Lab, role string) *addrWatch {
	tb.Helper()
	w := &addrWatch{stop: make(chan struct{}), done: make(chan struct{})}
	ch := make(chan netlink.AddrUpdate, 4096)
	err := inNS(l.NS(role), func() error {
		return netlink.AddrSubscribeWithOptions(ch, w.stop, netlink.AddrSubscribeOptions{
			ReceiveBufferSize:      1 << 20,
			ReceiveBufferForceSize: true,
			ErrorCallback: func(err error) {
				select {
				case <-w.stop:
					return // the subscription's own end
				default:
				}
				w.mu.Lock()
				w.err = errors.Join(w.err, err)
				w.mu.Unlock()
			},
		})
	})
	if err != nil {
		tb.Fatalf("watch addresses of %s: %v", role, err)
	}
	go func() {
		defer close(w.done)
		for u := range ch {
			now := time.Now()
			a, ok := netip.AddrFromSlice(u.LinkAddress.IP)
			if !ok {
				continue
			}
			w.mu.Lock()
			w.events = append(w.events, lab.AddrEvent{At: now, Addr: a.Unmap(), Added: u.NewAddr})
			w.mu.Unlock()
		}
	}()
	tb.Cleanup(w.close)
	return w
}

// close ends the subscription; idempotent.
func (w *addrWatch) close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// snapshot returns the events so far and the subscription's errors.
func (w *addrWatch) snapshot() ([]lab.AddrEvent, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]lab.AddrEvent(nil), w.events...), w.err
}

// waitAll waits until every one of addrs was added since since (and not
// deleted again) and returns when the last of them was.
func (w *addrWatch) waitAll(addrs []netip.Addr, since time.Time, timeout time.Duration) (time.Time, error) {
	var at time.Time
	err := lab.WaitFor(timeout, time.Millisecond, func() (bool, error) {
		ev, err := w.snapshot()
		var ok bool
		at, ok = lab.AllPresentAt(ev, addrs, since)
		return ok, err
	})
	return at, err
}
