package vrrp

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/vrrp/packet"
)

var (
	authSrc = netip.MustParseAddr("10.10.1.3")
	authVIP = netip.MustParseAddr("10.10.1.1")
	pw1, _  = packet.NewPassword("secret1")
	pw2, _  = packet.NewPassword("secret2")
)

func authReceiver(a Auth) receiver {
	r := receiver{version: 2, vrid: 51, interval: time.Second, ifindex: 4, own: me, vips: []netip.Addr{authVIP}, auth: a}
	if a.Type == AuthAH {
		r.ah = newAHState(a.Password)
	}
	return r
}

func v2Advert(mod func(*packet.Advert)) packet.Advert {
	ad := packet.Advert{Version: 2, VRID: 51, Priority: 100, Interval: time.Second, Addrs: []netip.Addr{authVIP}}
	if mod != nil {
		mod(&ad)
	}
	return ad
}

// passIn is a PASS (or unauthenticated) advert as a raw socket delivers it.
func passIn(t *testing.T, ad packet.Advert) PacketIn {
	t.Helper()
	b, err := ad.Append(nil, authSrc, packet.Group4)
	if err != nil {
		t.Fatal(err)
	}
	return PacketIn{Payload: b, Src: authSrc, Dst: packet.Group4, TTL: 255, Ifindex: 4}
}

// ahIn is an AH advert sealed with pw and sequence number seq.
func ahIn(t *testing.T, pw packet.Password, seq uint32, ad packet.Advert) PacketIn {
	t.Helper()
	b, err := packet.NewAH(pw).Append(nil, packet.IPv4{TOS: 0xc0, ID: 9, TTL: 255, Src: authSrc, Dst: packet.Group4}, seq, &ad, false)
	if err != nil {
		t.Fatal(err)
	}
	return PacketIn{Payload: b[packet.IPv4HeaderLen:], IP: b, Src: authSrc, Dst: packet.Group4, TTL: 255, Ifindex: 4}
}

func TestReceiveChecksPass(t *testing.T) {
	pass := Auth{Type: AuthPass, Password: pw1}
	withPW := func(pw packet.Password) func(*packet.Advert) {
		return func(a *packet.Advert) { a.AuthType, a.AuthData = packet.AuthPass, pw }
	}
	tests := []struct {
		name string
		auth Auth
		ad   packet.Advert
		drop Drop
	}{
		{"pass: right password", pass, v2Advert(withPW(pw1)), DropNone},
		{"pass: wrong password", pass, v2Advert(withPW(pw2)), DropAuth},
		{"pass: password cut differently", pass, v2Advert(withPW(packet.Password{'s', 'e', 'c', 'r', 'e', 't', '1', 'x'})), DropAuth},
		{"pass: none sent", pass, v2Advert(nil), DropAuth},
		{"pass: AH type in a plain advert", pass, v2Advert(func(a *packet.Advert) { a.AuthType = packet.AuthAH }), DropAuth},
		{"none: pass sent", Auth{}, v2Advert(withPW(pw1)), DropAuth},
		{"none: none sent", Auth{}, v2Advert(nil), DropNone},
		{"pass: another router's first", pass, v2Advert(func(a *packet.Advert) { a.VRID = 52 }), DropVRID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := authReceiver(tt.auth)
			if _, drop, _ := r.check(passIn(t, tt.ad)); drop != tt.drop {
				t.Errorf("check = %v, want %v", drop, tt.drop)
			}
		})
	}
}

