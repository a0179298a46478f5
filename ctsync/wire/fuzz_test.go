package wire

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// appendRecord appends r as the Append functions write it.
func appendRecord(b []byte, r *Record) []byte {
	switch r.Kind {
	case KindDestroy:
		return AppendDestroy(b, r.Flow.Key())
	case KindExpect:
		return AppendExpect(b, r.Expect)
	case KindExpectDestroy:
		return AppendExpectDestroy(b, r.Expect.Key())
	case KindWriteAck:
		return AppendWriteAck(b, r.Token)
	}
	return AppendUpdate(b, &r.Flow)
}

// FuzzParseRecord parses every record of the input, writes each known one
// again and parses that back: the same record, and a canonical encoding.
func FuzzParseRecord(f *testing.F) {
	f.Add(AppendWriteAck(nil, 1<<20))
	for _, tt := range roundTrips {
		f.Add(AppendUpdate(nil, &tt.flow))
		f.Add(AppendDestroy(nil, tt.flow.Key()))
	}
	for _, tt := range expectRoundTrips {
		f.Add(AppendExpect(nil, &tt.e))
		f.Add(AppendExpectDestroy(nil, tt.e.Key()))
	}
	goldens, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.hex"))
	for _, name := range goldens {
		f.Add(readHex(f, name))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for b := data; len(b) > 0; {
			r, rest, err := ParseRecord(b)
			if err != nil {
				if rest != nil {
					t.Fatalf("rest %x with error %v", rest, err)
				}
				return
			}
			if len(rest) >= len(b) {
				t.Fatalf("ParseRecord(%x) made no progress", b)
			}
			b = rest
			if !r.Kind.Known() {
				continue
			}
			enc := appendRecord(nil, &r)
			r2, rest2, err := ParseRecord(enc)
			if err != nil || len(rest2) != 0 {
				t.Fatalf("ParseRecord(%x) of %+v = %v, rest %x", enc, r, err, rest2)
			}
			if diff := cmp.Diff(r, r2); diff != "" {
				t.Fatalf("parse, append, parse changed the record %x (-first +second):\n%s", enc, diff)
			}
			if enc2 := appendRecord(nil, &r2); !bytes.Equal(enc, enc2) {
				t.Fatalf("encoding is not canonical: %x then %x", enc, enc2)
			}
		}
	})
}
