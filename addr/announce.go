package addr

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// announcer writes the announcements of a fixed set of VIPs on one link:
// gratuitous ARP frames on an AF_PACKET socket for IPv4, unsolicited
// neighbour advertisements on an ICMPv6 socket for IPv6. Its sockets are
// opened once, by newAnnouncer, so that sending never waits on anything
// but the write itself. It is safe for concurrent use: each message is
// written with one system call.
type announcer struct {
	ifindex int
	mac     net.HardwareAddr

	arp    *packet.Conn // IPv4 only
	frames []arpFrame   // IPv4: request and reply frame per VIP

	ndp *ndp.Conn // IPv6 only
	nas []*ndp.NeighborAdvertisement
}

// arpFrame is a gratuitous ARP frame ready to write.
type arpFrame struct {
	vip netip.Addr
	b   []byte
}

// newAnnouncer opens the socket for vips' family on the link (index, mac).
// Sockets bind to the network namespace of the calling thread.
func newAnnouncer(index int, mac net.HardwareAddr, vips []netip.Prefix) (*announcer, error) {
	a := &announcer{ifindex: index, mac: mac}
	if len(vips) == 0 {
		return a, nil
	}
	if len(mac) != 6 {
		return nil, fmt.Errorf("link %d has no Ethernet address (%v)", index, mac)
	}
	if vips[0].Addr().Is4() {
		return a, a.openARP(vips)
	}
	return a, a.openNDP(vips)
}

// openARP prepares both forms of gratuitous ARP for every VIP and opens a
// send-only packet socket. arp.Client is not used: arp.Dial and arp.New
// refuse an interface without an IPv4 address, such as a fresh macvlan.
func (a *announcer) openARP(vips []netip.Prefix) error {
	zero := make(net.HardwareAddr, 6)
	for _, p := range vips {
		vip := p.Addr()
		// The request form, sender = target = VIP and target MAC zero,
		// and the reply form, target MAC broadcast: together they update
		// every peer's existing neighbour entry, even with arp_accept=0.
		for _, form := range []struct {
			op     arp.Operation
			target net.HardwareAddr
		}{{arp.OperationRequest, zero}, {arp.OperationReply, ethernet.Broadcast}} {
			pkt, err := arp.NewPacket(form.op, a.mac, vip, form.target, vip)
			if err != nil {
				return fmt.Errorf("gratuitous ARP for %s: %w", vip, err)
			}
			payload, err := pkt.MarshalBinary()
			if err != nil {
				return fmt.Errorf("gratuitous ARP for %s: %w", vip, err)
			}
			f := &ethernet.Frame{
				Destination: ethernet.Broadcast,
				Source:      a.mac,
				EtherType:   ethernet.EtherTypeARP,
				Payload:     payload,
			}
			b, err := f.MarshalBinary()
			if err != nil {
				return fmt.Errorf("gratuitous ARP for %s: %w", vip, err)
			}
			a.frames = append(a.frames, arpFrame{vip, b})
		}
	}
	// Drop everything on receive: the socket only sends.
	drop, err := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})
	if err != nil {
		return fmt.Errorf("assemble drop filter: %w", err)
	}
	ifi := &net.Interface{Index: a.ifindex, HardwareAddr: a.mac}
	c, err := packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), &packet.Config{Filter: drop})
	if err != nil {
		return fmt.Errorf("open ARP socket on link %d: %w", a.ifindex, err)
	}
	a.arp = c
	return nil
}

// openNDP prepares an unsolicited neighbour advertisement for every VIP
// (RFC 4861 section 7.2.6: Override set, Solicited and Router unset, target
// link-layer address option) and opens an ICMPv6 socket that only sends.
func (a *announcer) openNDP(vips []netip.Prefix) error {
	for _, p := range vips {
		a.nas = append(a.nas, &ndp.NeighborAdvertisement{
			Override:      true,
			TargetAddress: p.Addr(),
			Options: []ndp.Option{
				&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: a.mac},
			},
		})
	}
	// The interface is given by index only. ndp.Conn puts the interface's
	// name in every destination's zone, which x/net turns back into an
	// index through a process-wide cache filled from whatever namespace
	// the writing thread is in (and refilled on every miss). Without a
	// name the zone stays empty and the index in IPV6_PKTINFO picks the
	// link. The kernel chooses the source address: link-local when one is
	// usable, else a VIP. ndp.Listen sets the hop limit to 255.
	ifi := &net.Interface{Index: a.ifindex, HardwareAddr: a.mac}
	c, _, err := ndp.Listen(ifi, ndp.Unspecified)
	if err != nil {
		return fmt.Errorf("open ICMPv6 socket on link %d: %w", a.ifindex, err)
	}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	if err := c.SetICMPFilter(&f); err != nil {
		c.Close()
		return fmt.Errorf("set ICMPv6 filter: %w", err)
	}
	a.ndp = c
	return nil
}

// send writes one message: both ARP forms for every IPv4 VIP, or one
// advertisement for every IPv6 VIP. It keeps going after a failed write and
// returns the time the first write completed (zero if none did), the number
// of packets written and failed, and the errors.
func (a *announcer) send() (first time.Time, sent, failed int, err error) {
	var errs []error
	done := func(e error) {
		if e != nil {
			errs = append(errs, e)
			failed++
			return
		}
		if sent == 0 {
			first = time.Now()
		}
		sent++
	}
	for _, f := range a.frames {
		_, e := a.arp.WriteTo(f.b, &packet.Addr{HardwareAddr: ethernet.Broadcast})
		if errors.Is(e, unix.ENETDOWN) {
			// A packet socket bound to a link that is or goes down keeps
			// ENETDOWN as a pending socket error, and the next write
			// returns it even when the link is up again (the virtual MAC
			// link is down until Up). That write consumed it: try again.
			_, e = a.arp.WriteTo(f.b, &packet.Addr{HardwareAddr: ethernet.Broadcast})
		}
		if e != nil {
			e = fmt.Errorf("gratuitous ARP for %s: %w", f.vip, e)
		}
		done(e)
	}
	for _, na := range a.nas {
		e := a.ndp.WriteTo(na, nil, netip.IPv6LinkLocalAllNodes())
		if e != nil {
			e = fmt.Errorf("neighbour advertisement for %s: %w", na.TargetAddress, e)
		}
		done(e)
	}
	return first, sent, failed, errors.Join(errs...)
}

func (a *announcer) close() error {
	var errs []error
	if a.arp != nil {
		errs = append(errs, a.arp.Close())
	}
	if a.ndp != nil {
		errs = append(errs, a.ndp.Close())
	}
	return errors.Join(errs...)
}