// TestReceiveChecksAH: the ICV, the SPI, the advert's own auth type, and
// keepalived's sequence check: above the last number sent or accepted,
// and only a valid advert moves it on.
func TestReceiveChecksAH(t *testing.T) {
	ah := Auth{Type: AuthAH, Password: pw1}
	ad := v2Advert(nil)
	r := authReceiver(ah)
	steps := []struct {
		name string
		p    PacketIn
		drop Drop
		seq  uint32 // the counter after
	}{
		{"first", ahIn(t, pw1, 5, ad), DropNone, 5},
		{"replayed", ahIn(t, pw1, 5, ad), DropSequence, 5},
		{"older", ahIn(t, pw1, 3, ad), DropSequence, 5},
		{"wrong password, higher number", ahIn(t, pw2, 100, ad), DropAuth, 5},
		{"another router (unverified VRID)", ahIn(t, pw2, 100, v2Advert(func(a *packet.Advert) { a.VRID = 52 })), DropVRID, 5},
		{"valid but another interval: counter kept", ahIn(t, pw1, 50, v2Advert(func(a *packet.Advert) { a.Interval = 2 * time.Second })), DropInterval, 5},
		{"next", ahIn(t, pw1, 6, ad), DropNone, 6},
		{"jump", ahIn(t, pw1, 1000, ad), DropNone, 1000},
		{"ttl", func() PacketIn { p := ahIn(t, pw1, 1001, ad); p.TTL = 254; return p }(), DropTTL, 1000},
		{"plain advert on the AH socket", passIn(t, ad), DropLength, 1000},
	}
	for _, s := range steps {
		_, drop, _ := r.check(s.p)
		if drop != s.drop || r.ah.seq.Load() != s.seq {
			t.Errorf("%s: check = %v, counter %d; want %v, %d", s.name, drop, r.ah.seq.Load(), s.drop, s.seq)
		}
	}
	// A PASS receiver refuses an AH advert's payload (auth type 2).
	pr := authReceiver(Auth{Type: AuthPass, Password: pw1})
	p := ahIn(t, pw1, 1, ad)
	if _, drop, _ := pr.check(PacketIn{Payload: p.Payload[packet.AHLen:], Src: p.Src, Dst: p.Dst, TTL: 255, Ifindex: 4}); drop != DropAuth {
		t.Errorf("PASS receiver, AH advert: %v, want auth", drop)
	}
}

func TestAHSequence(t *testing.T) {
	s := newAHState(pw1)
	if n := s.nextSeq(); n != 1 {
		t.Errorf("first sent %d, want 1", n)
	}
	if !s.acceptSeq(41) || s.acceptSeq(41) || s.acceptSeq(2) {
		t.Errorf("accept: want 41 once, then nothing at or below it")
	}
	if n := s.nextSeq(); n != 42 {
		t.Errorf("sent after accepting 41: %d, want 42 (keepalived continues above what it heard)", n)
	}
	s.seq.Store(maxSeq)
	if a, b := s.nextSeq(), s.nextSeq(); a != maxSeq+1 || b != maxSeq+1 {
		t.Errorf("at the end: %d, %d; want %d twice (keepalived stops counting)", a, b, uint32(maxSeq+1))
	}
	s.id = 0xffff
	if id := s.nextID(); id != 1 {
		t.Errorf("ID after 0xffff: %d, want 1 (0 is the kernel's to fill)", id)
	}
}

// TestSendAH: a member with AH sends keepalived's packets: whole IPv4
// packets, one sequence number up each round, that the peer verifies;
// one with PASS carries the password.
func TestSendAH(t *testing.T) {
	tg := newTestGroup(t, 100, nil)
	mb := tg.members[0]
	mb.cfg.Version, mb.cfg.AdvertInterval = 2, time.Second
	mb.ah = newAHState(pw1)
	rc := *mb.recv.Load()
	rc.version, rc.interval, rc.auth, rc.ah = 2, time.Second, Auth{Type: AuthAH, Password: pw1}, mb.ah
	mb.recv.Store(&rc)
	conn := &countConn{src: netip.MustParseAddr("10.10.1.2")}
	mb.conn = conn
	var sent [][]byte
	rec := &recordConn{countConn: conn, sent: &sent}
	mb.conn = rec
	mb.ah.acceptSeq(7) // heard a master at 7
	tg.mu.Lock()
	tg.send(mb, 150)
	tg.send(mb, 150)
	tg.mu.Unlock()
	if len(sent) != 2 {
		t.Fatalf("%d packets sent, want 2", len(sent))
	}
	peer := packet.NewAH(pw1)
	for i, b := range sent {
		msg, hdr, err := peer.Open(b, false)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if want := uint32(8 + i); hdr.Seq != want || b[8] != 255 || b[1] != tosNetworkControl {
			t.Errorf("packet %d: sequence %d TTL %d TOS %#x, want %d, 255, %#x", i, hdr.Seq, b[8], b[1], want, tosNetworkControl)
		}
		ad, err := packet.Parse(msg, conn.src, packet.Group4, false)
		if err != nil || ad.Priority != 150 || ad.AuthType != packet.AuthAH {
			t.Errorf("packet %d: %+v, %v", i, ad, err)
		}
	}

	// PASS: the password in the auth data.
	mb.ah = nil
	rc.auth, rc.ah = Auth{Type: AuthPass, Password: pw1}, nil
	mb.recv.Store(&rc)
	sent = nil
	tg.mu.Lock()
	tg.send(mb, 150)
	tg.mu.Unlock()
	ad, err := packet.Parse(sent[0], conn.src, packet.Group4, false)
	if err != nil || ad.AuthType != packet.AuthPass || ad.AuthData != pw1 {
		t.Errorf("PASS advert %+v, %v", ad, err)
	}
}

