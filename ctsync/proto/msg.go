package proto

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Message types.
const (
	typeData      = 0x01
	typeBulkStart = 0x02
	typeBulkEnd   = 0x03
	typeAlarmData = 0x04
	typeAck       = 0x10
	typeNack      = 0x11
	typeKeepalive = 0x12
	typeBulkReq   = 0x13
	typeJump      = 0x14
)

// Errors of ParsePayload.
var (
	ErrTruncated = errors.New("truncated message")
	ErrMalformed = errors.New("malformed message")
)

// msg is one decoded message.
type msg struct {
	typ      byte
	seq      uint64 // DATA, BULK_*, ACK, JUMP; NACK: from; KEEPALIVE: next
	to       uint64 // NACK; KEEPALIVE: oldest resendable
	bulkID   uint32
	epoch    uint32 // BULK_*: the requester's epoch echoed; BULK_REQ: the requester's
	echoed   bool   // epoch is present (a peer of an older version sends none)
	entries  uint32 // BULK_START: objects the copy holds; 0: unknown
	role     Role
	flags    byte
	body     []byte // DATA: the records
	reliable bool
}

// appendMsg appends a message of type typ with the given body.
func appendMsg(b []byte, typ byte, body []byte) []byte {
	b = append(b, typ)
	b = binary.AppendUvarint(b, uint64(len(body)))
	return append(b, body...)
}

// appendHeader starts a message whose body length is patched later by
// finishMsg: the length is written as a fixed 2-byte uvarint-compatible
// prefix so the body can be appended in place.
func appendHeader(b []byte, typ byte) ([]byte, int) {
	b = append(b, typ, 0x80, 0x00) // placeholder: 2-byte uvarint
	return b, len(b)
}

// finishMsg writes the body length of a message begun at start.
func finishMsg(b []byte, start int) []byte {
	n := len(b) - start
	// A 2-byte uvarint holds up to 16383: payloads are at most a datagram.
	b[start-2] = byte(n)&0x7f | 0x80
	b[start-1] = byte(n >> 7)
	return b
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// parsePayload decodes every message of a payload; unknown types are
// skipped.
func parsePayload(b []byte, fn func(msg) error) error {
	for len(b) > 0 {
		typ := b[0]
		n, k := binary.Uvarint(b[1:])
		if k <= 0 {
			return fmt.Errorf("length of message type %#x: %w", typ, ErrTruncated)
		}
		b = b[1+k:]
		if n > uint64(len(b)) {
			return fmt.Errorf("message type %#x of %d bytes in %d: %w", typ, n, len(b), ErrTruncated)
		}
		body := b[:n]
		b = b[n:]
		m := msg{typ: typ}
		need := func(l int) error {
			if len(body) < l {
				return fmt.Errorf("message type %#x: body of %d bytes, want %d: %w", typ, len(body), l, ErrMalformed)
			}
			return nil
		}
		switch typ {
		case typeData:
			if err := need(8); err != nil {
				return err
			}
			m.seq, m.body, m.reliable = binary.BigEndian.Uint64(body), body[8:], true
		case typeBulkStart, typeBulkEnd:
			if err := need(12); err != nil {
				return err
			}
			m.seq, m.bulkID, m.reliable = binary.BigEndian.Uint64(body), binary.BigEndian.Uint32(body[8:]), true
			if len(body) >= 16 {
				m.epoch, m.echoed = binary.BigEndian.Uint32(body[12:]), true
			}
			if typ == typeBulkStart && len(body) >= 20 {
				m.entries = binary.BigEndian.Uint32(body[16:])
			}
		case typeAlarmData:
			m.body = body
		case typeAck, typeJump:
			if err := need(8); err != nil {
				return err
			}
			m.seq = binary.BigEndian.Uint64(body)
		case typeNack:
			if err := need(16); err != nil {
				return err
			}
			m.seq, m.to = binary.BigEndian.Uint64(body), binary.BigEndian.Uint64(body[8:])
			if m.to < m.seq {
				return fmt.Errorf("NACK %d-%d: %w", m.seq, m.to, ErrMalformed)
			}
		case typeKeepalive:
			if err := need(18); err != nil {
				return err
			}
			m.role, m.flags = Role(body[0]), body[1]
			m.seq, m.to = binary.BigEndian.Uint64(body[2:]), binary.BigEndian.Uint64(body[10:])
			if m.to > m.seq {
				return fmt.Errorf("KEEPALIVE first %d after next %d: %w", m.to, m.seq, ErrMalformed)
			}
		case typeBulkReq:
			if len(body) >= 4 {
				m.epoch, m.echoed = binary.BigEndian.Uint32(body), true
			}
		default:
			continue // a newer peer's message: skip it
		}
		if m.reliable && m.seq == 0 {
			return fmt.Errorf("message type %#x with sequence 0: %w", typ, ErrMalformed)
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	return nil
}
