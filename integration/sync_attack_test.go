package integration

import (
	"crypto/rand"
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/auth"
	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/integration/lab"
	"github.com/ctha/ctha/internal/control"
)

// syncPort is the sync link's UDP port (the default).
const syncPort = 3780

// capture collects the sync datagrams (UDP payloads) a namespace
// receives from its peer's sync port, read from a raw UDP socket there.
type capture struct {
	conn net.PacketConn
	mu   sync.Mutex
	got  [][]byte
	done chan struct{}
}

// startCapture opens a raw IPv4 UDP socket bound to local in namespace
// ns: it sees a copy of every UDP datagram to that address.
func startCapture(t *testing.T, ns string, local netip.Addr) *capture {
	t.Helper()
	var c net.PacketConn
	if err := inNS(ns, func() (err error) { c, err = net.ListenPacket("ip4:udp", local.String()); return err }); err != nil {
		t.Fatalf("raw UDP socket in %s: %v", ns, err)
	}
	cp := &capture{conn: c, done: make(chan struct{})}
	go func() {
		defer close(cp.done)
		buf := make([]byte, 65536)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			// The IPv4 header is stripped: a UDP header, then the payload.
			if n < 8 || binary.BigEndian.Uint16(buf[0:]) != syncPort || binary.BigEndian.Uint16(buf[2:]) != syncPort {
				continue
			}
			cp.mu.Lock()
			cp.got = append(cp.got, append([]byte(nil), buf[8:n]...))
			cp.mu.Unlock()
		}
	}()
	t.Cleanup(cp.stop)
	return cp
}

// stop closes the socket and returns what was captured.
func (cp *capture) stop() {
	cp.conn.Close()
	<-cp.done
}

// count is the number of datagrams captured so far.
func (cp *capture) count() int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return len(cp.got)
}

func (cp *capture) datagrams() [][]byte {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return slices.Clone(cp.got)
}

