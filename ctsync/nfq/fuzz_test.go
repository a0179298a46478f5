package nfq

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// FuzzPacketUnmarshalMarshal: whatever it is given, the decoder returns
// (no panic); what it decodes, encoded and decoded again, is the same
// packet.
func FuzzPacketUnmarshalMarshal(f *testing.F) {
	littleEndian(f)
	f.Add(unhex(f, goldenGlue))
	f.Add(unhex(f, `3a 00 00 00 00 03 00 00 00 00 00 00 00 00 00 00 0a 00 00 03
0b 00 01 00 00 00 01 00 86 dd 03 00 08 00 03 00 00 00 00 2a 08 00 0e 00 00 00 00 01
0a 00 0a 00 60 00 00 00 00 14`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Packet
		if err := p.UnmarshalBinary(b); err != nil {
			return
		}
		again, err := p.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary of a decoded packet: %v", err)
		}
		var q Packet
		if err := q.UnmarshalBinary(again); err != nil {
			t.Fatalf("decode the encoded packet: %v", err)
		}
		if diff := cmp.Diff(p, q, flowCmp, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("decode, encode, decode (-first +second):\n%s", diff)
		}
	})
}

// FuzzDatagram: the reader's walk over a datagram's messages never panics
// and never loops, whatever the kernel (or a bug) sends.
func FuzzDatagram(f *testing.F) {
	littleEndian(f)
	g := unhex(f, goldenGlue)
	f.Add(append(append([]byte(nil), g...), g...))
	f.Add(unhex(f, `24 00 00 00 02 00 00 01 09 00 00 00 00 00 00 00 ff ff ff ff
3c 00 00 00 02 03 05 00 09 00 00 00 00 00 00 00`))
	f.Fuzz(func(t *testing.T, d []byte) {
		n := 0
		_ = forEachMessage(d, func(typ uint16, body []byte) {
			n++
			if n > len(d)/nlmsgHeaderLen {
				t.Fatalf("%d messages in %d bytes", n, len(d))
			}
			switch typ {
			case nlmsgError:
				_, _, _ = parseError(body)
			default:
				var p Packet
				_ = p.decode(body)
			}
		})
	})
}
