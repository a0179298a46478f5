package wire

import (
	"testing"

	"github.com/ctha/ctha/ctsync/ct"
)

func BenchmarkAppendUpdate(b *testing.B) {
	for _, bb := range []struct {
		name string
		flow ct.Flow
	}{
		{"ipv4-tcp", established(cl4, srv4)},
		{"ipv6-tcp-snat", snat(established(cl6, srv6), vip6, 61000)},
		{"ipv4-tcp-ftp", with(established(cl4, srv4), func(f *ct.Flow) {
			f.Extra = &ct.Extra{Helper: "ftp", SeqAdjOrig: ct.SeqAdj{Position: 1000, OffsetAfter: 4}}
		})},
	} {
		b.Run(bb.name, func(b *testing.B) {
			buf := make([]byte, 0, 1500)
			b.ReportAllocs()
			for b.Loop() {
				buf = AppendUpdate(buf[:0], &bb.flow)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

func BenchmarkParseRecord(b *testing.B) {
	for _, bb := range []struct {
		name string
		flow ct.Flow
	}{
		{"ipv4-tcp", established(cl4, srv4)},
		{"ipv6-tcp-snat", snat(established(cl6, srv6), vip6, 61000)},
		{"ipv4-tcp-ftp", with(established(cl4, srv4), func(f *ct.Flow) {
			f.Extra = &ct.Extra{Helper: "ftp", SeqAdjOrig: ct.SeqAdj{Position: 1000, OffsetAfter: 4}}
		})},
	} {
		b.Run(bb.name, func(b *testing.B) {
			rec := AppendUpdate(nil, &bb.flow)
			b.SetBytes(int64(len(rec)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := ParseRecord(rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
