package vrrp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/ctha/ctha/vrrp/packet"
)

func TestReceiveChecks(t *testing.T) {
	src := netip.MustParseAddr("10.10.1.3")
	vip := netip.MustParseAddr("10.10.1.1")
	r := receiver{version: 3, vrid: 51, interval: time.Second, ifindex: 4, own: me, vips: []netip.Addr{vip}}
	advert := func(mod func(*packet.Advert)) []byte {
		ad := packet.Advert{Version: 3, VRID: 51, Priority: 100, Interval: time.Second, Addrs: []netip.Addr{vip}}
		if mod != nil {
			mod(&ad)
		}
		b, err := ad.Append(nil, src, packet.Group4)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	in := func(b []byte, mod func(*PacketIn)) PacketIn {
		p := PacketIn{Payload: b, Src: src, Dst: packet.Group4, TTL: 255, Ifindex: 4}
		if mod != nil {
			mod(&p)
		}
		return p
	}
	tests := []struct {
		name     string
		p        PacketIn
		r        receiver
		drop     Drop
		mismatch bool
	}{
		{"valid", in(advert(nil), nil), r, DropNone, false},
		{"other address list is accepted but flagged", in(advert(func(a *packet.Advert) { a.Addrs = []netip.Addr{src} }), nil), r, DropNone, true},
		{"other interface", in(advert(nil), func(p *PacketIn) { p.Ifindex = 5 }), r, DropInterface, false},
		{"own advert", in(advert(nil), func(p *PacketIn) { p.Src = me }), r, DropOwn, false},
		{"ttl", in(advert(nil), func(p *PacketIn) { p.TTL = 254 }), r, DropTTL, false},
		{"vrid", in(advert(func(a *packet.Advert) { a.VRID = 52 }), nil), r, DropVRID, false},
		{"version", in(advert(func(a *packet.Advert) { a.Version = 2 }), nil), r, DropVersion, false},
		{"checksum", in(advert(nil), func(p *PacketIn) { p.Payload[7] ^= 1 }), r, DropChecksum, false},
		{"length", in(advert(nil)[:9], nil), r, DropLength, false},
		{"v2 other interval", in(advert(func(a *packet.Advert) { a.Version, a.Interval = 2, 2*time.Second }), nil),
			receiver{version: 2, vrid: 51, interval: time.Second, ifindex: 4, vips: r.vips}, DropInterval, false},
		{"v2 authentication", in(advert(func(a *packet.Advert) { a.Version, a.AuthType = 2, 1 }), nil),
			receiver{version: 2, vrid: 51, interval: time.Second, ifindex: 4, vips: r.vips}, DropAuth, false},
		{"unicast: not a peer", in(advert(nil), nil),
			receiver{version: 3, vrid: 51, ifindex: 4, vips: r.vips, unicastPeers: []netip.Addr{netip.MustParseAddr("10.10.1.9")}}, DropPeer, false},
		{"unicast: a peer", in(advert(nil), nil),
			receiver{version: 3, vrid: 51, ifindex: 4, vips: r.vips, unicastPeers: []netip.Addr{src}}, DropNone, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, drop, mismatch := tt.r.check(tt.p)
			if drop != tt.drop || mismatch != tt.mismatch {
				t.Errorf("check = %v, mismatch %v; want %v, %v", drop, mismatch, tt.drop, tt.mismatch)
			}
		})
	}
}

func TestIPv6SourceMustBeLinkLocal(t *testing.T) {
	vip := netip.MustParseAddr("fd00:10:1::1")
	r := receiver{version: 3, vrid: 51, ifindex: 4, vips: []netip.Addr{vip}, skipChecksum: true}
	ad := packet.Advert{Version: 3, VRID: 51, Priority: 100, Interval: time.Second, Addrs: []netip.Addr{vip}}
	for _, tt := range []struct {
		src  string
		drop Drop
	}{{"fe80::3", DropNone}, {"fd00:10:1::3", DropSource}} {
		src := netip.MustParseAddr(tt.src)
		b, _ := ad.Append(nil, src, packet.Group6)
		if _, drop, _ := r.check(PacketIn{Payload: b, Src: src, Dst: packet.Group6, TTL: 255, Ifindex: 4}); drop != tt.drop {
			t.Errorf("from %s: %v, want %v", tt.src, drop, tt.drop)
		}
	}
}
