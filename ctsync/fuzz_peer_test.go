package ctsync

import (
	"context"
	"encoding/binary"
	"log/slog"
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/ctha/ctha/ctsync/auth"
	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/ctsync/proto"
	"github.com/ctha/ctha/ctsync/wire"
)

// An authenticated peer is trusted with the table, not with the engine's
// life: whatever it sends, the receive path (envelope, replay guard,
// protocol, records, caches, kernel writes) must not panic, must count
// what it refuses, and must keep the kernel in step with what it believes
// the kernel holds.

var fuzzKey = auth.Key{0: 0xc7, 31: 0x7c}

// Sender ids and the peer's first epoch in FuzzPeerDatagrams.
const (
	fuzzSelf       = 0x5e1f
	fuzzPeer       = 0x9ee7
	fuzzPeerEpoch  = 5
	fuzzLocalEpoch = 3
)

// tableKernel is the engine's kernel in FuzzPeerDatagrams: it applies the
// writes to a table as ctnetlink does (a create replaces a flow and the
// expectations of the one it replaces, a delete takes the flow's
// expectations with it, an expectation needs its master).
type tableKernel struct {
	flows map[ct.Key]ct.Flow
	exps  map[ct.Key]ct.Expect
}

func newTableKernel() *tableKernel {
	return &tableKernel{flows: map[ct.Key]ct.Flow{}, exps: map[ct.Key]ct.Expect{}}
}

func (k *tableKernel) dropExpects(master ct.Key) {
	maps.DeleteFunc(k.exps, func(_ ct.Key, x ct.Expect) bool { return x.MasterKey() == master })
}

func (k *tableKernel) Write(_ context.Context, op kernel.Op, flows []ct.Flow, _ kernel.WriteOptions) (kernel.WriteResult, error) {
	var res kernel.WriteResult
	for _, f := range flows {
		key := f.Key()
		_, ok := k.flows[key]
		switch op {
		case kernel.Create:
			k.dropExpects(key)
			k.flows[key] = f
		case kernel.Update:
			if !ok {
				res.Failed = append(res.Failed, kernel.WriteError{Key: key, Err: unix.ENOENT})
				continue
			}
			k.flows[key] = f
		case kernel.Delete:
			if !ok {
				res.Failed = append(res.Failed, kernel.WriteError{Key: key, Err: unix.ENOENT})
				continue
			}
			k.dropExpects(key)
			delete(k.flows, key)
		}
		res.OK++
	}
	return res, nil
}

func (k *tableKernel) WriteExpect(_ context.Context, op kernel.Op, exps []ct.Expect) ([]error, error) {
	errs := make([]error, len(exps))
	for i, x := range exps {
		_, ok := k.exps[x.Key()]
		switch {
		case op == kernel.Create && ok:
			errs[i] = unix.EEXIST
		case op == kernel.Create:
			if _, master := k.flows[x.MasterKey()]; !master {
				errs[i] = unix.ENOENT
				continue
			}
			k.exps[x.Key()] = x
		case !ok:
			errs[i] = unix.ENOENT
		default:
			delete(k.exps, x.Key())
		}
	}
	return errs, nil
}

// Modes of FuzzPeerDatagrams' engine, bits of its mode argument.
const (
	fuzzDirect = 1 << iota // cache = "direct": the peer's states go to the kernel
	fuzzAlarm              // mode = "alarm"
	fuzzMaster             // this node starts master, with flows of its own
)