// TestSyncForgedReplayedMalformed: datagrams sent to fw1's sync port from
// fw2's namespace (the configured peer's address, another port) that are
// garbage, forged (sealed under another key), replayed (real datagrams
// captured on the link), reflected (fw1's own), truncated or oversized, or
// that come from another address, are all dropped and counted under their
// reason, and change nothing: neither fw1's caches nor its kernel table.
// The forged, replayed and truncated ones are copies of the real
// datagrams that carried flows since deleted: accepted, they would bring
// those flows back. Afterwards replication still works.
func TestSyncForgedReplayedMalformed(t *testing.T) {
	lab.RequireNetns(t)
	const n = 2000
	// A second address on fw2's sync interface, to send from an address
	// that is not the configured peer. Added before ctha starts: the flows
	// of a node's own addresses are not replicated, and ctha lists them at
	// start (and at each reconciling dump).
	p := newSyncPair(t, "direct", "direct", func(l *lab.Lab) {
		l.MustExec(t, lab.RoleFW2, "ip", "addr", "add", "10.10.3.9/24", "dev", "sync")
	})
	fw1NS, fw2NS := p.lab.NS(lab.RoleFW1), p.lab.NS(lab.RoleFW2)
	fw1Addr, fw2Addr := lab.FW1Sync.Addr(), lab.FW2Sync.Addr()

	// Capture the real traffic both ways while flows made in fw2 reach
	// fw1 and are deleted again.
	from2 := startCapture(t, fw1NS, fw1Addr) // fw2 -> fw1: fw2's datagrams
	from1 := startCapture(t, fw2NS, fw2Addr) // fw1 -> fw2: fw1's datagrams
	flows := mixedFlows(2, 0, n)
	writeFlows(t, p.c2, kernel.Create, flows)
	waitTablesEqual(t, "fw1's kernel vs fw2's", p.c2, p.c1, true, 30*time.Second)
	writeFlows(t, p.c2, kernel.Delete, flows)
	waitEntries(t, p.fw1, 30*time.Second, "no external entries", func(s control.SyncStatus) bool { return s.ExternalEntries == 0 })
	waitTablesEqual(t, "fw1's kernel vs fw2's after deletions", p.c2, p.c1, true, 30*time.Second)
	// fw1 only receives: it sends ACKs (few, coalesced) and a keep-alive
	// every 250 ms. Wait for enough of them to replay.
	if err := lab.WaitFor(10*time.Second, 50*time.Millisecond, func() (bool, error) {
		return from1.count() >= 20, nil
	}); err != nil {
		t.Fatalf("fw1 sent %d datagrams in 10 s, want 20: %v", from1.count(), err)
	}
	from2.stop()
	from1.stop()
	real2, real1 := from2.datagrams(), from1.datagrams()
	key, err := auth.ParseKey([]byte(testKey))
	if err != nil {
		t.Fatal(err)
	}
	// The datagrams that carried flow records (not only keep-alives and
	// ACKs).
	var data2 [][]byte
	for _, d := range real2 {
		if _, payload, err := auth.Open(&key, d); err == nil && carriesData(payload) {
			data2 = append(data2, d)
		}
	}
	if len(data2) < 10 || len(real1) < 10 {
		t.Fatalf("captured %d datagrams with data from fw2 (%d in all), %d from fw1: too few", len(data2), len(real2), len(real1))
	}
	t.Logf("captured %d datagrams from fw2 (%d with data), %d from fw1", len(real2), len(data2), len(real1))

	wrongKey := key
	wrongKey[0] ^= 0x80
	// forge re-seals a real payload under the wrong key, with a sequence
	// number far ahead (accepted, it would not be a replay).
	forge := func(d []byte) []byte {
		h, payload, err := auth.Open(&key, d)
		if err != nil {
			t.Fatal(err)
		}
		h.Seq += 1 << 20
		return auth.Seal(nil, &wrongKey, h, payload)
	}
	random := func(n int, first byte) []byte {
		b := make([]byte, n)
		rand.Read(b)
		b[0] = first
		return b
	}
	var cases = []struct {
		name   string
		reason string
		from   netip.Addr
		dgrams [][]byte
	}{
		{"garbage (unknown version byte)", "version", fw2Addr, repeat(10, func(int) []byte { return random(300, 0xee) })},
		{"garbage (version 1, no valid tag)", "auth", fw2Addr, repeat(10, func(int) []byte { return random(300, auth.Version) })},
		{"forged: real payloads sealed under another key", "auth", fw2Addr, mapSlice(data2, forge)},
		{"replayed: real datagrams of fw2", "replay", fw2Addr, data2},
		{"reflected: fw1's own datagrams sent back", "reflected", fw2Addr, real1[:min(len(real1), 50)]},
		{"truncated below the envelope", "short", fw2Addr, mapSlice(data2[:10], func(d []byte) []byte { return d[:20] })},
		{"truncated (tag cut)", "auth", fw2Addr, mapSlice(data2[:10], func(d []byte) []byte { return d[:len(d)-5] })},
		{"truncated to nothing", "short", fw2Addr, [][]byte{{}}},
		{"oversize (9001 bytes)", "oversize", fw2Addr, repeat(5, func(int) []byte { return random(9001, auth.Version) })},
		{"oversize (a real payload padded to 20000 bytes)", "oversize", fw2Addr, [][]byte{append(slices.Clone(data2[0]), make([]byte, 20000)...)}},
		{"real datagram from another address", "unknown_source", netip.MustParseAddr("10.10.3.9"), data2[:10]},
	}

	before1 := dumpTable(t, p.c1)
	st1 := mustSyncStatus(t, p.fw1)
	dst := netip.AddrPortFrom(fw1Addr, syncPort)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s0 := syncStats(t, p.fw1)
			conn := udpIn(t, fw2NS, c.from)
			for _, d := range c.dgrams {
				if _, err := conn.WriteToUDPAddrPort(d, dst); err != nil {
					t.Fatalf("send: %v", err)
				}
			}
			want := s0.Drops[c.reason] + uint64(len(c.dgrams))
			var s1 = s0
			err := lab.WaitFor(5*time.Second, 50*time.Millisecond, func() (bool, error) {
				s1 = syncStats(t, p.fw1)
				return s1.Drops[c.reason] >= want, nil
			})
			if err != nil {
				t.Fatalf("drops[%s] = %d, want %d (+%d): all drops %v", c.reason, s1.Drops[c.reason], want, len(c.dgrams), s1.Drops)
			}
			if s1.Drops[c.reason] != want {
				t.Errorf("drops[%s] = %d, want exactly %d", c.reason, s1.Drops[c.reason], want)
			}
			for r, v := range s1.Drops {
				if r != c.reason && v != s0.Drops[r] {
					t.Errorf("drops[%s] changed too: %d -> %d", r, s0.Drops[r], v)
				}
			}
			if s1.Records != s0.Records {
				t.Errorf("records applied changed: %d -> %d", s0.Records, s1.Records)
			}
			if s1.Protocol.Malformed != s0.Protocol.Malformed {
				t.Errorf("the protocol saw %d malformed payloads: they got past the envelope", s1.Protocol.Malformed-s0.Protocol.Malformed)
			}
		})
	}
	// Nothing changed in fw1.
	time.Sleep(500 * time.Millisecond)
	after1 := dumpTable(t, p.c1)
	if d := tableDiff(before1, after1, false, 10); len(d) > 0 {
		t.Errorf("fw1's kernel table changed:\n%s", strings.Join(d, "\n"))
	}
	st2 := mustSyncStatus(t, p.fw1)
	if st2.InternalEntries != st1.InternalEntries || st2.ExternalEntries != st1.ExternalEntries || !st2.PeerUp {
		t.Errorf("fw1's sync status changed: internal %d -> %d, external %d -> %d, peer_up %v",
			st1.InternalEntries, st2.InternalEntries, st1.ExternalEntries, st2.ExternalEntries, st2.PeerUp)
	}
	// And replication goes on.
	more := mixedFlows(2, n, n+500)
	writeFlows(t, p.c2, kernel.Create, more)
	waitTablesEqual(t, "fw1's kernel vs fw2's after the attack", p.c2, p.c1, true, 30*time.Second)
}

// carriesData reports whether a sync payload holds a DATA message
// (ctsync/proto: messages of a type byte, a uvarint length and a body;
// DATA is type 1).
func carriesData(payload []byte) bool {
	for len(payload) > 0 {
		typ := payload[0]
		n, l := binary.Uvarint(payload[1:])
		if l <= 0 || uint64(len(payload)-1-l) < n {
			return false
		}
		if typ == 0x01 {
			return true
		}
		payload = payload[1+l+int(n):]
	}
	return false
}

// udpIn opens a UDP socket bound to local (port 0) in namespace ns.
func udpIn(t *testing.T, ns string, local netip.Addr) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := inNS(ns, func() (err error) {
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
		return err
	})
	if err != nil {
		t.Fatalf("UDP socket in %s: %v", ns, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func repeat(n int, f func(int) []byte) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

func mapSlice(in [][]byte, f func([]byte) []byte) [][]byte {
	out := make([][]byte, len(in))
	for i, d := range in {
		out[i] = f(d)
	}
	return out
}
