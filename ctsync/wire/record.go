package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/ctha/ctha/ctsync/ct"
)

// Kind is the kind of a record: its first byte.
type Kind uint8

// Record kinds. Kind 0 is reserved and malformed; kinds this version does
// not know are skipped (see ParseRecord).
const (
	// KindUpdate carries a new or changed flow: its full current state.
	KindUpdate Kind = 1
	// KindDestroy names a flow that ended: its original tuple and zone.
	KindDestroy Kind = 2
	// KindExpect carries an expectation: its full current state.
	KindExpect Kind = 3
	// KindExpectDestroy names an expectation that is gone: its tuple and
	// zone.
	KindExpectDestroy Kind = 4
	// KindWriteAck asks the receiver to report, with Token, once every
	// record before it in the stream is written into its kernel
	// (multiprimary's defer). The report travels outside this codec.
	KindWriteAck Kind = 5
)

// Known reports whether this version of the package decodes records of
// kind k.
func (k Kind) Known() bool { return k >= KindUpdate && k <= KindWriteAck }

func (k Kind) String() string {
	switch k {
	case KindUpdate:
		return "update"
	case KindDestroy:
		return "destroy"
	case KindExpect:
		return "expect"
	case KindExpectDestroy:
		return "expect destroy"
	case KindWriteAck:
		return "write ack"
	}
	return "kind " + strconv.Itoa(int(k))
}

// Errors returned by ParseRecord, wrapped with the record kind and the
// field that failed; test them with errors.Is.
var (
	// ErrTruncated: the input ends before a record or one of its fields does.
	ErrTruncated = errors.New("truncated")
	// ErrMalformed: a value is invalid (reserved kind or flag, a varint
	// that overflows or exceeds its field, TCP state on a non-TCP flow).
	ErrMalformed = errors.New("malformed")
)

// A Record is one decoded record.
type Record struct {
	Kind Kind
	// Flow is the flow an update carries. For a destroy only Orig and Zone
	// are set; for an expectation, or a kind that is not Known, it is the
	// zero Flow.
	Flow ct.Flow
	// Expect is the expectation of an expect record; of an expect destroy
	// only Tuple and Zone are set. Nil for the other kinds.
	Expect *ct.Expect
	// Token is a write ack's token.
	Token uint32
}

// Flag bits of the byte that starts an update or destroy body.
const (
	flagV6      = 0x01 // addresses are 16 bytes (else 4)
	flagReply   = 0x02 // the reply tuple follows (else it is the inverse of orig)
	flagZone    = 0x04
	flagStatus  = 0x08
	flagTimeout = 0x10
	flagMark    = 0x20
	flagTCP     = 0x40
	flagReserve = 0x80 // must be zero

	destroyFlags = flagV6 | flagZone // the only flags a destroy may have
)

// AppendUpdate appends a record carrying f's full replicated state.
//
// The reply tuple always has the protocol and family of the original one
// (as in conntrack), and IPv4 addresses are v4-mapped, as ct.NewTuple makes
// them: the codec does not carry anything else. TCP state is sent for TCP
// flows only.
func AppendUpdate(b []byte, f *ct.Flow) []byte {
	var flags byte
	v6 := f.Orig.V6
	if v6 {
		flags |= flagV6
	}
	reply := !isInverse(&f.Reply, &f.Orig)
	if reply {
		flags |= flagReply
	}
	if f.Zone != 0 {
		flags |= flagZone
	}
	if f.Status != 0 {
		flags |= flagStatus
	}
	if f.Timeout != 0 {
		flags |= flagTimeout
	}
	if f.Mark != 0 {
		flags |= flagMark
	}
	tcp := f.Orig.Proto == ct.ProtoTCP && f.TCP != (ct.TCPInfo{})
	if tcp {
		flags |= flagTCP
	}

	b, body := begin(b, KindUpdate)
	b = append(b, flags, f.Orig.Proto)
	b = appendTuple(b, &f.Orig, v6)
	if reply {
		b = appendTuple(b, &f.Reply, v6)
	}
	if f.Zone != 0 {
		b = binary.AppendUvarint(b, uint64(f.Zone))
	}
	if f.Status != 0 {
		b = binary.AppendUvarint(b, uint64(f.Status))
	}
	if f.Timeout != 0 {
		b = binary.AppendUvarint(b, uint64(f.Timeout))
	}
	if f.Mark != 0 {
		b = binary.AppendUvarint(b, uint64(f.Mark))
	}
	if tcp {
		t := &f.TCP
		b = append(b, t.State, t.WScaleOrig, t.WScaleRepl, t.FlagsOrig, t.FlagsRepl)
	}
	if f.Extra != nil {
		b = appendOptions(b, f.Extra)
	}
	return end(b, body)
}

