package nfqtable

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables/expr"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/ctha/ctha/ctsync/nfq"
	"github.com/ctha/ctha/internal/nstest"
)

const testQueue = 3170

// lab is one namespace with ctha's table and TCP listeners on both
// loopback addresses: a connection's SYN crosses postrouting there.
type lab struct {
	t     testing.TB
	ns    *nstest.NS
	table *Table
	addrs []string // listeners: "127.0.0.1:port", "[::1]:port"
}

func newLab(t testing.TB) *lab {
	t.Helper()
	ns := nstest.New(t, "nfqt")
	tab, err := New(Options{NetNS: int(ns.Handle)})
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, ns: ns, table: tab}
	var wg sync.WaitGroup
	// Cleanups run last registered first: the accept loops are waited for
	// after their listeners are closed.
	t.Cleanup(wg.Wait)
	for _, a := range []string{"127.0.0.1:0", "[::1]:0"} {
		var ln net.Listener
		if err := ns.In(func() (err error) { ln, err = net.Listen("tcp", a); return err }); err != nil {
			t.Fatalf("listen %s: %v", a, err)
		}
		l.addrs = append(l.addrs, ln.Addr().String())
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		t.Cleanup(func() { ln.Close() })
	}
	return l
}

// dial connects to addr from inside the namespace.
func (l *lab) dial(addr string, timeout time.Duration) error {
	return l.ns.In(func() error {
		c, err := net.DialTimeout("tcp", addr, timeout)
		if err == nil {
			c.Close()
		}
		return err
	})
}

func (l *lab) dialAll(timeout time.Duration) {
	l.t.Helper()
	for _, a := range l.addrs {
		if err := l.dial(a, timeout); err != nil {
			l.t.Fatalf("connect to %s: %v", a, err)
		}
	}
}

func (l *lab) open(opts nfq.Options) (*nfq.Queue, error) {
	var q *nfq.Queue
	err := l.ns.In(func() (err error) { q, err = nfq.Open(testQueue, opts); return err })
	return q, err
}

// tcpOf returns the destination port and flags of an IPv4 or IPv6 TCP
// packet's copied headers.
func tcpOf(p nfq.Packet) (dport uint16, flags uint8, ok bool) {
	b := p.Payload
	var off int
	switch {
	case p.Family == unix.NFPROTO_IPV4 && len(b) >= 20 && b[9] == unix.IPPROTO_TCP:
		off = int(b[0]&0x0f) * 4
	case p.Family == unix.NFPROTO_IPV6 && len(b) >= 40 && b[6] == unix.IPPROTO_TCP:
		off = 40
	default:
		return 0, 0, false
	}
	if len(b) < off+14 {
		return 0, 0, false
	}
	return uint16(b[off+2])<<8 | uint16(b[off+3]), b[off+13], true
}

func port(addr string) uint16 {
	_, p, _ := net.SplitHostPort(addr)
	var n uint16
	fmt.Sscan(p, &n)
	return n
}

