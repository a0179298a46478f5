package wire

import (
	"encoding/binary"
	"math"

	"github.com/ctha/ctha/ctsync/ct"
)

// Flags of an expectation body (the V6 and ZONE bits are those of a flow).
const (
	expFlagFlags   = 0x08
	expFlagTimeout = 0x10
	expFlagClass   = 0x20
	expFlagsKnown  = flagV6 | flagZone | expFlagFlags | expFlagTimeout | expFlagClass

	expOptHelper = 1
	expOptFn     = 2
)

// AppendExpect appends a record carrying an expectation's full state. The
// master tuple and the mask have the expected tuple's family; the mask has
// its protocol too.
func AppendExpect(b []byte, e *ct.Expect) []byte {
	var flags byte
	v6 := e.Tuple.V6
	if v6 {
		flags |= flagV6
	}
	if e.Zone != 0 {
		flags |= flagZone
	}
	if e.Flags != 0 {
		flags |= expFlagFlags
	}
	if e.Timeout != 0 {
		flags |= expFlagTimeout
	}
	if e.Class != 0 {
		flags |= expFlagClass
	}
	b, body := begin(b, KindExpect)
	b = append(b, flags, e.Tuple.Proto)
	b = appendTuple(b, &e.Tuple, v6)
	b = append(b, e.Master.Proto)
	b = appendTuple(b, &e.Master, v6)
	b = appendTuple(b, &e.Mask, v6)
	for _, f := range []struct {
		bit byte
		v   uint32
	}{{flagZone, uint32(e.Zone)}, {expFlagFlags, e.Flags}, {expFlagTimeout, e.Timeout}, {expFlagClass, e.Class}} {
		if flags&f.bit != 0 {
			b = binary.AppendUvarint(b, uint64(f.v))
		}
	}
	for _, o := range []struct {
		tag byte
		v   string
	}{{expOptHelper, e.Helper}, {expOptFn, e.Fn}} {
		if o.v != "" {
			b = append(b, o.tag)
			b = binary.AppendUvarint(b, uint64(len(o.v)))
			b = append(b, o.v...)
		}
	}
	return end(b, body)
}

// AppendExpectDestroy appends a record naming an expectation that is gone:
// its tuple and zone.
func AppendExpectDestroy(b []byte, k ct.Key) []byte {
	var flags byte
	if k.Orig.V6 {
		flags |= flagV6
	}
	if k.Zone != 0 {
		flags |= flagZone
	}
	b, body := begin(b, KindExpectDestroy)
	b = append(b, flags, k.Orig.Proto)
	b = appendTuple(b, &k.Orig, k.Orig.V6)
	if k.Zone != 0 {
		b = binary.AppendUvarint(b, uint64(k.Zone))
	}
	return end(b, body)
}

func (d *decoder) expect(e *ct.Expect) {
	p := d.take(2, "flags")
	if p == nil {
		return
	}
	flags := p[0]
	if flags&^expFlagsKnown != 0 {
		d.fail("expectation flags", ErrMalformed)
		return
	}
	v6 := flags&flagV6 != 0
	e.Tuple = d.tuple(p[1], v6, "expected tuple")
	if mp := d.take(1, "master protocol"); mp != nil {
		e.Master = d.tuple(mp[0], v6, "master tuple")
	}
	e.Mask = d.tuple(p[1], v6, "mask")
	if flags&flagZone != 0 {
		e.Zone = uint16(d.uvarint(math.MaxUint16, "zone"))
	}
	for _, f := range []struct {
		bit byte
		v   *uint32
	}{{expFlagFlags, &e.Flags}, {expFlagTimeout, &e.Timeout}, {expFlagClass, &e.Class}} {
		if flags&f.bit != 0 {
			*f.v = uint32(d.uvarint(math.MaxUint32, "expectation field"))
		}
	}
	for {
		tag, v, ok := d.option()
		if !ok {
			break
		}
		switch tag {
		case expOptHelper:
			e.Helper = string(v)
		case expOptFn:
			e.Fn = string(v)
		}
	}
}

func (d *decoder) expectDestroy(e *ct.Expect) {
	p := d.take(2, "flags")
	if p == nil {
		return
	}
	if p[0]&^destroyFlags != 0 {
		d.fail("flags", ErrMalformed)
		return
	}
	e.Tuple = d.tuple(p[1], p[0]&flagV6 != 0, "expected tuple")
	if p[0]&flagZone != 0 {
		e.Zone = uint16(d.uvarint(math.MaxUint16, "zone"))
	}
	if d.err == nil {
		d.skipOptions()
	}
}
