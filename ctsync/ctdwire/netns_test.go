package ctdwire

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/integration/lab"
	"github.com/ctha/ctha/internal/nstest"
)

// The real-daemon test: conntrackd 1.4.7 in namespace "ctdA" (10.10.9.1,
// FTFW over UDP, Checksum on, its own config, lock file and control
// socket in a temp dir), our Endpoint on a UDP socket in namespace
// "ctdB" (10.10.9.2), a veth between them.

var (
	ctdAddr  = netip.MustParseAddr("10.10.9.1")
	peerAddr = netip.MustParseAddr("10.10.9.2")
)

const ctdPort = 3780

const ctdConfig = `Sync {
	Mode FTFW {
		ACKWindowSize 20
		DisableExternalCache off
	}
	UDP {
		IPv4_address %[1]s
		IPv4_Destination_Address %[2]s
		Port %[3]d
		Interface sync
		Checksum on
	}
	Options {
		TCPWindowTracking on
	}
}
General {
	Systemd off
	LogFile %[4]s/conntrackd.log
	Syslog off
	HashSize 1024
	HashLimit 8192
	LockFile %[4]s/conntrackd.lock
	UNIX {
		Path %[4]s/conntrackd.ctl
	}
	Filter From Userspace {
		Protocol Accept {
			TCP
			UDP
			ICMP
		}
		Address Ignore {
			IPv4_address 127.0.0.1
		}
	}
}
`

// ctdLab is a running conntrackd and our side's socket.
type ctdLab struct {
	t      *testing.T
	a, b   *nstest.NS
	conf   string
	dir    string
	conn   *net.UDPConn
	dest   *net.UDPAddr
	recv   chan []byte
	record []string // hex of every datagram conntrackd sent
	cmd    *exec.Cmd
	exited chan error
}

func startCtdLab(t *testing.T) *ctdLab {
	t.Helper()
	lab.RequireNetns(t)
	lab.RequireCommands(t, "conntrackd", "conntrack")
	a := nstest.New(t, "ctdA")
	b := nstest.New(t, "ctdB")
	l := &ctdLab{t: t, a: a, b: b, dir: t.TempDir(), recv: make(chan []byte, 1024),
		dest: net.UDPAddrFromAddrPort(netip.AddrPortFrom(ctdAddr, ctdPort))}
	if out, err := exec.Command("ip", "link", "add", "sync", "netns", a.Name, "type", "veth", "peer", "name", "sync", "netns", b.Name).CombinedOutput(); err != nil {
		t.Fatalf("veth: %v: %s", err, out)
	}
	a.Exec("ip", "addr", "add", ctdAddr.String()+"/24", "dev", "sync")
	b.Exec("ip", "addr", "add", peerAddr.String()+"/24", "dev", "sync")
	a.Exec("ip", "link", "set", "sync", "up")
	b.Exec("ip", "link", "set", "sync", "up")
	a.Exec("sysctl", "-qw", "net.netfilter.nf_conntrack_events=1")

	if err := b.In(func() error {
		var err error
		l.conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(peerAddr, ctdPort)))
		return err
	}); err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { l.conn.Close() })
	go func() {
		for {
			buf := make([]byte, 65536)
			n, err := l.conn.Read(buf)
			if err != nil {
				close(l.recv)
				return
			}
			l.recv <- buf[:n]
		}
	}()

	l.conf = filepath.Join(l.dir, "conntrackd.conf")
	text := fmt.Sprintf(ctdConfig, ctdAddr, peerAddr, ctdPort, l.dir)
	if err := os.WriteFile(l.conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	l.start()
	t.Cleanup(func() {
		l.stop()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(l.dir, "conntrackd.log"))
			t.Logf("conntrackd.log:\n%s", log)
		}
	})
	return l
}

