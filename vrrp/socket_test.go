package vrrp

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/lab"
	"github.com/ctha/ctha/vrrp/packet"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// TestRawConnTimingPath sends adverts between two raw sockets on a veth
// pair in a namespace of its own, as the timing thread does: sendmsg of a
// prepared packet (allocating nothing), ppoll, then a read that does not
// wait. Both families: the IPv4 socket delivers the IP header, the IPv6
// one the sender in a socket address. An AH socket sends and reads whole
// IPv4 packets (IP_HDRINCL).
func TestRawConnTimingPath(t *testing.T) {
	lab.RequireNetns(t)
	var r [4]byte
	_, _ = rand.Read(r[:])
	name := "ctvr" + hex.EncodeToString(r[:])
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	// Two namespaces: in one, the sender's address would be the
	// receiver's own, and the kernel would drop it as a martian.
	names := []string{name + "a", name + "b"}
	for _, n := range names {
		run("netns", "add", n)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n).Run() })
	}
	run("-n", names[0], "link", "add", "name", "va", "type", "veth", "peer", "name", "vb", "netns", names[1])
	var nss [2]netns.NsHandle
	for i, l := range []string{"va", "vb"} {
		run("-n", names[i], "addr", "add", "10.10.9."+string(rune('1'+i))+"/24", "dev", l)
		// Only this link-local address: one the kernel made would be
		// tentative (DAD) for a second, and refused as a source.
		run("-n", names[i], "link", "set", l, "addrgenmode", "none")
		run("-n", names[i], "addr", "add", "fe80::"+string(rune('1'+i))+"/64", "dev", l, "nodad")
		run("-n", names[i], "link", "set", l, "up")
		ns, err := netns.GetFromName(names[i])
		if err != nil {
			t.Fatal(err)
		}
		defer ns.Close()
		nss[i] = ns
	}
	// dialIn opens a raw socket on link in namespace ns, from a thread
	// that stays there (never unlocked: it ends with its goroutine).
	dialIn := func(ns netns.NsHandle, link string, family6, ah bool) (*rawConn, int, error) {
		type result struct {
			c     *rawConn
			index int
			err   error
		}
		ch := make(chan result)
		go func() {
			runtime.LockOSThread()
			if err := netns.Set(ns); err != nil {
				ch <- result{err: err}
				return
			}
			ifi, err := net.InterfaceByName(link)
			if err != nil {
				ch <- result{err: err}
				return
			}
			c, err := dialConn(ifi, family6, true, ah)
			if err != nil {
				ch <- result{err: err}
				return
			}
			ch <- result{c.(*rawConn), ifi.Index, nil}
		}()
		r := <-ch
		return r.c, r.index, r.err
	}

	for _, v := range []struct{ family6, ah bool }{{false, false}, {true, false}, {false, true}} {
		family6 := v.family6
		type pair struct {
			a, b *rawConn
			ib   int
		}
		var p pair
		var err error
		if p.a, _, err = dialIn(nss[0], "va", family6, v.ah); err != nil {
			t.Fatalf("family6=%v: %v", family6, err)
		}
		defer p.a.Close()
		if p.b, p.ib, err = dialIn(nss[1], "vb", family6, v.ah); err != nil {
			t.Fatalf("family6=%v: %v", family6, err)
		}
		defer p.b.Close()

		dst := packet.Group4
		if family6 {
			dst = packet.Group6
		}
		ad := packet.Advert{Version: 3, VRID: 51, Priority: 150, Interval: 20 * time.Millisecond,
			Addrs: []netip.Addr{netip.MustParseAddr("10.10.9.254")}}
		if family6 {
			ad.Addrs = []netip.Addr{netip.MustParseAddr("fd00:10:9::fe")}
		}
		pkt, err := ad.Append(nil, p.a.Source(), dst)
		if v.ah { // a whole IPv4 packet, as the member builds it
			ad.Version = 2
			ad.Interval = time.Second
			pkt, err = packet.NewAH(packet.Password{'x'}).Append(nil,
				packet.IPv4{TOS: tosNetworkControl, ID: 1, TTL: packet.TTL, Src: p.a.Source(), Dst: dst}, 1, &ad, false)
		}
		if err != nil {
			t.Fatal(err)
		}
		send := func() {
			if err := p.a.WritePacket(pkt, dst); err != nil {
				t.Fatalf("family6=%v: send: %v", family6, err)
			}
		}
		// A new veth's IPv6 takes a moment to come up: send until one
		// arrives, then read every one queued.
		fds := []unix.PollFd{{Fd: int32(p.b.pollFD()), Events: unix.POLLIN}}
		for try := 0; ; try++ {
			send()
			if n, err := unix.Poll(fds, 100); err != nil || n == 1 {
				break
			}
			if try == 30 {
				t.Fatalf("family6=%v: no advert within 3 s", family6)
			}
		}
		buf := make([]byte, maxPacket)
		in, err := p.b.readNow(buf)
		if err != nil {
			t.Fatalf("family6=%v: read: %v", family6, err)
		}
		if in.Src != p.a.Source() || in.Dst != dst || in.TTL != packet.TTL || in.Ifindex != p.ib {
			t.Errorf("family6=%v: received from %v to %v, TTL %d, ifindex %d; want from %v to %v, TTL %d, ifindex %d",
				family6, in.Src, in.Dst, in.TTL, in.Ifindex, p.a.Source(), dst, packet.TTL, p.ib)
		}
		payload := in.Payload
		if v.ah {
			if len(in.IP) != len(pkt) {
				t.Fatalf("AH: read %d bytes of IP packet, sent %d", len(in.IP), len(pkt))
			}
			if payload, _, err = packet.NewAH(packet.Password{'x'}).Open(in.IP, false); err != nil {
				t.Fatalf("AH: the packet read does not verify: %v", err)
			}
		}
		got, err := packet.Parse(payload, in.Src, in.Dst, family6)
		if err != nil || got.Priority != 150 || got.VRID != 51 {
			t.Errorf("family6=%v: received advert %+v, %v", family6, got, err)
		}
		for range 30 { // those sent before the link was up, if any arrived
			if _, err := p.b.readNow(buf); err != nil {
				break
			}
		}
		if _, err := p.b.readNow(buf); !errors.Is(err, unix.EAGAIN) {
			t.Errorf("family6=%v: a read with nothing queued returned %v, want EAGAIN", family6, err)
		}
		if allocs := testing.AllocsPerRun(50, send); allocs != 0 {
			t.Errorf("family6=%v: %.1f allocations per advert sent, want 0", family6, allocs)
		}
	}
}
