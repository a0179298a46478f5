package wire

import (
	"bytes"
	"github.com/ctha/ctha/internal/hexfile"
	"path/filepath"
	"testing"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/google/go-cmp/cmp"
)

// readHex reads a golden file (package hexfile).
func readHex(t testing.TB, path string) []byte { return hexfile.Read(t, path) }

// TestGolden pins the format: each file holds records, which must parse to
// the records listed here and, unless parseOnly, be exactly what the
// Append functions write for them.
func TestGolden(t *testing.T) {
	update := func(f ct.Flow) Record { return Record{Kind: KindUpdate, Flow: f} }
	destroy := func(k ct.Key) Record { return Record{Kind: KindDestroy, Flow: ct.Flow{Orig: k.Orig, Zone: k.Zone}} }
	tcp := established(cl4, srv4)
	ftp := ftpExpect(cl4, srv4)
	for _, tt := range []struct {
		file      string
		records   []Record
		parseOnly bool
	}{
		{file: "ipv4-tcp-established.hex", records: []Record{update(tcp)}},
		{file: "ipv4-tcp-snat.hex", records: []Record{update(snat(tcp, vip4, 61000))}},
		{file: "ipv4-icmp-echo.hex", records: []Record{update(echo(cl4, srv4))}},
		{file: "ipv6-udp-zone-mark.hex", records: []Record{update(with(udp(cl6, srv6), func(f *ct.Flow) { f.Zone, f.Mark = 5, 0x80000000 }))}},
		{file: "ipv4-tcp-ftp-options.hex", records: []Record{update(with(tcp, func(f *ct.Flow) {
			f.Extra = &ct.Extra{Labels: [16]byte{0: 1}, Helper: "ftp", SeqAdjOrig: ct.SeqAdj{Position: 1000, OffsetAfter: 4}}
		}))}},
		{file: "ipv4-destroy.hex", records: []Record{destroy(ct.Key{Orig: tcp.Orig, Zone: 2})}},
		{file: "ipv4-ftp-expect.hex", records: []Record{
			{Kind: KindExpect, Expect: &ftp},
			{Kind: KindExpectDestroy, Expect: &ct.Expect{Tuple: ftp.Tuple}},
		}},
		{file: "forward-compat.hex", parseOnly: true, records: []Record{
			update(udp(cl4, srv4)), {Kind: 0x7e}, destroy(ct.Key{Orig: tcp.Orig}),
		}},
	} {
		t.Run(tt.file, func(t *testing.T) {
			want := readHex(t, filepath.Join("testdata", "golden", tt.file))
			var got []Record
			for b := want; len(b) > 0; {
				r, rest, err := ParseRecord(b)
				if err != nil {
					t.Fatalf("record %d: %v", len(got), err)
				}
				got, b = append(got, r), rest
			}
			if diff := cmp.Diff(tt.records, got); diff != "" {
				t.Errorf("parsed records (-want +got):\n%s", diff)
			}
			if tt.parseOnly {
				return
			}
			var b []byte
			for _, r := range tt.records {
				b = appendRecord(b, &r)
			}
			if !bytes.Equal(b, want) {
				t.Errorf("encoding changed:\n got %x\nwant %x", b, want)
			}
		})
	}
}