// fuzzEngine returns an engine without sockets: only what the loop uses
// to take the peer's datagrams, with k as its kernel.
func fuzzEngine(mode uint8, k kernelWriter, stateDir string) *Engine {
	c := Config{Mode: Reliable, Cache: External, Key: fuzzKey, Expectations: true}
	if mode&fuzzDirect != 0 {
		c.Cache = Direct
	}
	if mode&fuzzAlarm != 0 {
		c.Mode = Alarm
	}
	e := &Engine{
		cfg: c, log: slog.New(slog.DiscardHandler),
		sender: fuzzSelf, epoch: fuzzLocalEpoch,
		ls: &linkSet{
			links: []*link{{cfg: Link{Name: "fuzz", Peers: []netip.Addr{netip.MustParseAddr("192.0.2.2")}, Port: 3780}}},
			views: []linkView{{carrier: true}},
		},
		wr: writer{queue: make(chan writeJob, writeQueue), kern: k},
	}
	p := &peer{bit: 1, addrs: []netip.Addr{netip.MustParseAddr("192.0.2.2")}, views: []linkView{{carrier: true}},
		guard: auth.NewReplayGuard(fuzzPeerEpoch),
		// A directory that does not exist: saving the peer's epoch fails
		// (and is logged) at once, not after a sync of the disk.
		epochPath: filepath.Join(stateDir, "missing", "sync-peer-epoch")}
	p.guard.SetSelf(e.sender)
	e.peers = []*peer{p}
	e.exp.init()
	p.ep = proto.New(proto.Config{MaxPayload: maxPayload, Epoch: e.epoch, Unreliable: c.Mode == Alarm}, recordSource{e})
	e.role = proto.RoleBackup
	e.wr.mayPause.Store(true)
	if mode&fuzzMaster != 0 {
		e.role = proto.RoleMaster
		e.wr.mayPause.Store(false)
		for _, f := range fuzzOwnFlows() {
			e.internal.put(&f)
		}
	}
	return e
}

// fuzzOwnFlows are this node's flows when it starts master: two that the
// seeds' peer sends too, and one it does not.
func fuzzOwnFlows() []ct.Flow {
	return []ct.Flow{benchFlow("mixed", 0), benchFlow("mixed", 3), benchFlow("ipv4-tcp", 999)}
}

// fuzzPeerFlows are the flows of the seeds' peer: plain, NAT, IPv6, ICMP,
// extra state.
func fuzzPeerFlows() []ct.Flow {
	var flows []ct.Flow
	for i := range 6 {
		flows = append(flows, benchFlow("mixed", i), benchFlow("ipv4-tcp-snat", i))
	}
	r := flows[1]
	r.Extra = &ct.Extra{Helper: "ftp", Labels: [16]byte{3: 1}, SeqAdjOrig: ct.SeqAdj{Position: 7, OffsetAfter: 3}}
	flows[1] = r
	src, dst := netip.MustParseAddr("10.1.1.1"), netip.MustParseAddr("10.2.2.2")
	icmp := ct.Flow{Orig: ct.NewICMPTuple(src, dst, 8, 0, 77), Reply: ct.NewICMPTuple(dst, src, 0, 0, 77), Timeout: 30}
	return append(flows, icmp)
}

// fuzzPeerExpect is an expectation of the peer's flow master.
func fuzzPeerExpect(master ct.Flow, port uint16) ct.Expect {
	ones := netip.MustParseAddr("255.255.255.255")
	if master.Orig.V6 {
		ones = netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
	}
	return ct.Expect{
		Master:  master.Orig,
		Tuple:   ct.NewTuple(ct.ProtoTCP, master.Orig.SrcAddr(), master.Orig.DstAddr(), 0, port),
		Mask:    ct.NewTuple(ct.ProtoTCP, ones, ones, 0, 0xffff),
		Timeout: 300, Helper: "ftp",
	}
}

// Bits of the control byte of each datagram of a FuzzPeerDatagrams input.
const (
	dgRestart = 1 << iota // the peer restarted: next epoch, sequence from 1
	dgReplay              // the previous datagram's header again
	dgForged              // a tag that does not authenticate
	dgReflect             // this node's own sender id
	dgRole                // this node's role changes (before the datagram)
)

// appendDatagram appends to in a FuzzPeerDatagrams datagram: its control
// byte, length and payload.
func appendDatagram(in []byte, ctl byte, payload []byte) []byte {
	in = append(in, ctl)
	in = binary.BigEndian.AppendUint16(in, uint16(len(payload)))
	return append(in, payload...)
}

