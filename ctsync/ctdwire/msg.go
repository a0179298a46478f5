package ctdwire

// Messages and datagrams: the header every message starts with, the
// range of the control messages, and the walk over a datagram.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Version is the protocol version conntrackd 1.4 speaks (the high nibble
// of a message's first byte).
const Version = 1

// Sizes of the headers.
const (
	HeaderLen = 8  // version/type, flags, length, sequence number
	RangeLen  = 16 // the header and from, to (ACK, NACK, RESYNC)
)

// Errors of the codec.
var (
	ErrShort      = errors.New("ctdwire: message shorter than its header")
	ErrLength     = errors.New("ctdwire: message length out of bounds")
	ErrVersion    = errors.New("ctdwire: unknown protocol version")
	ErrAttr       = errors.New("ctdwire: malformed attribute")
	ErrIncomplete = errors.New("ctdwire: state message without addresses or protocol")
	ErrType       = errors.New("ctdwire: not a message of this kind")
)

// Type is a message's type (NET_T_*).
type Type uint8

// Message types.
const (
	TypeCTNew  Type = 0  // a new flow
	TypeCTUpd  Type = 1  // a flow changed
	TypeCTDel  Type = 2  // a flow ended
	TypeExpNew Type = 3  // a new expectation
	TypeExpUpd Type = 4  // an expectation changed
	TypeExpDel Type = 5  // an expectation ended
	TypeCtl    Type = 10 // control: ACK, NACK, RESYNC, ALIVE
)

func (t Type) String() string {
	switch t {
	case TypeCTNew:
		return "CT_NEW"
	case TypeCTUpd:
		return "CT_UPD"
	case TypeCTDel:
		return "CT_DEL"
	case TypeExpNew:
		return "EXP_NEW"
	case TypeExpUpd:
		return "EXP_UPD"
	case TypeExpDel:
		return "EXP_DEL"
	case TypeCtl:
		return "CTL"
	}
	return fmt.Sprintf("TYPE%d", uint8(t))
}

// IsState reports whether t carries a flow or an expectation.
func (t Type) IsState() bool { return t <= TypeExpDel }

// IsExpect reports whether t carries an expectation.
func (t Type) IsExpect() bool { return t >= TypeExpNew && t <= TypeExpDel }

// Flags are a message's flags (NET_F_*).
type Flags uint8

// Flags. Bit 0 is unused.
const (
	FlagResync    Flags = 1 << 1 // please send me your whole table
	FlagNack      Flags = 1 << 2 // please resend From..To
	FlagAck       Flags = 1 << 3 // From..To arrived
	FlagAlive     Flags = 1 << 4 // keep-alive
	FlagHello     Flags = 1 << 5 // I (re)started: take my sequence number as it is
	FlagHelloBack Flags = 1 << 6 // I saw your HELLO
)

func (f Flags) String() string {
	var s []string
	for _, n := range []struct {
		f    Flags
		name string
	}{{FlagResync, "RESYNC"}, {FlagNack, "NACK"}, {FlagAck, "ACK"}, {FlagAlive, "ALIVE"}, {FlagHello, "HELLO"}, {FlagHelloBack, "HELLO_BACK"}} {
		if f&n.f != 0 {
			s = append(s, n.name)
		}
	}
	if r := f &^ (FlagResync | FlagNack | FlagAck | FlagAlive | FlagHello | FlagHelloBack); r != 0 {
		s = append(s, fmt.Sprintf("%#x", uint8(r)))
	}
	if len(s) == 0 {
		return "0"
	}
	return strings.Join(s, "|")
}

// Msg is one message of a datagram.
type Msg struct {
	Type  Type
	Flags Flags
	Seq   uint32
	// From and To (inclusive) are the range of an ACK or a NACK; a RESYNC
	// carries zeros. Other messages have no range.
	From, To uint32
	// Attrs are a state message's attributes, each padded to 4 bytes
	// (the State and ExpectState codecs). Parse points it into the
	// datagram.
	Attrs []byte
}

// HasRange reports whether m carries From and To: a control message with
// ACK, NACK or RESYNC set.
func (m *Msg) HasRange() bool {
	return m.Type == TypeCtl && m.Flags&(FlagAck|FlagNack|FlagResync) != 0
}

// IsData reports whether m is a state message as conntrackd accepts one:
// a state type whose flags are at most HELLO and HELLO_BACK.
func (m *Msg) IsData() bool {
	return m.Type.IsState() && m.Flags&^(FlagHello|FlagHelloBack) == 0
}

func (m *Msg) String() string {
	s := fmt.Sprintf("%v seq %d flags %v", m.Type, m.Seq, m.Flags)
	if m.HasRange() {
		s += fmt.Sprintf(" from %d to %d", m.From, m.To)
	}
	if m.Type.IsState() {
		s += fmt.Sprintf(" attrs %d bytes", len(m.Attrs))
	}
	return s
}

// Len returns the length m has on the wire.
func (m *Msg) Len() int {
	switch {
	case m.HasRange():
		return RangeLen
	case m.Type.IsState():
		return HeaderLen + len(m.Attrs)
	}
	return HeaderLen
}

// AppendMsg appends m to b. A control message's Attrs are not written.
func AppendMsg(b []byte, m *Msg) []byte {
	b = append(b, Version<<4|byte(m.Type&0xf), byte(m.Flags))
	b = binary.BigEndian.AppendUint16(b, uint16(m.Len()))
	b = binary.BigEndian.AppendUint32(b, m.Seq)
	switch {
	case m.HasRange():
		b = binary.BigEndian.AppendUint32(b, m.From)
		b = binary.BigEndian.AppendUint32(b, m.To)
	case m.Type.IsState():
		b = append(b, m.Attrs...)
	}
	return b
}

// ParseMsg reads the message at the start of b and returns it and its
// length. Attrs points into b.
func ParseMsg(b []byte) (Msg, int, error) {
	if len(b) < HeaderLen {
		return Msg{}, 0, ErrShort
	}
	m := Msg{Type: Type(b[0] & 0xf), Flags: Flags(b[1]), Seq: binary.BigEndian.Uint32(b[4:])}
	n := int(binary.BigEndian.Uint16(b[2:]))
	if n < HeaderLen || n > len(b) || (m.HasRange() && n < RangeLen) {
		return m, 0, fmt.Errorf("%w: %d of %d bytes", ErrLength, n, len(b))
	}
	if v := b[0] >> 4; v != Version {
		return m, n, fmt.Errorf("%w %d", ErrVersion, v)
	}
	switch {
	case m.HasRange():
		m.From = binary.BigEndian.Uint32(b[8:])
		m.To = binary.BigEndian.Uint32(b[12:])
	case m.Type.IsState():
		m.Attrs = b[HeaderLen:n:n]
	}
	return m, n, nil
}

// ParseDatagram appends the messages of a datagram to dst. conntrackd
// packs as many as fit one after the other (up to the link's MTU). It
// stops at the first message whose length is wrong and returns the error
// with the messages before it; a message of another version is skipped
// and its error returned at the end, as conntrackd does.
func ParseDatagram(dst []Msg, b []byte) ([]Msg, error) {
	var skipped error
	for len(b) > 0 {
		m, n, err := ParseMsg(b)
		if n == 0 {
			return dst, err
		}
		b = b[n:]
		if err != nil {
			skipped = err
			continue
		}
		dst = append(dst, m)
	}
	return dst, skipped
}
