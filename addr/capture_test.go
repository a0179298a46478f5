package addr_test

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
)

// announcement is one GARP or NA frame seen by the capture.
type announcement struct {
	at       time.Time
	kind     string // "arp-request", "arp-reply" or "na"
	ethSrc   net.HardwareAddr
	ethDst   net.HardwareAddr
	sender   net.HardwareAddr // ARP sender MAC, or the NA's target link-layer option
	target   netip.Addr       // ARP target IP (= sender IP), or the NA's target
	arpTHA   net.HardwareAddr // ARP target MAC
	arpSrcIP netip.Addr
	ipDst    netip.Addr // NA
	hopLimit uint8      // NA
	na       *ndp.NeighborAdvertisement
}

// capture records the announcements arriving on B's eth0.
type capture struct {
	conn *packet.Conn
	done chan struct{}

	mu  sync.Mutex
	got []announcement
}

// capture opens an AF_PACKET socket in B (on a discarded thread) and reads
// it from a goroutine until the test ends.
func (l *lab) capture(t testing.TB) *capture {
	t.Helper()
	var (
		conn *packet.Conn
		err  error
	)
	inNS(t, l.B, func() {
		var ifi *net.Interface
		if ifi, err = net.InterfaceByName("eth0"); err != nil {
			return
		}
		const ethPAll = 0x0003
		conn, err = packet.Listen(ifi, packet.Raw, ethPAll, nil)
	})
	if err != nil {
		t.Fatalf("capture in %s: %v", l.B, err)
	}
	c := &capture{conn: conn, done: make(chan struct{})}
	go c.read()
	t.Cleanup(func() {
		conn.Close()
		<-c.done
	})
	return c
}

func (c *capture) read() {
	defer close(c.done)
	b := make([]byte, 2048)
	for {
		c.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, _, err := c.conn.ReadFrom(b)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			return
		}
		if a, ok := parseAnnouncement(b[:n]); ok {
			a.at = time.Now()
			c.mu.Lock()
			c.got = append(c.got, a)
			c.mu.Unlock()
		}
	}
}

// parseAnnouncement recognises gratuitous ARP and neighbour advertisements.
func parseAnnouncement(b []byte) (announcement, bool) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(b); err != nil {
		return announcement{}, false
	}
	a := announcement{ethSrc: f.Source, ethDst: f.Destination}
	switch f.EtherType {
	case ethernet.EtherTypeARP:
		var p arp.Packet
		if err := p.UnmarshalBinary(f.Payload); err != nil || p.SenderIP != p.TargetIP {
			return announcement{}, false
		}
		a.kind = "arp-request"
		if p.Operation == arp.OperationReply {
			a.kind = "arp-reply"
		}
		a.sender, a.target, a.arpTHA, a.arpSrcIP = p.SenderHardwareAddr, p.TargetIP, p.TargetHardwareAddr, p.SenderIP
		return a, true
	case ethernet.EtherTypeIPv6:
		const icmpv6 = 58
		if len(f.Payload) < 40 || f.Payload[6] != icmpv6 {
			return announcement{}, false
		}
		m, err := ndp.ParseMessage(f.Payload[40:])
		if err != nil {
			return announcement{}, false
		}
		na, ok := m.(*ndp.NeighborAdvertisement)
		if !ok {
			return announcement{}, false
		}
		a.kind, a.na, a.target, a.hopLimit = "na", na, na.TargetAddress, f.Payload[7]
		a.ipDst, _ = netip.AddrFromSlice(f.Payload[24:40])
		for _, o := range na.Options {
			if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target {
				a.sender = lla.Addr
			}
		}
		return a, true
	}
	return announcement{}, false
}

// of returns the announcements of kind seen so far.
func (c *capture) of(kind string) []announcement {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []announcement
	for _, a := range c.got {
		if a.kind == kind {
			out = append(out, a)
		}
	}
	return out
}
