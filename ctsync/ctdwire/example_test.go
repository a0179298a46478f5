package ctdwire_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/ctdwire"
)

// table is a node's flows; it gives the Endpoint their current state.
type table map[ct.Key]ct.Flow

func (t table) AppendMsgState(b []byte, k ct.Key) ([]byte, ctdwire.Type) {
	f, ok := t[k]
	if !ok {
		f = ct.Flow{Orig: k.Orig, Reply: k.Orig.Reverse()}
		s, _ := ctdwire.StateOf(&f)
		return ctdwire.AppendState(b, &s), ctdwire.TypeCTDel
	}
	s, _ := ctdwire.StateOf(&f)
	return ctdwire.AppendState(b, &s), ctdwire.TypeCTUpd
}

// Two Endpoints, one flow: what one side queues, the other receives. A
// real runner reads and writes a UDP socket and sleeps until NextTimeout.
func Example() {
	now := time.Unix(1_800_000_000, 0)
	own := table{}
	a := ctdwire.New(ctdwire.Config{InitialSeq: uint32(now.Unix())}, own)
	b := ctdwire.New(ctdwire.Config{InitialSeq: 1}, table{})

	orig := ct.NewTuple(ct.ProtoTCP, netip.MustParseAddr("10.10.1.100"), netip.MustParseAddr("10.10.2.100"), 40000, 5001)
	f := ct.Flow{Orig: orig, Reply: orig.Reverse(), Status: ct.StatusConfirmed | ct.StatusAssured, Timeout: 300,
		TCP: ct.TCPInfo{State: ct.TCPEstablished}}
	own[f.Key()] = f
	a.Queue(f.Key())

	for _, d := range a.Output(now, nil) {
		msgs, err := b.Input(d, now, nil)
		if err != nil {
			panic(err)
		}
		for _, m := range msgs {
			got, dropped, err := m.Flow()
			fmt.Println(m.Type, &got, "dropped:", dropped, err)
		}
	}
	fmt.Println("peer met:", b.PeerRestarted())
	// Output:
	// CT_UPD proto 6 10.10.1.100:40000 -> 10.10.2.100:5001 zone 0 status 0xc timeout 300s mark 0x0 tcp state 3 dropped: none <nil>
	// peer met: true
}
