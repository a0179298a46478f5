package wire

import (
	"bytes"
	"errors"
	"testing"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/google/go-cmp/cmp"
)

func TestUnknownOptionSkipped(t *testing.T) {
	f := with(established(cl4, srv4), func(f *ct.Flow) { f.Extra = &ct.Extra{Helper: "ftp"} })
	rec := AppendUpdate(nil, &f)
	body := rec[2:]
	for _, tt := range []struct {
		name string
		opts []byte // appended to the body
		want ct.Flow
	}{
		{"unknown tag", []byte{0x7f, 3, 'a', 'b', 'c'}, f},
		{"unknown tag 0, empty", []byte{0, 0}, f},
		{"unknown tag, long", append([]byte{0xee, 0x80, 0x01}, make([]byte, 128)...), f},
		{"known option grown", []byte{optSCTP, 12, 3, 0, 0, 0, 1, 0, 0, 0, 2, 9, 9, 9},
			with(f, func(f *ct.Flow) { f.Extra = &ct.Extra{Helper: "ftp", SCTPState: 3, SCTPVTagOrig: 1, SCTPVTagR: 2} })},
		{"seqadj grown", []byte{optSeqAdjOrig, 4, 1, 2, 3, 4},
			with(f, func(f *ct.Flow) {
				f.Extra = &ct.Extra{Helper: "ftp", SeqAdjOrig: ct.SeqAdj{Position: 1, OffsetBefore: 2, OffsetAfter: 3}}
			})},
		{"labels longer than 16", append([]byte{optLabels, 17, 1}, make([]byte, 16)...),
			with(f, func(f *ct.Flow) { f.Extra = &ct.Extra{Helper: "ftp", Labels: [16]byte{1}} })},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := record(KindUpdate, append(bytes.Clone(body), tt.opts...))
			b = AppendDestroy(b, f.Key())
			r, rest, err := ParseRecord(b)
			if err != nil {
				t.Fatalf("ParseRecord(%x): %v", b, err)
			}
			if diff := cmp.Diff(Record{Kind: KindUpdate, Flow: tt.want}, r); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if r, _, err := ParseRecord(rest); err != nil || r.Kind != KindDestroy {
				t.Errorf("the next record: %v %v", r.Kind, err)
			}
		})
	}
}

// record frames body as a record of kind k.
func record(k Kind, body []byte) []byte {
	b, start := begin(nil, k)
	return end(append(b, body...), start)
}

func TestUnknownKindSkipped(t *testing.T) {
	f := established(cl4, srv4)
	for _, body := range [][]byte{nil, {1, 2, 3}, bytes.Repeat([]byte{0xff}, 200)} {
		b := record(0x42, body)
		b = AppendUpdate(b, &f)
		r, rest, err := ParseRecord(b)
		if err != nil || r.Kind != 0x42 || r.Kind.Known() || !r.Flow.Equal(&ct.Flow{}) {
			t.Fatalf("unknown kind with a %d-byte body: %+v, %v", len(body), r, err)
		}
		r, rest, err = ParseRecord(rest)
		if err != nil || r.Kind != KindUpdate || !r.Flow.Equal(&f) || len(rest) != 0 {
			t.Errorf("the record after an unknown kind: %+v, %v", r, err)
		}
	}
	// Options of a destroy are skipped too.
	d := AppendDestroy(nil, f.Key())
	d = record(KindDestroy, append(d[2:], 9, 1, 0))
	if r, _, err := ParseRecord(d); err != nil || r.Flow.Orig != f.Orig {
		t.Errorf("destroy with an option: %+v, %v", r, err)
	}
}

func TestMalformed(t *testing.T) {
	good := AppendUpdate(nil, ptr(established(cl4, srv4)))
	body := good[2:]
	patch := func(i int, v byte) []byte {
		b := bytes.Clone(body)
		b[i] = v
		return record(KindUpdate, b)
	}
	for _, tt := range []struct {
		name string
		in   []byte
		err  error
	}{
		{"empty", nil, ErrTruncated},
		{"kind only", []byte{1}, ErrTruncated},
		{"length varint cut", []byte{1, 0x80}, ErrTruncated},
		{"length varint overflow", append([]byte{1}, bytes.Repeat([]byte{0xff}, 11)...), ErrMalformed},
		{"body cut", good[:len(good)-1], ErrTruncated},
		{"reserved kind", []byte{0, 0}, ErrMalformed},
		{"empty update", []byte{1, 0}, ErrTruncated},
		{"reserved flag", patch(0, 0xd8), ErrMalformed},
		{"TCP flag on UDP", patch(1, ct.ProtoUDP), ErrMalformed},
		{"tuple cut", record(KindUpdate, body[:10]), ErrTruncated},
		{"ipv6 tuple cut", record(KindUpdate, append([]byte{flagV6, 6}, make([]byte, 30)...)), ErrTruncated},
		{"tcp cut", record(KindUpdate, body[:len(body)-1]), ErrTruncated},
		{"status varint cut", record(KindUpdate, append(bytes.Clone(body[:14]), 0x80)), ErrTruncated},
		{"zone too big", record(KindUpdate, append([]byte{flagZone, 17}, append(make([]byte, 12), 0x80, 0x80, 0x04)...)), ErrMalformed},
		{"status too big", record(KindUpdate, append([]byte{flagStatus, 17}, append(make([]byte, 12), 0x80, 0x80, 0x80, 0x80, 0x10)...)), ErrMalformed},
		{"option length beyond body", record(KindUpdate, append(bytes.Clone(body), 1, 5, 0)), ErrTruncated},
		{"option length cut", record(KindUpdate, append(bytes.Clone(body), 1)), ErrTruncated},
		{"sctp option short", record(KindUpdate, append(bytes.Clone(body), optSCTP, 8, 0, 0, 0, 0, 0, 0, 0, 0)), ErrTruncated},
		{"dccp option short", record(KindUpdate, append(bytes.Clone(body), optDCCP, 2, 0, 0)), ErrTruncated},
		{"seqadj option short", record(KindUpdate, append(bytes.Clone(body), optSeqAdjOrig, 2, 1, 2)), ErrTruncated},
		{"seqadj too big", record(KindUpdate, append(bytes.Clone(body), optSeqAdjRepl, 7, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0)), ErrMalformed},
		{"destroy with status", record(KindDestroy, append([]byte{flagStatus, 6}, make([]byte, 13)...)), ErrMalformed},
		{"destroy option cut", record(KindDestroy, append([]byte{0, 6}, make([]byte, 13)...)), ErrTruncated},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, rest, err := ParseRecord(tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("ParseRecord(%x) = %+v, %v; want %v", tt.in, r, err, tt.err)
			}
			if rest != nil {
				t.Errorf("rest = %x on error, want nil", rest)
			}
		})
	}
}
