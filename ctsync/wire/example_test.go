package wire_test

import (
	"fmt"
	"net/netip"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/wire"
)

// A sender batches records into one payload; the receiver reads them back
// in order, skipping kinds it does not know.
func Example() {
	orig := ct.NewTuple(ct.ProtoTCP, netip.MustParseAddr("10.10.1.100"), netip.MustParseAddr("10.10.2.100"), 40000, 5001)
	f := ct.Flow{Orig: orig, Reply: orig.Reverse(), Status: 0x18e, Timeout: 431999,
		TCP: ct.TCPInfo{State: ct.TCPEstablished, WScaleOrig: 7, WScaleRepl: 7, FlagsOrig: 0x23, FlagsRepl: 0x23}}

	payload := make([]byte, 0, 1400)
	payload = wire.AppendUpdate(payload, &f)
	payload = wire.AppendDestroy(payload, f.Key())
	fmt.Println(len(payload), "bytes")

	for b := payload; len(b) > 0; {
		r, rest, err := wire.ParseRecord(b)
		if err != nil {
			fmt.Println(err)
			return
		}
		b = rest
		switch r.Kind {
		case wire.KindUpdate:
			fmt.Println("update", &r.Flow)
		case wire.KindDestroy:
			fmt.Println("destroy", r.Flow.Orig)
		default:
			// A later version's record: skipped.
		}
	}
	// Output:
	// 42 bytes
	// update proto 6 10.10.1.100:40000 -> 10.10.2.100:5001 zone 0 status 0x18e timeout 431999s mark 0x0 tcp state 3
	// destroy proto 6 10.10.1.100:40000 -> 10.10.2.100:5001
}