// start runs conntrackd in the foreground in its namespace and waits
// until it answers on its control socket.
func (l *ctdLab) start() {
	l.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", l.a.Name, "conntrackd", "-C", l.conf)
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("start conntrackd: %v", err)
	}
	l.cmd, l.exited = cmd, make(chan error, 1)
	go func() { l.exited <- cmd.Wait() }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := l.ctl("-s"); err == nil {
			return
		}
		select {
		case err := <-l.exited:
			l.cmd = nil
			l.t.Fatalf("conntrackd exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			l.t.Fatal("conntrackd does not answer on its control socket")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop stops the daemon by its pid (`ip netns exec` execs conntrackd:
// the pid is the daemon's): SIGTERM, which removes its lock file, then
// SIGKILL after 3 s.
func (l *ctdLab) stop() {
	if l.cmd == nil {
		return
	}
	_ = l.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-l.exited:
	case <-time.After(3 * time.Second):
		_ = l.cmd.Process.Kill()
		<-l.exited
	}
	l.cmd = nil
}

// ctl runs `conntrackd -C conf args...` in the daemon's namespace.
func (l *ctdLab) ctl(args ...string) (string, error) {
	return l.a.Try(append([]string{"conntrackd", "-C", l.conf}, args...)...)
}

// peerSide is our endpoint, its table and what it received.
type peerSide struct {
	l     *ctdLab
	ep    *Endpoint
	own   flowTable
	got   map[ct.Key]ct.Flow
	types map[ct.Key]Type
	// dropOut / dropIn lose our next outgoing / incoming datagram that
	// holds a state message.
	dropOut, dropIn bool
	bulk            BulkWatch
}

// flowTable is our side's table, the Endpoint's Source.
type flowTable map[ct.Key]ct.Flow

func (t flowTable) AppendMsgState(b []byte, k ct.Key) ([]byte, Type) {
	f, ok := t[k]
	typ := TypeCTUpd
	if !ok {
		f = ct.Flow{Orig: k.Orig}
		invert(&f.Reply, &f.Orig)
		typ = TypeCTDel
	}
	s, _ := StateOf(&f)
	return AppendState(b, &s), typ
}

func newPeerSide(l *ctdLab) *peerSide {
	own := flowTable{}
	cfg := Config{InitialSeq: uint32(time.Now().Unix()), Window: 20, Alive: time.Second}
	return &peerSide{l: l, ep: New(cfg, own), own: own, got: map[ct.Key]ct.Flow{}, types: map[ct.Key]Type{}}
}

func hasState(d []byte) bool {
	ms, _ := ParseDatagram(nil, d)
	for _, m := range ms {
		if m.Type.IsState() {
			return true
		}
	}
	return false
}

// pump runs the endpoint on the real socket until done returns true or
// the timeout passes.
func (p *peerSide) pump(t *testing.T, what string, timeout time.Duration, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !done() {
		now := time.Now()
		if now.After(deadline) {
			t.Fatalf("%s: not done after %v; stats %+v", what, timeout, p.ep.Stats())
		}
		for _, d := range p.ep.Output(now, nil) {
			if p.dropOut && hasState(d) {
				p.dropOut = false
				continue
			}
			if _, err := p.l.conn.WriteToUDP(d, p.l.dest); err != nil {
				t.Fatalf("send: %v", err)
			}
		}
		wait := time.Until(p.ep.NextTimeout(time.Now()))
		wait = max(min(wait, 20*time.Millisecond), time.Millisecond)
		select {
		case d, ok := <-p.l.recv:
			if !ok {
				t.Fatal("socket closed")
			}
			p.l.record = append(p.l.record, hex.EncodeToString(d))
			if p.dropIn && hasState(d) {
				p.dropIn = false
				continue
			}
			ms, err := p.ep.Input(d, time.Now(), nil)
			if err != nil {
				t.Fatalf("input %x: %v", d, err)
			}
			for _, m := range ms {
				p.bulk.Observe(time.Now())
				if m.Type.IsExpect() {
					continue
				}
				f, _, err := m.Flow()
				if err != nil {
					t.Fatalf("%v: %v", &m, err)
				}
				p.types[f.Key()] = m.Type
				if m.Type == TypeCTDel {
					delete(p.got, f.Key())
				} else {
					p.got[f.Key()] = f
				}
			}
			if p.ep.ResyncRequested() {
				for k := range p.own {
					p.ep.Queue(k)
				}
			}
		case <-time.After(wait):
		}
	}
}

// TestConntrackd runs a real conntrackd 1.4.7 against our Endpoint.
func TestConntrackd(t *testing.T) {
	l := startCtdLab(t)
	p := newPeerSide(l)

	// HELLO: conntrackd flags its messages HELLO until we answer, we
	// ours until it answers.
	p.pump(t, "hello", 5*time.Second, func() bool { return p.ep.HelloDone() && p.ep.PeerUp(time.Now()) })
	if !p.ep.PeerRestarted() {
		t.Error("first contact not reported")
	}

	t.Run("conntrackd to us", func(t *testing.T) {
		cl := netip.MustParseAddr("10.10.1.100")
		l.a.Exec("conntrack", "-I", "-p", "tcp", "-s", cl.String(), "-d", "10.10.2.100", "--sport", "40000", "--dport", "5001",
			"--state", "ESTABLISHED", "-t", "300", "-u", "SEEN_REPLY,ASSURED", "--src-nat", "10.10.2.1:61000", "-m", "42")
		want := gTCPSNAT
		want.Orig.Src = cl.As16()
		want.Mark = 42
		k := want.Key()
		p.pump(t, "TCP flow from conntrackd", 5*time.Second, func() bool { _, ok := p.got[k]; return ok })
		got := p.got[k]
		if got.Timeout > 300 || got.Timeout < 290 {
			t.Errorf("timeout %d, want about 300", got.Timeout)
		}
		got.Timeout = want.Timeout
		if !got.Equal(&want) {
			t.Errorf("got  %v\nwant %v", &got, &want)
		}
		if p.types[k] != TypeCTNew {
			t.Errorf("type %v, want CT_NEW", p.types[k])
		}
		l.a.Exec("conntrack", "-D", "-p", "tcp", "-s", cl.String())
		p.pump(t, "CT_DEL from conntrackd", 5*time.Second, func() bool { _, ok := p.got[k]; return !ok })
	})

	t.Run("we NACK a lost datagram", func(t *testing.T) {
		p.dropIn = true
		l.a.Exec("conntrack", "-I", "-p", "udp", "-s", "10.10.1.101", "-d", "10.10.2.100", "--sport", "40001", "--dport", "53", "-t", "30")
		k := gUDP.Key()
		k.Orig.Src = netip.MustParseAddr("10.10.1.101").As16()
		before := p.ep.Stats().NacksSent
		// The loss shows with conntrackd's next message (an ALIVE
		// within a second); it resends on our NACK.
		p.pump(t, "UDP flow resent on NACK", 5*time.Second, func() bool { _, ok := p.got[k]; return ok })
		if p.ep.Stats().NacksSent == before {
			t.Errorf("no NACK sent")
		}
	})

	ours := with(flow(ct.NewTuple(ct.ProtoTCP, netip.MustParseAddr("10.10.1.50"), netip.MustParseAddr("10.10.2.50"), 33333, 443), 0xe, 600),
		func(f *ct.Flow) { f.TCP.State = ct.TCPEstablished; f.Mark = 5 })
	t.Run("us to conntrackd", func(t *testing.T) {
		p.own[ours.Key()] = ours
		p.ep.Queue(ours.Key())
		p.pump(t, "external cache", 5*time.Second, func() bool {
			out, _ := l.ctl("-e")
			return strings.Contains(out, "src=10.10.1.50 dst=10.10.2.50 sport=33333 dport=443")
		})
		// conntrackd acknowledges (after ACKWindowSize messages, or
		// after a second without sending).
		p.pump(t, "ACK", 5*time.Second, func() bool { return p.ep.Unacked() == 0 })
	})

	t.Run("conntrackd NACKs our lost datagram", func(t *testing.T) {
		lost := with(ours, func(f *ct.Flow) { f.Orig.SrcPort, f.Reply.DstPort = 33334, 33334 })
		next := with(ours, func(f *ct.Flow) { f.Orig.SrcPort, f.Reply.DstPort = 33335, 33335 })
		p.own[lost.Key()] = lost
		p.ep.Queue(lost.Key())
		p.dropOut = true
		p.pump(t, "lose one", time.Second, func() bool { return !p.dropOut })
		p.own[next.Key()] = next
		p.ep.Queue(next.Key())
		before := p.ep.Stats().Resent
		p.pump(t, "external cache after NACK", 5*time.Second, func() bool {
			out, _ := l.ctl("-e")
			return strings.Contains(out, "sport=33334") && strings.Contains(out, "sport=33335")
		})
		if p.ep.Stats().Resent == before {
			t.Errorf("nothing resent")
		}
	})

	t.Run("resync", func(t *testing.T) {
		l.a.Exec("conntrack", "-I", "-p", "icmp", "-s", "10.10.1.100", "-d", "10.10.2.100", "--icmp-type", "8", "--icmp-code", "0", "--icmp-id", "77", "-t", "30")
		p.pump(t, "ICMP flow", 5*time.Second, func() bool { _, ok := p.got[gICMP.Key()]; return ok })
		internal, _ := l.ctl("-i")
		p.got = map[ct.Key]ct.Flow{}
		p.ep.RequestResync()
		p.bulk = BulkWatch{Quiet: 500 * time.Millisecond}
		p.bulk.Start(time.Now())
		p.pump(t, "resync", 5*time.Second, func() bool { return p.bulk.Done(time.Now()) })
		// The answer is conntrackd's internal cache: the UDP and ICMP
		// flows (the TCP one is gone).
		if len(p.got) != strings.Count(internal, "\n") || len(p.got) < 2 {
			t.Errorf("resync brought %d flows; internal cache:\n%s", len(p.got), internal)
		}
		if _, ok := p.got[gICMP.Key()]; !ok {
			t.Errorf("ICMP flow missing from the resync")
		}
	})

	t.Run("conntrackd asks us to resync", func(t *testing.T) {
		if _, err := l.ctl("-f", "external"); err != nil {
			t.Fatal(err)
		}
		if _, err := l.ctl("-n"); err != nil {
			t.Fatal(err)
		}
		p.pump(t, "external cache after -n", 5*time.Second, func() bool {
			out, _ := l.ctl("-e")
			return strings.Contains(out, "sport=33333") && strings.Contains(out, "sport=33335")
		})
		if p.ep.Stats().ResyncsAsked == 0 {
			t.Errorf("no RESYNC seen")
		}
	})

	t.Run("an unknown attribute voids the message", func(t *testing.T) {
		// Attribute 33 is past 1.4.7's last (NTA_ZONE, 32): conntrackd
		// counts the message malformed and applies none of it.
		z := with(ours, func(f *ct.Flow) { f.Orig.SrcPort, f.Reply.DstPort = 33336, 33336 })
		s, _ := StateOf(&z)
		m := Msg{Type: TypeCTNew, Seq: p.ep.nextSeq, Attrs: appendU16(AppendState(nil, &s), ntaMax, 7)}
		p.ep.nextSeq++
		if _, err := l.conn.WriteToUDP(AppendMsg(nil, &m), l.dest); err != nil {
			t.Fatal(err)
		}
		p.pump(t, "malformed counted", 3*time.Second, func() bool {
			out, _ := l.ctl("-s")
			return !strings.Contains(out, " 0 Malformed msgs")
		})
		if out, _ := l.ctl("-e"); strings.Contains(out, "sport=33336") {
			t.Errorf("the flow with an unknown attribute was applied")
		}
	})

	t.Run("zone both ways", func(t *testing.T) {
		z := with(ours, func(f *ct.Flow) { f.Orig.SrcPort, f.Reply.DstPort, f.Zone = 33337, 33337, 7 })
		p.own[z.Key()] = z
		p.ep.Queue(z.Key())
		p.pump(t, "zoned flow in the external cache", 3*time.Second, func() bool {
			out, _ := l.ctl("-e")
			return strings.Contains(out, "sport=33337 dport=443 [ASSURED] mark=5 zone=7")
		})
		l.a.Exec("conntrack", "-I", "-p", "udp", "-s", "10.10.1.104", "-d", "10.10.2.100", "--sport", "40004", "--dport", "53", "-t", "30", "-w", "9")
		k := gUDP.Key()
		k.Orig.Src, k.Orig.SrcPort, k.Zone = netip.MustParseAddr("10.10.1.104").As16(), 40004, 9
		p.pump(t, "zoned flow from conntrackd", 3*time.Second, func() bool { _, ok := p.got[k]; return ok })
	})

	t.Run("conntrackd restarts", func(t *testing.T) {
		// A new conntrackd says HELLO with new numbers; we take them,
		// answer HELLO_BACK, and it needs our table again (we send it
		// on PeerRestarted here; conntrackd would need -B or StartupResync).
		l.stop()
		p.ep.PeerRestarted()
		l.start()
		p.pump(t, "restart seen", 5*time.Second, func() bool {
			if p.ep.PeerRestarted() {
				for k := range p.own {
					p.ep.Queue(k)
				}
				return true
			}
			return false
		})
		p.pump(t, "table sent again", 5*time.Second, func() bool {
			out, _ := l.ctl("-e")
			return strings.Contains(out, "sport=33333") && strings.Contains(out, "sport=33335")
		})
		l.a.Exec("conntrack", "-I", "-p", "udp", "-s", "10.10.1.103", "-d", "10.10.2.100", "--sport", "40003", "--dport", "53", "-t", "30")
		k := gUDP.Key()
		k.Orig.Src, k.Orig.SrcPort = netip.MustParseAddr("10.10.1.103").As16(), 40003
		p.pump(t, "a flow from the new conntrackd", 5*time.Second, func() bool { _, ok := p.got[k]; return ok })
	})

	t.Run("a stranger is believed", func(t *testing.T) {
		// conntrackd does not check who sends: a datagram from another
		// port (or address) with the next sequence number is applied.
		var c *net.UDPConn
		if err := l.b.In(func() error {
			var err error
			c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(peerAddr, 0)))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		forged := with(ours, func(f *ct.Flow) { f.Orig.SrcPort, f.Reply.DstPort = 44444, 44444 })
		d, _ := AppendFlow(nil, TypeCTNew, FlagHello, 12345, &forged)
		if _, err := c.WriteToUDP(d, l.dest); err != nil {
			t.Fatal(err)
		}
		p.pump(t, "forged flow in the external cache", 3*time.Second, func() bool {
			out, _ := l.ctl("-e")
			return strings.Contains(out, "sport=44444")
		})
	})

	if testing.Verbose() {
		for _, r := range l.record {
			t.Logf("from conntrackd: %s", r)
		}
	}
	st, _ := l.ctl("-s")
	if i := strings.Index(st, "message tracking"); i >= 0 {
		t.Logf("conntrackd %s", strings.TrimSpace(st[i:]))
	}
}
