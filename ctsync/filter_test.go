package ctsync

import (
	"net/netip"
	"testing"

	"github.com/ctha/ctha/ctsync/ct"
)

func TestFilter(t *testing.T) {
	a := netip.MustParseAddr
	flow := func(proto uint8, src, dst string) *ct.Flow {
		f := &ct.Flow{Orig: ct.NewTuple(proto, a(src), a(dst), 1000, 5001)}
		f.Reply = f.Orig.Reverse()
		if proto == ct.ProtoTCP {
			f.TCP.State = ct.TCPEstablished
		}
		return f
	}
	flt := newFilter(Filter{Protocols: []string{"tcp", "udp"}, IgnoreAddresses: []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16")}, TCPStates: []string{"ESTABLISHED"}})
	flt.setOwn([]netip.Addr{a("10.10.1.2"), a("10.10.1.1")}, []netip.Addr{a("10.10.1.1")}) // 10.10.1.1 is a VIP
	tests := []struct {
		name string
		f    *ct.Flow
		keep bool
	}{
		{"forwarded", flow(ct.ProtoTCP, "10.10.1.100", "10.10.2.100"), true},
		{"to a VIP", flow(ct.ProtoTCP, "10.10.1.100", "10.10.1.1"), true},
		{"from the node", flow(ct.ProtoTCP, "10.10.1.2", "10.10.2.100"), false},
		{"to the node (reply source)", flow(ct.ProtoTCP, "10.10.1.100", "10.10.1.2"), false},
		{"VRRP", flow(112, "10.10.1.3", "224.0.0.18"), false},
		{"protocol not listed", flow(ct.ProtoICMP, "10.10.1.100", "10.10.2.100"), false},
		{"ignored prefix", flow(ct.ProtoUDP, "192.168.4.4", "10.10.2.100"), false},
	}
	closing := flow(ct.ProtoTCP, "10.10.1.100", "10.10.2.100")
	closing.TCP.State = ct.TCPTimeWait
	tests = append(tests, struct {
		name string
		f    *ct.Flow
		keep bool
	}{"TCP state not listed", closing, false})
	for _, tt := range tests {
		if got := flt.keep(tt.f); got != tt.keep {
			t.Errorf("%s: keep = %v, want %v", tt.name, got, tt.keep)
		}
	}
}

func TestFilterAdmit(t *testing.T) {
	flt := newFilter(Filter{Protocols: []string{"tcp"}, TCPStates: []string{"ESTABLISHED"}})
	f := &ct.Flow{Orig: ct.NewTuple(ct.ProtoTCP, netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.2.0.1"), 1, 2)}
	f.Reply = f.Orig.Reverse()
	u := *f
	u.Orig.Proto, u.Reply.Proto = ct.ProtoUDP, ct.ProtoUDP
	for _, tt := range []struct {
		name   string
		state  uint8
		flow   *ct.Flow
		cached bool
		want   admission
	}{
		{"kept state", ct.TCPEstablished, f, false, admitStore},
		{"state left out, not replicated", ct.TCPSynSent, f, false, admitHold},
		{"state left out, replicated", ct.TCPFinWait, f, true, admitHold},
		{"protocol left out", 0, &u, true, admitForget},
	} {
		fl := *tt.flow
		fl.TCP.State = tt.state
		if got := flt.admit(&fl, tt.cached, true); got != tt.want {
			t.Errorf("%s: admit = %d, want %d", tt.name, got, tt.want)
		}
	}
	if c := flt.counts(); c[filteredTCPState] != 2 || c[filteredProtocol] != 1 {
		t.Errorf("counts = %v, want 2 tcp_state and 1 protocol", c)
	}
	kf := flt.kernelFilter()
	if len(kf.Protocols) != 1 || kf.Protocols[0] != ct.ProtoTCP || len(kf.TCPStates) != 1 || kf.TCPStates[0] != ct.TCPEstablished ||
		len(kf.ExcludeProtocols) != 1 || kf.ExcludeProtocols[0] != protoVRRP {
		t.Errorf("kernelFilter = %+v", kf)
	}
	if kf := newFilter(Filter{}).kernelFilter(); kf.Protocols != nil || kf.TCPStates != nil {
		t.Errorf("kernelFilter of an empty filter = %+v, want every protocol and state", kf)
	}
}
