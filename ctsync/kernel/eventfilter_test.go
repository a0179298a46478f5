package kernel

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"golang.org/x/net/bpf"

	"github.com/ctha/ctha/ctsync/ct"
)

// eventBytes builds a flow event as ctnetlink_conntrack_event lays it out:
// tuples, id, status, timeout (not for a destroy), then the protocol info
// (for a destroy only the state), unless noProtoInfo.
func eventBytes(t *testing.T, typ EventType, f ct.Flow, noProtoInfo bool) []byte {
	t.Helper()
	family := netfilter.ProtoIPv4
	if f.Orig.V6 {
		family = netfilter.ProtoIPv6
	}
	h := netfilter.Header{SubsystemID: netfilter.NFSubsysCTNetlink, MessageType: msgCTNew, Family: family}
	switch typ {
	case EventNew:
		h.Flags = netlink.Create | netlink.Excl
	case EventDestroy:
		h.MessageType = msgCTDelete
	}
	var w nlBuf
	ae := &w
	ae.begin(h)
	encodeTuple(ae, ctaTupleOrig, f.Orig)
	encodeTuple(ae, ctaTupleReply, f.Reply)
	if f.Zone != 0 {
		ae.Uint16(ctaZone, f.Zone)
	}
	ae.Uint32(12, 0xdeadbeef) // CTA_ID
	ae.Uint32(ctaStatus, f.Status)
	if typ != EventDestroy {
		ae.Uint32(ctaTimeout, f.Timeout)
	}
	if !noProtoInfo {
		if typ == EventDestroy && f.Orig.Proto == ct.ProtoTCP {
			ae.Nested(ctaProtoInfo, func(pae *nlBuf) {
				pae.Nested(ctaProtoInfoTCP, func(tae *nlBuf) {
					tae.Uint8(ctaTCPState, f.TCP.State)
				})
			})
		} else {
			encodeProtoInfo(ae, &f, false)
		}
	}
	ae.Uint32(ctaMark, f.Mark)
	if err := w.end(); err != nil {
		t.Fatal(err)
	}
	w.setHeader(0, 0, 4242, false)
	return w.message(0)
}

func tcpIn(state uint8, src, dst string) ct.Flow {
	f := plain(ct.ProtoTCP, src, dst, 40000, 80)
	f.TCP.State = state
	f.Status, f.Timeout = ct.StatusConfirmed|ct.StatusAssured, 300
	return f
}