// TestTableQueueNetns: ctha's table and queue in a namespace. The rule
// goes in natively or through the compat target (this kernel: compat);
// with nothing bound, SYNs pass (bypass); with the queue bound they arrive
// in postrouting, IPv4 and IPv6, and pass or not by verdict: single,
// several at once, or a batch; a second client of the queue is refused;
// after Close they pass again. Install and Remove leave the
// administrator's table as it was; after `nft flush ruleset` Check
// reports the table missing and Reinstall restores it.
func TestTableQueueNetns(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // after the lab's cleanups
	l := newLab(t)
	admin := "table inet fw {\n\tchain out {\n\t\ttype filter hook output priority filter; policy accept;\n\t\ttcp dport 9 accept\n\t}\n}\n"
	if out, err := l.ns.TryInput(admin, "nft", "-f", "-"); err != nil {
		t.Fatalf("administrator's table: %v: %s", err, out)
	}
	adminBefore := l.ns.Exec("nft", "list", "table", "inet", "fw")

	// What the kernel says to the native expression (this one: ENOENT,
	// no CONFIG_NFT_QUEUE).
	native, err := New(Options{NetNS: int(l.ns.Handle), ForceMode: ModeNative})
	if err != nil {
		t.Fatal(err)
	}
	if err := native.Install(testQueue, MatchTCPSyn()); err != nil {
		t.Logf("native queue expression: %v", err)
		if !errors.Is(err, ErrUnsupported) {
			t.Errorf("native Install failed, but not as unsupported: %v", err)
		}
	} else {
		t.Logf("native queue expression: works")
	}

	if err := l.table.Install(testQueue, MatchTCPSyn()); err != nil {
		t.Fatalf("Install: %v", err)
	}
	t.Logf("queue rule installed as %v", l.table.Mode())
	if ok, err := l.table.Check(); !ok || err != nil {
		t.Fatalf("Check after Install = %v, %v; want true", ok, err)
	}
	for _, fam := range []string{"ip", "ip6"} {
		listed := l.ns.Exec("nft", "list", "table", fam, TableName)
		t.Logf("nft list table %s %s:\n%s", fam, TableName, listed)
		// nft shows the compat target as `queue num N bypass` if it finds
		// iptables' libxt_NFQUEUE, else as "XT target NFQUEUE not found".
		if !strings.Contains(listed, "hook postrouting priority 200") ||
			!strings.Contains(listed, "queue") && !strings.Contains(listed, "NFQUEUE") {
			t.Errorf("nft list table %s %s does not show the chain in postrouting and the queue rule", fam, TableName)
		}
	}

	// Nothing bound: bypass.
	l.dialAll(2 * time.Second)

	q, err := l.open(nfq.Options{Conntrack: true})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Logf("conntrack glue: %v", q.Glue())

	// The consumer: verdicts by policy, and every packet to the test.
	const (
		accept int32 = iota
		drop
		hold
	)
	var policy atomic.Int32
	got := make(chan nfq.Packet, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for p := range q.Packets() {
			switch policy.Load() {
			case accept:
				_ = q.Verdict(p.ID, nfq.Accept)
			case drop:
				_ = q.Verdict(p.ID, nfq.Drop)
			}
			got <- p
		}
	}()
	next := func() nfq.Packet {
		t.Helper()
		select {
		case p := <-got:
			return p
		case <-time.After(2 * time.Second):
			t.Fatalf("no packet queued in 2 s")
			return nfq.Packet{}
		}
	}

	// Accepted one by one.
	for i, a := range l.addrs {
		if err := l.dial(a, 2*time.Second); err != nil {
			t.Fatalf("connect to %s with the queue accepting: %v", a, err)
		}
		p := next()
		dport, flags, ok := tcpOf(p)
		wantFamily := []uint8{unix.NFPROTO_IPV4, unix.NFPROTO_IPV6}[i]
		if !ok || p.Family != wantFamily || p.Hook != nfq.HookPostrouting || dport != port(a) || flags&0x12 != 0x02 {
			t.Errorf("%s: queued packet family %d hook %v dport %d flags %#x (ok %v), want family %d, postrouting, dport %d, SYN",
				a, p.Family, p.Hook, dport, flags, ok, wantFamily, port(a))
		}
		if q.Glue() != (p.CT != nil) {
			t.Errorf("glue %v but packet CT %v", q.Glue(), p.CT)
		}
	}

	// Dropped: the connection does not open (the SYN's retransmission
	// would come after 1 s).
	policy.Store(drop)
	if err := l.dial(l.addrs[0], 300*time.Millisecond); err == nil {
		t.Errorf("connected with the queue dropping SYNs")
	}
	next()

	// Held, then released: several at once, then a batch.
	policy.Store(hold)
	release := func(name string, free func(ids []uint32) error) {
		t.Helper()
		errs := make(chan error, 3)
		for i := range 3 {
			go func() { errs <- l.dial(l.addrs[i%2], 3*time.Second) }()
		}
		var ids []uint32
		for range 3 {
			ids = append(ids, next().ID)
		}
		select {
		case err := <-errs:
			t.Fatalf("%s: a connection ended while its SYN was held: %v", name, err)
		case <-time.After(100 * time.Millisecond):
		}
		if err := free(ids); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for range 3 {
			if err := <-errs; err != nil {
				t.Errorf("%s: connect: %v", name, err)
			}
		}
	}
	release("Verdicts", func(ids []uint32) error { return q.Verdicts(ids, nfq.Accept) })
	release("VerdictBatch", func(ids []uint32) error { return q.VerdictBatch(max(ids[0], ids[1], ids[2]), nfq.Accept) })

	// A second client is refused.
	if _, err := l.open(nfq.Options{}); !errors.Is(err, nfq.ErrQueueTaken) {
		t.Errorf("second Open: %v, want ErrQueueTaken", err)
	}

	// Close lets a held packet pass: the connection opens at once, not
	// after the SYN's retransmission (1 s).
	policy.Store(hold)
	held := make(chan error, 1)
	start := time.Now()
	go func() { held <- l.dial(l.addrs[0], 3*time.Second) }()
	next()
	if err := q.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := <-held; err != nil {
		t.Errorf("connect with its SYN held at Close: %v", err)
	} else if took := time.Since(start); took > 800*time.Millisecond {
		t.Errorf("connect with its SYN held at Close took %v: the SYN was dropped, not accepted", took)
	}
	<-done
	if s := q.Stats(); s.Malformed != 0 || s.Overruns != 0 || s.Overflow != 0 || s.VerdictErrors != 0 {
		t.Errorf("stats %+v, want no errors", s)
	}
	// Closed: bypass again.
	l.dialAll(2 * time.Second)

	if err := l.table.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if ok, err := l.table.Check(); ok || err != nil {
		t.Errorf("Check after Remove = %v, %v; want false", ok, err)
	}
	if err := l.table.Remove(); err != nil {
		t.Errorf("Remove of a removed table: %v", err)
	}
	if after := l.ns.Exec("nft", "list", "table", "inet", "fw"); after != adminBefore {
		t.Errorf("the administrator's table changed:\nbefore:\n%s\nafter:\n%s", adminBefore, after)
	}

	// `nft flush ruleset`, then the reconcile, woken by Watch.
	if err := l.table.Install(testQueue, MatchTCPSyn()); err != nil {
		t.Fatalf("Install: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	woken := make(chan struct{}, 1)
	watched := make(chan error, 1)
	go func() {
		watched <- l.table.Watch(ctx, func() {
			select {
			case woken <- struct{}{}:
			default:
			}
		})
	}()
	defer func() {
		cancel()
		if err := <-watched; !errors.Is(err, context.Canceled) {
			t.Errorf("Watch returned %v, want context.Canceled", err)
		}
	}()
	time.Sleep(50 * time.Millisecond) // Watch joins the group
	l.ns.Exec("nft", "flush", "ruleset")
	select {
	case <-woken:
	case <-time.After(2 * time.Second):
		t.Errorf("Watch was not woken by flush ruleset")
	}
	if ok, err := l.table.Check(); ok || err != nil {
		t.Errorf("Check after flush ruleset = %v, %v; want false", ok, err)
	}
	if restored, err := l.table.Reinstall(); !restored || err != nil {
		t.Errorf("Reinstall after flush ruleset = %v, %v; want true", restored, err)
	}
	if ok, err := l.table.Check(); !ok || err != nil {
		t.Errorf("Check after Reinstall = %v, %v; want true", ok, err)
	}
	if restored, err := l.table.Reinstall(); restored || err != nil {
		t.Errorf("Reinstall of a table in place = %v, %v; want false", restored, err)
	}
	if err := l.table.Remove(); err != nil {
		t.Errorf("Remove: %v", err)
	}
}

// TestOverrunNetns: a flood of queued packets overruns a small receive
// buffer; ENOBUFS is counted, the kernel lets those packets through
// (fail-open) and the queue keeps working.
func TestOverrunNetns(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // after the lab's cleanups
	l := newLab(t)
	const dport = 9999
	udp := Match{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{dport >> 8, dport & 0xff}},
	}
	if err := l.table.Install(testQueue, udp); err != nil {
		t.Fatalf("Install: %v", err)
	}
	q, err := l.open(nfq.Options{ReadBuffer: 4096})
	if err != nil {
		t.Fatal(err)
	}
	var received atomic.Uint64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for p := range q.Packets() {
			received.Add(1)
			_ = q.Verdict(p.ID, nfq.Accept)
		}
	}()
	var conn net.Conn
	if err := l.ns.In(func() (err error) { conn, err = net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", dport)); return err }); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	payload := make([]byte, 64)
	for round := 0; round < 20 && q.Stats().Overruns == 0; round++ {
		for range 5000 {
			_, _ = conn.Write(payload)
		}
	}
	s := q.Stats()
	t.Logf("stats after the flood: %+v; delivered %d", s, received.Load())
	if s.Overruns == 0 {
		t.Errorf("no ENOBUFS in 100k packets with a 4 KiB buffer")
	}
	// Still working: a packet sent now arrives.
	before := received.Load()
	deadline := time.Now().Add(2 * time.Second)
	for received.Load() == before && time.Now().Before(deadline) {
		_, _ = conn.Write(payload)
		time.Sleep(10 * time.Millisecond)
	}
	if received.Load() == before {
		t.Errorf("no packet delivered after the overrun")
	}
	if err := q.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	<-done
	if err := l.table.Remove(); err != nil {
		t.Errorf("Remove: %v", err)
	}
}