// peerSession returns the payloads a real peer sends (seen from its
// side), as FuzzPeerDatagrams inputs: its flows and expectations, as
// changes and then as a bulk copy, some destroyed; with alarm, in alarm
// mode.
func peerSession(alarm bool) []byte {
	peer := fuzzEngine(0, newTableKernel(), "")
	peer.peers[0].ep = proto.New(proto.Config{MaxPayload: maxPayload, Epoch: fuzzPeerEpoch, Unreliable: alarm}, recordSource{peer})
	peer.peers[0].ep.SetRole(proto.RoleMaster)
	now := time.Unix(1_000_000, 0)
	// The peer has heard this node: its bulk copy is for this run.
	local := proto.New(proto.Config{Epoch: fuzzLocalEpoch}, recordSource{peer})
	for _, p := range local.Output(now, nil) {
		if _, err := peer.peers[0].ep.Input(fuzzLocalEpoch, p, now, nil); err != nil {
			panic(err)
		}
	}
	var in []byte
	send := func(ctl byte) {
		for _, p := range peer.peers[0].ep.Output(now, nil) {
			in = appendDatagram(in, ctl, p)
		}
		now = now.Add(time.Second)
	}
	flows := fuzzPeerFlows()
	for i, f := range flows {
		peer.internal.put(&f)
		peer.peers[0].ep.Queue(f.Key())
		if i%4 == 1 {
			x := fuzzPeerExpect(f, uint16(50000+i))
			peer.exp.internal[x.Key()] = x
			peer.peers[0].ep.Queue(x.Key())
		}
	}
	send(0)
	// Some are gone, an expectation among them.
	for _, f := range flows[:3] {
		peer.internal.del(f.Key())
		peer.peers[0].ep.Queue(f.Key())
	}
	for k := range peer.exp.internal {
		delete(peer.exp.internal, k)
		peer.peers[0].ep.Queue(k)
		break
	}
	send(0)
	peer.peers[0].ep.StartBulk(func(yield func(ct.Key) bool) {
		for k := range peer.internal.keys() {
			if !yield(k) {
				return
			}
		}
		peer.expectKeys(yield)
	})
	send(0)
	return in
}

// FuzzPeerDatagrams gives the engine a session of datagrams from its
// authenticated peer: payloads of any content, sealed with the right key,
// some replayed, forged, reflected or from a restarted peer. The engine
// must not panic; every datagram the envelope, the replay guard or the
// protocol refuses is counted; and in direct mode the kernel holds
// exactly the peer's flows that this node does not own, and only
// expectations the engine holds of the peer.
func FuzzPeerDatagrams(f *testing.F) {
	for _, alarm := range []bool{false, true} {
		in := peerSession(alarm)
		mode := uint8(fuzzDirect)
		if alarm {
			mode |= fuzzAlarm
		}
		f.Add(in, mode)
		f.Add(in, mode|fuzzMaster)
		f.Add(in, mode&^fuzzDirect)
	}
	// A restarted peer, a replay, a forgery, a reflection, a role change.
	in := peerSession(false)
	var first []byte
	if len(in) >= 3 {
		first = in[3 : 3+int(binary.BigEndian.Uint16(in[1:3]))]
	}
	var odd []byte
	for _, ctl := range []byte{0, dgReplay, dgForged, dgReflect, dgRole, dgRestart, dgRestart | dgRole} {
		odd = appendDatagram(odd, ctl, first)
	}
	f.Add(odd, uint8(fuzzDirect))
	// Malformed payloads: a truncated message, a data message of bad
	// records, a NACK backwards.
	f.Add(appendDatagram(nil, 0, []byte{0x01, 0x09, 0, 0, 0, 0, 0, 0, 0, 1}), uint8(fuzzDirect))
	f.Add(appendDatagram(nil, 0, []byte{0x12, 18, 1, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1,
		0x01, 12, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 0xff, 0xff}), uint8(fuzzDirect))
	f.Add(appendDatagram(nil, 0, []byte{0x11, 16, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1}), uint8(0))

	stateDir := f.TempDir()
	f.Fuzz(func(t *testing.T, in []byte, mode uint8) { peerDatagrams(t, in, mode, stateDir) })
}