func TestEventFilterProgram(t *testing.T) {
	flt := EventFilter{
		Protocols:        []uint8{ct.ProtoTCP, ct.ProtoUDP},
		ExcludeProtocols: []uint8{112},
		Ignore: []netip.Prefix{
			netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.9.9.9/32"),
			netip.MustParsePrefix("192.168.16.0/20"), netip.MustParsePrefix("::1/128"),
			netip.MustParsePrefix("fd00:bad::/40"),
		},
		TCPStates: []uint8{ct.TCPEstablished, ct.TCPTimeWait},
	}
	raw, err := flt.program([]uint32{4243})
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(mustDisassemble(t, raw))
	if err != nil {
		t.Fatal(err)
	}
	est := ct.TCPEstablished
	vrrp := plain(112, "10.1.0.1", "224.0.0.18", 0, 0)
	for _, tt := range []struct {
		name        string
		typ         EventType
		flow        ct.Flow
		noProtoInfo bool
		keep        bool
	}{
		{name: "tcp established", typ: EventNew, flow: tcpIn(est, "10.1.0.1", "10.2.0.1"), keep: true},
		{name: "tcp time wait update", typ: EventUpdate, flow: tcpIn(ct.TCPTimeWait, "10.1.0.1", "10.2.0.1"), keep: true},
		{name: "tcp syn sent", typ: EventNew, flow: tcpIn(ct.TCPSynSent, "10.1.0.1", "10.2.0.1")},
		{name: "tcp fin wait update", typ: EventUpdate, flow: tcpIn(ct.TCPFinWait, "10.1.0.1", "10.2.0.1")},
		{name: "tcp update without state", typ: EventUpdate, flow: tcpIn(ct.TCPFinWait, "10.1.0.1", "10.2.0.1"), noProtoInfo: true, keep: true},
		{name: "tcp destroy in a dropped state", typ: EventDestroy, flow: tcpIn(ct.TCPClose, "10.1.0.1", "10.2.0.1"), keep: true},
		{name: "tcp destroy of an ignored address", typ: EventDestroy, flow: tcpIn(ct.TCPClose, "10.9.9.9", "10.2.0.1")},
		{name: "udp", typ: EventNew, flow: plain(ct.ProtoUDP, "10.1.0.1", "10.2.0.1", 5000, 53), keep: true},
		{name: "icmp not listed", typ: EventNew, flow: echo("10.1.0.1", "10.2.0.1", 7)},
		{name: "vrrp", typ: EventNew, flow: vrrp},
		{name: "ignored /32 source", typ: EventNew, flow: tcpIn(est, "10.9.9.9", "10.2.0.1")},
		{name: "ignored /32 destination", typ: EventNew, flow: tcpIn(est, "10.2.0.1", "10.9.9.9")},
		{name: "next to the /32", typ: EventNew, flow: tcpIn(est, "10.9.9.8", "10.9.9.10"), keep: true},
		{name: "loopback", typ: EventNew, flow: plain(ct.ProtoUDP, "127.0.0.1", "127.0.0.1", 5000, 53)},
		{name: "in the /20", typ: EventNew, flow: tcpIn(est, "192.168.31.255", "10.2.0.1")},
		{name: "past the /20", typ: EventNew, flow: tcpIn(est, "192.168.32.0", "10.2.0.1"), keep: true},
		{name: "ipv6 tcp established", typ: EventNew, flow: tcpIn(est, "2001:db8::1", "2001:db8::2"), keep: true},
		{name: "ipv6 tcp syn sent", typ: EventNew, flow: tcpIn(ct.TCPSynSent, "2001:db8::1", "2001:db8::2")},
		{name: "ipv6 destroy", typ: EventDestroy, flow: tcpIn(ct.TCPClose, "2001:db8::1", "2001:db8::2"), keep: true},
		{name: "ipv6 loopback", typ: EventNew, flow: tcpIn(est, "::1", "::1")},
		{name: "ipv6 in the /40", typ: EventNew, flow: tcpIn(est, "2001:db8::1", "fd00:bad:ff::1")},
		{name: "ipv6 past the /40", typ: EventNew, flow: tcpIn(est, "2001:db8::1", "fd00:bae::1"), keep: true},
		{name: "ipv6 udp zone", typ: EventNew, flow: with(plain(ct.ProtoUDP, "2001:db8::1", "2001:db8::2", 1, 2), func(f *ct.Flow) { f.Zone = 3 }), keep: true},
		{name: "tcp with zone established", typ: EventNew, flow: with(tcpIn(est, "10.1.0.1", "10.2.0.1"), func(f *ct.Flow) { f.Zone = 3 }), keep: true},
		{name: "tcp with zone syn sent", typ: EventNew, flow: with(tcpIn(ct.TCPSynSent, "10.1.0.1", "10.2.0.1"), func(f *ct.Flow) { f.Zone = 3 })},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := eventBytes(t, tt.typ, tt.flow, tt.noProtoInfo)
			n, err := vm.Run(b)
			if err != nil {
				t.Fatal(err)
			}
			if (n != 0) != tt.keep {
				t.Errorf("filter returned %d for %v %v; want keep = %v", n, tt.typ, &tt.flow, tt.keep)
			}
			// A kept event cut anywhere is still delivered: no load goes
			// past the end (which would end the program with a drop).
			for cut := offAttrs; cut < len(b); cut++ { // headers are always whole
				n, err := vm.Run(b[:cut])
				if err != nil {
					t.Fatalf("cut at %d: %v", cut, err)
				}
				if tt.keep && n == 0 {
					t.Fatalf("cut at %d of %d: dropped", cut, len(b))
				}
			}
		})
	}

	t.Run("own write", func(t *testing.T) {
		b := eventBytes(t, EventNew, tcpIn(est, "10.1.0.1", "10.2.0.1"), false)
		binary.NativeEndian.PutUint32(b[12:], 4243)
		if n, _ := vm.Run(b); n != 0 {
			t.Errorf("an event of our own write passed")
		}
	})
	t.Run("expectation", func(t *testing.T) {
		b := eventBytes(t, EventNew, tcpIn(ct.TCPSynSent, "10.1.0.1", "10.2.0.1"), false)
		b[4+hi] = 2 // NFNL_SUBSYS_CTNETLINK_EXP: another layout, always delivered
		if n, _ := vm.Run(b); n == 0 {
			t.Errorf("an expectation event was dropped")
		}
	})
	t.Run("unknown family", func(t *testing.T) {
		b := eventBytes(t, EventNew, tcpIn(ct.TCPSynSent, "10.1.0.1", "10.2.0.1"), false)
		b[16] = 7
		if n, _ := vm.Run(b); n == 0 {
			t.Errorf("an event of an unknown family was dropped")
		}
	})
	t.Run("empty filter", func(t *testing.T) {
		raw, err := EventFilter{}.program(nil)
		if err != nil {
			t.Fatal(err)
		}
		vm, err := bpf.NewVM(mustDisassemble(t, raw))
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := vm.Run(eventBytes(t, EventNew, vrrp, false)); n == 0 {
			t.Errorf("the empty filter dropped an event")
		}
	})
}