// recordConn keeps a copy of what it sends.
type recordConn struct {
	*countConn
	sent *[][]byte
}

func (c *recordConn) WritePacket(b []byte, dst netip.Addr) error {
	*c.sent = append(*c.sent, bytes.Clone(b))
	return c.countConn.WritePacket(b, dst)
}

// TestAuthDropsCountedAndLogged: a wrong password is counted every time
// and logged once per dropLogEvery, never accepted.
func TestAuthDropsCountedAndLogged(t *testing.T) {
	tg := newTestGroup(t, 100, nil)
	var logBuf bytes.Buffer
	mb := tg.members[0]
	mb.log = slog.New(slog.NewTextHandler(&logBuf, nil))
	r := authReceiver(Auth{Type: AuthPass, Password: pw1})
	mb.recv.Store(&r)
	bad := passIn(t, v2Advert(func(a *packet.Advert) { a.AuthType, a.AuthData = packet.AuthPass, pw2 }))
	now := time.Now()
	for i := range 5 {
		if _, ok := tg.accept(0, bad, now.Add(time.Duration(i)*time.Second)); ok {
			t.Fatal("accepted an advert with the wrong password")
		}
	}
	if _, ok := tg.accept(0, bad, now.Add(dropLogEvery)); ok {
		t.Fatal("accepted")
	}
	if n := mb.stats.drops[DropAuth].Load(); n != 6 {
		t.Errorf("auth drops %d, want 6", n)
	}
	lines := strings.Count(logBuf.String(), "failed authentication")
	if lines != 2 || !strings.Contains(logBuf.String(), "unlogged_before=4") {
		t.Errorf("%d log lines, want 2 (the second saying 4 unlogged):\n%s", lines, logBuf.String())
	}
	if s := mb.stats.snapshot(); s.Drops["auth"] != 6 || s.Drops["sequence"] != 0 {
		t.Errorf("stats drops %v", s.Drops)
	}
}

// TestSendAHAllocatesNothing: with AH every advert is built anew (ID,
// sequence number, ICV), into the same buffer, allocating nothing.
func TestSendAHAllocatesNothing(t *testing.T) {
	tg := newTestGroup(t, 100, nil)
	mb := tg.members[0]
	mb.cfg.Version = 2
	mb.ah = newAHState(pw1)
	mb.conn = &countConn{src: netip.MustParseAddr("10.10.1.2")}
	send := func() {
		tg.mu.Lock()
		tg.send(mb, 150)
		tg.mu.Unlock()
	}
	send()
	if n := testing.AllocsPerRun(100, send); n != 0 {
		t.Errorf("%.1f allocations per AH advert, want 0", n)
	}
	if c := mb.conn.(*countConn); c.sent != 102 || mb.stats.sendErrors.Load() != 0 {
		t.Errorf("sent %d, %d errors; want 102, 0", c.sent, mb.stats.sendErrors.Load())
	}
}