// peerDatagrams is FuzzPeerDatagrams' body: it runs the datagrams of in
// through an engine of the given mode.
func peerDatagrams(t *testing.T, in []byte, mode uint8, stateDir string) {
	k := newTableKernel()
	e := fuzzEngine(mode, k, stateDir)
	ctx := context.Background()
	h := auth.Header{Sender: fuzzPeer, Epoch: fuzzPeerEpoch}
	var last auth.Header
	var buf []byte
	now := time.Now()
	for len(in) >= 3 {
		ctl := in[0]
		n := min(int(binary.BigEndian.Uint16(in[1:3])), len(in)-3)
		payload := in[3 : 3+n]
		in = in[3+n:]

		if ctl&dgRole != 0 {
			if e.role == proto.RoleMaster {
				e.role = proto.RoleBackup
			} else {
				e.role = proto.RoleMaster
			}
			e.wr.mayPause.Store(e.role != proto.RoleMaster)
		}
		if ctl&dgRestart != 0 {
			h.Epoch, h.Seq = h.Epoch+1, 0
		}
		h.Seq++
		sent := h
		switch {
		case ctl&dgReplay != 0 && last.Seq != 0:
			sent = last
		case ctl&dgReflect != 0:
			sent.Sender = e.sender
		}
		buf = auth.Seal(buf[:0], &fuzzKey, sent, payload)
		if ctl&dgForged != 0 {
			buf[len(buf)-1] ^= 0x80
		}
		drops := maps.Clone(e.stats.drops)
		malformed := e.peers[0].ep.Stats().Malformed
		ext, in0 := e.external.len(), e.stats.datagramsIn.Load()

		// What a link's receiver does, then the loop.
		hdr, p, err := auth.Open(&fuzzKey, buf)
		if err != nil {
			e.stats.dropErr(err)
		} else {
			e.onDatagram(ctx, datagram{h: hdr, payload: append([]byte(nil), p...), link: 0, peer: e.peers[0]})
			last = hdr
		}
		writeQueued(ctx, e)

		accepted := e.stats.datagramsIn.Load() - in0
		refused := 0
		for reason, n := range e.stats.drops {
			if reason != "bad_record" {
				refused += int(n - drops[reason])
			}
		}
		switch {
		case accepted+uint64(refused) != 1:
			t.Fatalf("datagram %+v (ctl %#x): %d accepted, %d refused (drops %v)", sent, ctl, accepted, refused, e.stats.drops)
		case ctl&dgForged != 0 && e.stats.drops["auth"] != drops["auth"]+1:
			t.Fatalf("a forged datagram was not refused as such: drops %v", e.stats.drops)
		case e.stats.drops["malformed"]-drops["malformed"] != e.peers[0].ep.Stats().Malformed-malformed:
			t.Fatalf("protocol refused %d payloads, engine counted %d", e.peers[0].ep.Stats().Malformed-malformed, e.stats.drops["malformed"]-drops["malformed"])
		case accepted == 0 && e.external.len() != ext && e.peers[0].ep.Stats().Malformed == malformed:
			// A payload the protocol found malformed keeps what came
			// before the malformed part (TestMalformedTailApplied).
			t.Fatalf("a refused datagram changed the peer's flows: %d, then %d", ext, e.external.len())
		}
		checkKernel(t, e, k)
		e.peers[0].ep.Output(now, nil)
		e.peers[0].ep.NextTimeout(now)
	}
	// The periodic refresh of the peer's states writes them again.
	if !e.refreshTick(now).IsZero() || len(e.wr.queue) > 0 {
		writeQueued(ctx, e)
	}
	checkKernel(t, e, k)
}

// writeQueued writes what the loop queued, as the writer does, in order.
func writeQueued(ctx context.Context, e *Engine) {
	for len(e.wr.queue) > 0 {
		j := <-e.wr.queue
		e.writeFlows(ctx, j.flows, false)
		e.wr.backlog.Add(-int64(len(j.flows)))
		if j.exps.any() {
			e.writeExpects(ctx, j.exps)
		}
	}
}

