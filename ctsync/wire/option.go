package wire

import (
	"encoding/binary"

	"github.com/ctha/ctha/ctsync/ct"
)

// Option tags: the fields of ct.Extra, each sent only when not zero.
const (
	optLabels     = 1 // 1..16 bytes: ct.Extra.Labels without its trailing zero bytes
	optHelper     = 2 // the helper name
	optSeqAdjOrig = 3 // uvarint position, offset before, offset after
	optSeqAdjRepl = 4 // same, reply direction
	optSCTP       = 5 // state u8, vtag orig u32, vtag reply u32
	optDCCP       = 6 // state u8, role u8, uvarint handshake seq
)

// appendOptions appends e's non-zero fields as options, in tag order.
func appendOptions(b []byte, e *ct.Extra) []byte {
	if n := labelsLen(&e.Labels); n > 0 {
		b = append(b, optLabels, byte(n))
		b = append(b, e.Labels[:n]...)
	}
	if e.Helper != "" {
		b = append(b, optHelper)
		b = binary.AppendUvarint(b, uint64(len(e.Helper)))
		b = append(b, e.Helper...)
	}
	if e.SeqAdjOrig != (ct.SeqAdj{}) {
		b = appendSeqAdj(b, optSeqAdjOrig, &e.SeqAdjOrig)
	}
	if e.SeqAdjRepl != (ct.SeqAdj{}) {
		b = appendSeqAdj(b, optSeqAdjRepl, &e.SeqAdjRepl)
	}
	if e.SCTPState != 0 || e.SCTPVTagOrig != 0 || e.SCTPVTagR != 0 {
		b = append(b, optSCTP, 9, e.SCTPState)
		b = binary.BigEndian.AppendUint32(b, e.SCTPVTagOrig)
		b = binary.BigEndian.AppendUint32(b, e.SCTPVTagR)
	}
	if e.DCCPState != 0 || e.DCCPRole != 0 || e.DCCPHandshakeSeq != 0 {
		b = append(b, optDCCP, 0, e.DCCPState, e.DCCPRole)
		n := len(b) - 2
		b = binary.AppendUvarint(b, e.DCCPHandshakeSeq)
		b[n-1] = byte(len(b) - n) // at most 12 bytes: a one-byte length
	}
	return b
}

// labelsLen is the length of l without its trailing zero bytes.
func labelsLen(l *[16]byte) int {
	n := len(l)
	for n > 0 && l[n-1] == 0 {
		n--
	}
	return n
}

func appendSeqAdj(b []byte, tag byte, s *ct.SeqAdj) []byte {
	b = append(b, tag, 0)
	n := len(b)
	b = binary.AppendUvarint(b, uint64(s.Position))
	b = binary.AppendUvarint(b, uint64(s.OffsetBefore))
	b = binary.AppendUvarint(b, uint64(s.OffsetAfter))
	b[n-1] = byte(len(b) - n) // at most 15 bytes: a one-byte length
	return b
}

// option reads the next option; ok is false at the end of the body or on
// error.
func (d *decoder) option() (tag byte, v []byte, ok bool) {
	if d.err != nil || len(d.b) == 0 {
		return 0, nil, false
	}
	tag = d.b[0]
	d.b = d.b[1:]
	n := d.uvarint(1<<64-1, "option length")
	if n > uint64(len(d.b)) {
		d.fail("option value", ErrTruncated)
		return 0, nil, false
	}
	v = d.take(int(n), "option value")
	return tag, v, d.err == nil
}

// options reads the options that end an update body into f.Extra, which
// stays nil when they carry nothing. Unknown tags are skipped; a known
// option longer than this version reads is fine (the field may grow), a
// shorter one is malformed.
func (d *decoder) options(f *ct.Flow) {
	var e ct.Extra
	for {
		tag, v, ok := d.option()
		if !ok {
			break
		}
		switch tag {
		case optLabels:
			e.Labels = [16]byte{}
			copy(e.Labels[:], v)
		case optHelper:
			e.Helper = string(v)
		case optSeqAdjOrig:
			e.SeqAdjOrig = d.seqAdj(v)
		case optSeqAdjRepl:
			e.SeqAdjRepl = d.seqAdj(v)
		case optSCTP:
			if len(v) < 9 {
				d.fail("SCTP option", ErrTruncated)
				break
			}
			e.SCTPState = v[0]
			e.SCTPVTagOrig = binary.BigEndian.Uint32(v[1:])
			e.SCTPVTagR = binary.BigEndian.Uint32(v[5:])
		case optDCCP:
			if len(v) < 2 {
				d.fail("DCCP option", ErrTruncated)
				break
			}
			e.DCCPState, e.DCCPRole = v[0], v[1]
			o := decoder{b: v[2:], kind: d.kind}
			e.DCCPHandshakeSeq = o.uvarint(1<<64-1, "DCCP handshake seq")
			d.keep(o.err)
		}
	}
	if d.err == nil && e != (ct.Extra{}) {
		p := new(ct.Extra)
		*p = e
		f.Extra = p
	}
}

func (d *decoder) seqAdj(v []byte) ct.SeqAdj {
	o := decoder{b: v, kind: d.kind}
	s := ct.SeqAdj{
		Position:     uint32(o.uvarint(1<<32-1, "seqadj position")),
		OffsetBefore: uint32(o.uvarint(1<<32-1, "seqadj offset before")),
		OffsetAfter:  uint32(o.uvarint(1<<32-1, "seqadj offset after")),
	}
	d.keep(o.err)
	return s
}

// keep makes err, from a decoder of an option's value, d's error.
func (d *decoder) keep(err error) {
	if d.err == nil {
		d.err = err
	}
}

// skipOptions checks the framing of the options that end a body and
// ignores them.
func (d *decoder) skipOptions() {
	for {
		if _, _, ok := d.option(); !ok {
			return
		}
	}
}