// AppendDestroy appends a record naming the flow that ended.
func AppendDestroy(b []byte, k ct.Key) []byte {
	var flags byte
	if k.Orig.V6 {
		flags |= flagV6
	}
	if k.Zone != 0 {
		flags |= flagZone
	}
	b, body := begin(b, KindDestroy)
	b = append(b, flags, k.Orig.Proto)
	b = appendTuple(b, &k.Orig, k.Orig.V6)
	if k.Zone != 0 {
		b = binary.AppendUvarint(b, uint64(k.Zone))
	}
	return end(b, body)
}

// AppendWriteAck appends a record asking the receiver to report token once
// every record before it is written into its kernel.
func AppendWriteAck(b []byte, token uint32) []byte {
	b, body := begin(b, KindWriteAck)
	b = binary.AppendUvarint(b, uint64(token))
	return end(b, body)
}

// begin appends a record's kind and a one-byte placeholder for its length,
// and returns where the body starts.
func begin(b []byte, k Kind) ([]byte, int) {
	b = append(b, byte(k), 0)
	return b, len(b)
}

// end writes the length of the body that started at body, moving the body
// when the length needs more than the one byte begin reserved.
func end(b []byte, body int) []byte {
	n := len(b) - body
	if n < 0x80 {
		b[body-1] = byte(n)
		return b
	}
	var lb [binary.MaxVarintLen64]byte
	l := binary.PutUvarint(lb[:], uint64(n))
	b = append(b, lb[1:l]...) // room for the extra length bytes
	copy(b[body-1+l:], b[body:body+n])
	copy(b[body-1:], lb[:l])
	return b
}

// ParseRecord decodes the first record of b and returns the rest of b.
//
// A record of a kind that is not Known is skipped: it is returned with its
// Kind, a zero Flow and a nil error, and rest starts after it, so a reader
// can go on with the next record. Unknown options inside a known record
// are skipped too. Malformed input returns an error wrapping ErrTruncated
// or ErrMalformed (and a nil rest); ParseRecord never panics.
//
// ParseRecord allocates only for a flow with options (labels, helper,
// sequence adjustment, SCTP, DCCP): the *ct.Extra and the helper name.
func ParseRecord(b []byte) (r Record, rest []byte, err error) {
	if len(b) == 0 {
		return Record{}, nil, fmt.Errorf("wire: record kind: %w", ErrTruncated)
	}
	r.Kind = Kind(b[0])
	n, l := binary.Uvarint(b[1:])
	switch {
	case l == 0:
		return Record{}, nil, fmt.Errorf("wire: %v record: length: %w", r.Kind, ErrTruncated)
	case l < 0:
		return Record{}, nil, fmt.Errorf("wire: %v record: length: %w", r.Kind, ErrMalformed)
	case n > uint64(len(b)-1-l):
		return Record{}, nil, fmt.Errorf("wire: %v record: body of %d bytes: %w", r.Kind, n, ErrTruncated)
	}
	body, rest := b[1+l:1+l+int(n)], b[1+l+int(n):]
	d := decoder{b: body, kind: r.Kind}
	switch r.Kind {
	case KindUpdate:
		d.update(&r.Flow)
	case KindDestroy:
		d.destroy(&r.Flow)
	case KindExpect:
		r.Expect = new(ct.Expect)
		d.expect(r.Expect)
	case KindExpectDestroy:
		r.Expect = new(ct.Expect)
		d.expectDestroy(r.Expect)
	case KindWriteAck:
		d.writeAck(&r.Token)
	case 0:
		d.fail("reserved kind", ErrMalformed)
	default:
		return r, rest, nil
	}
	if d.err != nil {
		return Record{}, nil, d.err
	}
	return r, rest, nil
}