type seen struct {
	typ EventType
	key ct.Key
}

// TestEventFilterKernel checks in a namespace that the kernel drops what
// the filter excludes, and only that: a listener without the filter gets
// every event, one with it exactly the kept ones.
func TestEventFilterKernel(t *testing.T) {
	n := newNS(t)
	flt := EventFilter{
		Protocols: []uint8{ct.ProtoTCP}, ExcludeProtocols: []uint8{112},
		Ignore:    []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16"), netip.MustParsePrefix("2001:db8:9::/48")},
		TCPStates: []uint8{ct.TCPEstablished},
	}
	all := n.listen(ListenOptions{})
	filtered := n.listen(ListenOptions{Filter: flt})
	c := n.dial()

	kept := []ct.Flow{
		tcpIn(ct.TCPEstablished, "10.1.0.1", "10.2.0.1"),
		tcpIn(ct.TCPEstablished, "2001:db8:1::1", "2001:db8:2::1"),
	}
	synSent := tcpIn(ct.TCPSynSent, "10.1.0.2", "10.2.0.1")
	dropped := []ct.Flow{
		synSent,
		plain(ct.ProtoUDP, "10.1.0.1", "10.2.0.1", 5000, 53),
		echo("10.1.0.1", "10.2.0.1", 9),
		tcpIn(ct.TCPEstablished, "10.9.3.4", "10.2.0.1"),
		tcpIn(ct.TCPEstablished, "10.1.0.1", "10.9.0.1"),
		tcpIn(ct.TCPEstablished, "2001:db8:9::1", "2001:db8:2::1"),
	}
	want := map[seen]int{}
	for _, f := range kept {
		want[seen{EventNew, f.Key()}]++
		want[seen{EventDestroy, f.Key()}]++
	}
	// The SYN_SENT flow is dropped until it is established; its end passes
	// whatever its state (the kept update made it replicated).
	want[seen{EventUpdate, synSent.Key()}]++
	want[seen{EventDestroy, synSent.Key()}]++
	total := 2*len(kept) + 2*len(dropped) + 1

	write(t, c, Create, append(append([]ct.Flow(nil), kept...), dropped...), WriteOptions{})
	up := synSent
	up.TCP.State = ct.TCPEstablished
	write(t, c, Update, []ct.Flow{up}, WriteOptions{})
	write(t, c, Delete, append(append([]ct.Flow(nil), kept...), dropped...), WriteOptions{})

	if got := len(receiveN(t, all, total, 5*time.Second)); got != total {
		t.Fatalf("unfiltered listener: %d events, want %d", got, total)
	}
	evs := receiveN(t, filtered, len(kept)*2+2, 5*time.Second)
	expectNone(t, filtered, 200*time.Millisecond)
	got := map[seen]int{}
	for _, ev := range evs {
		got[seen{ev.Type, ev.Flow.Key()}]++
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("filtered events (-want +got):\n%s", diff)
	}
}
