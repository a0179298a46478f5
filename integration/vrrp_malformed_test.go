package integration

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/lab"
	"github.com/ctha/ctha/internal/control"
	"github.com/ctha/ctha/vrrp/packet"
	"golang.org/x/net/ipv4"
)

// TestVRRPMalformedPackets: malformed, wrong-TTL, wrong-VRID and truncated
// packets sent into the LAN are dropped and counted under the right reason
// by both firewalls, and never change the state. Each would, if accepted,
// matter: a priority-254 advert for the LAN's VRID would make the master
// step down, a priority-0 one would make the backup take over. A valid
// priority-254 advert from the same client, sent last, does make the master
// step down: the malformed ones were dropped for their malformation, not
// because nothing from the client reaches the firewalls.
func TestVRRPMalformedPackets(t *testing.T) {
	lab.RequireNetns(t)
	const advert = 100 * time.Millisecond
	l := lab.New(t, lab.Options{NoIPv6: true})
	fw1 := startNode(t, l, lab.RoleFW1, pairOpts{node: "fw1", priority: 150, advert: advert}.config())
	waitGroupState(t, fw1, "MASTER", 2*masterDownInterval(150, advert)+2*time.Second)
	fw2 := startNode(t, l, lab.RoleFW2, pairOpts{node: "fw2", priority: 100, advert: advert}.config())
	waitGroupState(t, fw2, "BACKUP", 5*time.Second)
	// fw2 has heard fw1 and knows it as the master.
	fw1Addr := lab.FW1LAN.Addr()
	if err := lab.WaitFor(2*time.Second, 20*time.Millisecond, func() (bool, error) {
		return malfInstance(fw2, "lan").Master == fw1Addr.String(), nil
	}); err != nil {
		t.Fatalf("fw2's lan instance does not know fw1 (%s) as its master: %+v", fw1Addr, malfInstance(fw2, "lan"))
	}

	inj := malfOpenInjector(t, l.NS(lab.RoleClient), "eth0", lab.ClientAddr.Addr())
	src, dst := lab.ClientAddr.Addr(), packet.Group4
	vip := lab.LANVIP.Addr()

	// build encodes a version 3 (or 2) advert from the client for VRID 51
	// listing the LAN VIP.
	build := func(version int, vrid, prio uint8) []byte {
		ad := packet.Advert{Version: version, VRID: vrid, Priority: prio, Interval: advert, Addrs: []netip.Addr{vip}}
		if version == 2 {
			ad.Interval = time.Second
		}
		b, err := ad.Append(nil, src, dst)
		if err != nil {
			t.Fatalf("encode %+v: %v", ad, err)
		}
		return b
	}
	// resum recomputes the checksum as version sumVersion computes it
	// (3: with the pseudo-header, 2: without).
	resum := func(b []byte, sumVersion int) []byte {
		b[6], b[7] = 0, 0
		binary.BigEndian.PutUint16(b[6:], packet.Checksum(b, sumVersion, src, dst))
		return b
	}
	valid := func() []byte { return build(3, 51, 254) }

	// Sanity: the valid advert parses, so the cases below differ from an
	// accepted one only by what they name.
	if ad, err := packet.Parse(valid(), src, dst, false); err != nil || ad.VRID != 51 || ad.Priority != 254 {
		t.Fatalf("the valid advert does not parse back: %+v, %v", ad, err)
	}

	cases := []struct {
		name    string
		ttl     int
		payload []byte
		reason  string // the drop counter that must count every copy
	}{
		{"ttl 64", 64, valid(), "ttl"},
		{"ttl 254", 254, valid(), "ttl"},
		{"vrid 99", packet.TTL, build(3, 99, 254), "vrid"},
		{"truncated to 6 bytes", packet.TTL, valid()[:6], "length"},
		{"truncated address list (10 of 12 bytes)", packet.TTL, valid()[:10], "length"},
		{"bad checksum (bit flipped)", packet.TTL, func() []byte { b := valid(); b[7] ^= 0x01; return b }(), "checksum"},
		{"checksum without the pseudo-header", packet.TTL, resum(valid(), 2), "checksum"},
		{"version 4", packet.TTL, func() []byte { b := valid(); b[0] = 4<<4 | 1; return resum(b, 3) }(), "version"},
		{"version 2 to a version 3 instance", packet.TTL, build(2, 51, 254), "version"},
		{"type 2", packet.TTL, func() []byte { b := valid(); b[0] = 3<<4 | 2; return resum(b, 3) }(), "type"},
		{"trailing garbage", packet.TTL, resum(append(valid(), 0xde, 0xad, 0xbe, 0xef), 3), "length"},
		{"interval 0", packet.TTL, func() []byte { b := valid(); b[4], b[5] = 0, 0; return resum(b, 3) }(), "interval"},
		{"no address (count 0)", packet.TTL, func() []byte { b := valid()[:8]; b[3] = 0; return resum(b, 3) }(), "length"},
		{"priority 0, ttl 64", 64, build(3, 51, 0), "ttl"},
		{"priority 0, bad checksum", packet.TTL, func() []byte { b := build(3, 51, 0); b[6] ^= 0x80; return b }(), "checksum"},
		{"priority 0, version 2", packet.TTL, build(2, 51, 0), "version"},
		{"priority 0, truncated", packet.TTL, build(3, 51, 0)[:7], "length"},
	}

	nodes := []*node{fw1, fw2}
	transitions := map[string]uint64{}
	for _, n := range nodes {
		transitions[n.role] = malfMustStats(t, n).Transitions
	}

	// Watch the states for the whole malformed phase.
	mon := malfWatch(fw1, fw2, fw1Addr)
	t.Cleanup(func() { mon.stop() })

	const copies = 20
	for _, c := range cases {
		before := map[string]control.VRRPStats{}
		for _, n := range nodes {
			before[n.role] = malfMustStats(t, n)
		}
		for i := range copies {
			if err := inj.send(c.ttl, c.payload); err != nil {
				t.Fatalf("%s: send copy %d: %v", c.name, i, err)
			}
			time.Sleep(3 * time.Millisecond)
		}
		after := map[string]control.VRRPStats{}
		err := lab.WaitFor(3*time.Second, 50*time.Millisecond, func() (bool, error) {
			for _, n := range nodes {
				s, err := malfLANStats(n)
				if err != nil {
					return false, err
				}
				after[n.role] = s
			}
			for _, n := range nodes {
				if after[n.role].Drops[c.reason]-before[n.role].Drops[c.reason] < copies {
					return false, nil
				}
			}
			return true, nil
		})
		if err != nil {
			t.Errorf("%s: not every copy counted as %q within 3s: %v", c.name, c.reason, err)
		}
		var report []string
		for _, n := range nodes {
			b, a := before[n.role], after[n.role]
			deltas := malfDropDeltas(b, a)
			report = append(report, fmt.Sprintf("%s %s received+%d", n.role, malfNonZero(deltas), a.AdvertsReceived-b.AdvertsReceived))
			if got := deltas[c.reason]; got < copies {
				t.Errorf("%s: %s counted %d of %d copies as drops[%q]; drop deltas %v (% x)",
					c.name, n.role, got, copies, c.reason, deltas, c.payload)
			}
			for reason, d := range deltas {
				if reason != c.reason && d != 0 {
					t.Errorf("%s: %s counted %d drops as %q, want only %q (% x)", c.name, n.role, d, reason, c.reason, c.payload)
				}
			}
			// fw2 is a backup and sends nothing: whatever fw1 accepts
			// came from the client.
			if n == fw1 && a.AdvertsReceived != b.AdvertsReceived {
				t.Errorf("%s: fw1 accepted %d adverts", c.name, a.AdvertsReceived-b.AdvertsReceived)
			}
		}
		t.Logf("%-42s ttl %3d %2d bytes -> %s", c.name, c.ttl, len(c.payload), strings.Join(report, "; "))
	}

	time.Sleep(500 * time.Millisecond) // any late effect shows now
	for _, v := range mon.stop() {
		t.Errorf("state changed while malformed packets arrived: %s", v)
	}
	for _, n := range nodes {
		if got := malfMustStats(t, n).Transitions; got != transitions[n.role] {
			t.Errorf("%s: lan instance made %d transitions during the malformed phase", n.role, got-transitions[n.role])
		}
	}
	if has, err := l.HasAddr(lab.RoleFW1, "lan", vip); err != nil || !has {
		t.Errorf("the VIP %s left fw1 (has %v, err %v)", vip, has, err)
	}
	if has, err := l.HasAddr(lab.RoleFW2, "lan", vip); err != nil || has {
		t.Errorf("fw2 holds the VIP %s (has %v, err %v)", vip, has, err)
	}
	if t.Failed() {
		t.FailNow()
	}

	// Control: the same advert, well formed, does reach the firewalls and
	// makes fw1 (priority 150) step down for the forged priority 254.
	rx := malfMustStats(t, fw1).AdvertsReceived
	var seen control.Status
	start := time.Now()
	err := lab.WaitFor(time.Second, 0, func() (bool, error) {
		if err := inj.send(packet.TTL, valid()); err != nil {
			return false, err
		}
		st, err := fw1.status()
		if err != nil {
			return false, err
		}
		for _, g := range st.Groups {
			if g.Name == "fw" && g.State != "MASTER" {
				seen = st
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("control: a valid priority-254 advert from the client did not make fw1 leave MASTER within 1s: %v\n%s",
			err, fw1.proc.Tail(30))
	}
	t.Logf("control: fw1's group left MASTER %v after the first valid advert", time.Since(start).Round(time.Millisecond))
	for _, g := range seen.Groups {
		if g.Name == "fw" && g.State != "BACKUP" {
			t.Errorf("control: fw1's group went %s, want BACKUP", g.State)
		}
	}
	for _, in := range seen.Instances {
		if in.Name == "lan" && in.Master != src.String() {
			t.Errorf("control: fw1's lan instance names %q as master, want the client %s", in.Master, src)
		}
	}
	if got := malfMustStats(t, fw1).AdvertsReceived; got <= rx {
		t.Errorf("control: fw1 counted no received advert (%d before, %d after)", rx, got)
	}
	// Not asserted: fw1 takes back over after Master_Down.
	err = lab.WaitFor(3*time.Second, 20*time.Millisecond, func() (bool, error) {
		return fw1.states()["group:fw"] == "MASTER", nil
	})
	t.Logf("control: fw1 back to MASTER after the forged master went quiet: %v", err == nil)
}

// malfInjector sends raw VRRP payloads from a socket in another namespace;
// the kernel builds the IP header.
type malfInjector struct {
	pc *ipv4.PacketConn
}

var malfGroup = &net.IPAddr{IP: packet.Group4.AsSlice()}

func (in *malfInjector) send(ttl int, b []byte) error {
	if err := in.pc.SetMulticastTTL(ttl); err != nil {
		return err
	}
	_, err := in.pc.WriteTo(b, nil, malfGroup)
	return err
}

// sendTo sends b to a unicast address with VRRP's TTL.
func (in *malfInjector) sendTo(b []byte, dst netip.Addr) error {
	if err := in.pc.SetTTL(packet.TTL); err != nil {
		return err
	}
	_, err := in.pc.WriteTo(b, nil, &net.IPAddr{IP: dst.AsSlice()})
	return err
}

// malfOpenInjector opens the raw socket in namespace ns (see inNS for why
// the thread must come back rather than exit locked).
func malfOpenInjector(t *testing.T, ns, ifname string, src netip.Addr) *malfInjector {
	t.Helper()
	var pc *ipv4.PacketConn
	if err := inNS(ns, func() (err error) { pc, err = malfListen(ifname, src); return err }); err != nil {
		t.Fatalf("raw VRRP socket in %s: %v", ns, err)
	}
	t.Cleanup(func() { pc.Close() })
	return &malfInjector{pc: pc}
}

// malfListen opens the injector's socket in the calling thread's namespace.
func malfListen(ifname string, src netip.Addr) (*ipv4.PacketConn, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, err
	}
	c, err := net.ListenPacket(fmt.Sprintf("ip4:%d", packet.Protocol), src.String())
	if err != nil {
		return nil, err
	}
	pc := ipv4.NewPacketConn(c)
	if err := errors.Join(pc.SetMulticastInterface(ifi), pc.SetMulticastLoopback(false)); err != nil {
		pc.Close()
		return nil, err
	}
	return pc, nil
}

// malfLANStats returns the counters of the node's "lan" instance from
// `ctha stats --json`.
func malfLANStats(n *node) (control.VRRPStats, error) {
	out, err := n.ctl("stats", "--json")
	if err != nil {
		return control.VRRPStats{}, err
	}
	var st control.Stats
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return control.VRRPStats{}, fmt.Errorf("stats --json: %w\n%s", err, out)
	}
	for _, s := range st.VRRP {
		if s.Instance == "lan" {
			return s, nil
		}
	}
	return control.VRRPStats{}, fmt.Errorf("stats --json has no lan instance:\n%s", out)
}

func malfMustStats(t *testing.T, n *node) control.VRRPStats {
	t.Helper()
	s, err := malfLANStats(n)
	if err != nil {
		t.Fatalf("%s: %v", n.role, err)
	}
	return s
}

// malfDropDeltas returns every drop reason's increase from b to a.
func malfDropDeltas(b, a control.VRRPStats) map[string]uint64 {
	d := map[string]uint64{}
	for reason := range a.Drops {
		d[reason] = a.Drops[reason] - b.Drops[reason]
	}
	return d
}

// malfNonZero formats the non-zero drop deltas, "none" if there are none.
func malfNonZero(deltas map[string]uint64) string {
	var out []string
	for _, reason := range slices.Sorted(maps.Keys(deltas)) {
		if deltas[reason] != 0 {
			out = append(out, fmt.Sprintf("%s+%d", reason, deltas[reason]))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ",")
}

// malfInstance returns the node's named instance status (zero on error).
func malfInstance(n *node, name string) control.InstanceStatus {
	st, err := n.status()
	if err != nil {
		return control.InstanceStatus{}
	}
	for _, in := range st.Instances {
		if in.Name == name {
			return in
		}
	}
	return control.InstanceStatus{}
}

// malfMonitor polls both nodes until stopped and records every moment fw1
// is not MASTER, fw2 not BACKUP, or fw2 names another master than fw1.
type malfMonitor struct {
	done       chan struct{}
	once       sync.Once
	wg         sync.WaitGroup
	mu         sync.Mutex
	violations []string
}

func malfWatch(fw1, fw2 *node, master netip.Addr) *malfMonitor {
	m := &malfMonitor{done: make(chan struct{})}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			select {
			case <-m.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			for _, want := range []struct {
				n     *node
				state string
			}{{fw1, "MASTER"}, {fw2, "BACKUP"}} {
				st, err := want.n.status()
				if err != nil {
					continue // a slow poll is not a state change
				}
				for _, g := range st.Groups {
					if g.State != want.state {
						m.add("%s: group %s is %s, want %s", want.n.role, g.Name, g.State, want.state)
					}
				}
				for _, in := range st.Instances {
					if in.State != want.state {
						m.add("%s: instance %s is %s, want %s", want.n.role, in.Name, in.State, want.state)
					}
					if want.n == fw2 && in.Name == "lan" && in.Master != master.String() {
						m.add("fw2: lan instance names %q as master, want %s", in.Master, master)
					}
				}
			}
		}
	}()
	return m
}

func (m *malfMonitor) add(format string, args ...any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.violations) < 20 {
		m.violations = append(m.violations, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
	}
}

// stop ends the polling and returns what it saw.
func (m *malfMonitor) stop() []string {
	m.once.Do(func() { close(m.done) })
	m.wg.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.violations
}