// checkKernel fails t unless the kernel holds what the engine believes it
// does: in direct mode, the peer's flows that this node does not own, as
// the peer sent them, and only expectations of the peer's; nothing in
// external mode.
func checkKernel(t *testing.T, e *Engine, k *tableKernel) {
	t.Helper()
	want := map[ct.Key]ct.Flow{}
	if e.cfg.Cache == Direct {
		for f := range e.external.flows() {
			if !e.internal.has(f.Key()) {
				want[f.Key()] = f
			}
		}
	}
	same := len(want) == len(k.flows)
	for key, w := range want {
		g, ok := k.flows[key]
		same = same && ok && w.Equal(&g)
	}
	if !same { // cmp.Diff only now: it would cost most of the fuzzing
		t.Fatalf("kernel flows (-want +got):\n%s", cmp.Diff(want, k.flows))
	}
	// The kernel may lack some: their master was replaced or deleted
	// (the peer's destroy of the expectation follows), or, as the
	// engine allows, a newer state of one it holds was refused (EEXIST).
	for key, x := range k.exps {
		if _, ok := e.exp.external[key]; !ok || e.cfg.Cache != Direct {
			t.Fatalf("the kernel holds expectation %v the engine does not have of the peer (%v)", &x, slices.Collect(maps.Keys(e.exp.external)))
		}
	}
}

// TestMalformedTailApplied: a datagram whose records are followed by a
// malformed message is counted as malformed, and its records are applied
// all the same: the protocol took them and acknowledges them, so the peer
// never sends them again.
func TestMalformedTailApplied(t *testing.T) {
	in := peerSession(false)
	n := int(binary.BigEndian.Uint16(in[1:3]))
	payload := append(slices.Clone(in[3:3+n]), 0x01, 0x09) // a truncated message
	k := newTableKernel()
	e := fuzzEngine(fuzzDirect, k, t.TempDir())
	buf := auth.Seal(nil, &fuzzKey, auth.Header{Sender: fuzzPeer, Epoch: fuzzPeerEpoch, Seq: 1}, payload)
	hdr, p, err := auth.Open(&fuzzKey, buf)
	if err != nil {
		t.Fatal(err)
	}
	e.onDatagram(context.Background(), datagram{h: hdr, payload: p, peer: e.peers[0]})
	writeQueued(context.Background(), e)
	if got := e.stats.drops["malformed"]; got != 1 {
		t.Errorf("malformed drops %d, want 1", got)
	}
	if e.external.len() == 0 || len(k.flows) == 0 {
		t.Fatalf("the records before the malformed message were lost: %d peer flows, %d in the kernel", e.external.len(), len(k.flows))
	}
	checkKernel(t, e, k)
}

// TestExpectRecreatedInOneBatch: the peer destroys an expectation and
// creates it again (a new timeout), and both records come in one
// delivery: the kernel ends with the new one; the other way round, with
// none.
func TestExpectRecreatedInOneBatch(t *testing.T) {
	ctx := context.Background()
	master := fuzzPeerFlows()[1]
	old := fuzzPeerExpect(master, 50001)
	renewed := old
	renewed.Timeout = 600
	gone := wire.Record{Kind: wire.KindExpectDestroy, Expect: &ct.Expect{Tuple: old.Tuple, Zone: old.Zone}}
	for _, tc := range []struct {
		name    string
		records []wire.Record
		want    *ct.Expect
	}{
		{"destroyed, then created", []wire.Record{gone, {Kind: wire.KindExpect, Expect: &renewed}}, &renewed},
		{"created, then destroyed", []wire.Record{{Kind: wire.KindExpect, Expect: &renewed}, gone}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newTableKernel()
			e := fuzzEngine(fuzzDirect, k, t.TempDir())
			k.flows[master.Key()] = master
			k.exps[old.Key()] = old
			e.exp.external[old.Key()] = old
			var b expectBatch
			for i := range tc.records {
				e.applyExpect(&tc.records[i], &b)
			}
			e.writeExpects(ctx, b)
			got, ok := k.exps[old.Key()]
			switch {
			case tc.want == nil && ok:
				t.Errorf("the kernel still holds %v", &got)
			case tc.want != nil && (!ok || got.Timeout != tc.want.Timeout):
				t.Errorf("the kernel holds %v (present %v), want %v", &got, ok, tc.want)
			}
		})
	}
}