// writeAck reads a write ack's body: the token alone, in its shortest
// encoding (the body is canonical, as AppendWriteAck writes it).
func (d *decoder) writeAck(token *uint32) {
	n := len(d.b)
	*token = uint32(d.uvarint(math.MaxUint32, "token"))
	switch {
	case d.err != nil:
	case n-len(d.b) != len(binary.AppendUvarint(nil, uint64(*token))):
		d.fail("token: not in its shortest form", ErrMalformed)
	case len(d.b) != 0:
		d.fail("bytes after the token", ErrMalformed)
	}
}

// decoder reads the fields of one record body; the first error sticks.
type decoder struct {
	b    []byte
	kind Kind
	err  error
}

func (d *decoder) fail(what string, sentinel error) {
	if d.err == nil {
		d.err = fmt.Errorf("wire: %v record: %s: %w", d.kind, what, sentinel)
	}
}

// take consumes n bytes; nil when the body is shorter.
func (d *decoder) take(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.fail(what, ErrTruncated)
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) uvarint(limit uint64, what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	switch {
	case n == 0:
		d.fail(what, ErrTruncated)
		return 0
	case n < 0 || v > limit:
		d.fail(what, ErrMalformed)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// head reads the flags and protocol bytes and the original tuple.
func (d *decoder) head(f *ct.Flow, allowed byte) (flags byte) {
	p := d.take(2, "flags")
	if p == nil {
		return 0
	}
	flags = p[0]
	if flags&^allowed != 0 {
		d.fail(fmt.Sprintf("flags %#02x", flags), ErrMalformed)
		return 0
	}
	f.Orig = d.tuple(p[1], flags&flagV6 != 0, "orig tuple")
	return flags
}

func (d *decoder) update(f *ct.Flow) {
	flags := d.head(f, ^byte(flagReserve))
	if flags&flagReply != 0 {
		f.Reply = d.tuple(f.Orig.Proto, f.Orig.V6, "reply tuple")
	} else {
		invert(&f.Reply, &f.Orig)
	}
	if flags&flagZone != 0 {
		f.Zone = uint16(d.uvarint(math.MaxUint16, "zone"))
	}
	if flags&flagStatus != 0 {
		f.Status = uint32(d.uvarint(math.MaxUint32, "status"))
	}
	if flags&flagTimeout != 0 {
		f.Timeout = uint32(d.uvarint(math.MaxUint32, "timeout"))
	}
	if flags&flagMark != 0 {
		f.Mark = uint32(d.uvarint(math.MaxUint32, "mark"))
	}
	if flags&flagTCP != 0 {
		if f.Orig.Proto != ct.ProtoTCP {
			d.fail("TCP state on a non-TCP flow", ErrMalformed)
		}
		if p := d.take(5, "TCP state"); p != nil {
			f.TCP = ct.TCPInfo{State: p[0], WScaleOrig: p[1], WScaleRepl: p[2], FlagsOrig: p[3], FlagsRepl: p[4]}
		}
	}
	if d.err == nil {
		d.options(f)
	}
}

func (d *decoder) destroy(f *ct.Flow) {
	flags := d.head(f, destroyFlags)
	if flags&flagZone != 0 {
		f.Zone = uint16(d.uvarint(math.MaxUint16, "zone"))
	}
	if d.err == nil {
		d.skipOptions() // none are defined for a destroy
	}
}
