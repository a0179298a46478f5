package kernel

import (
	"encoding/binary"
	"errors"
	"math"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
)

// nlBuf builds ctnetlink requests, one after the other, in one buffer
// ready for a sendmsg: a write of many flows encodes them with no
// allocation (ti-mo's attribute encoder cost about 60 allocations and
// 5 us per flow, a fifth of the receiving node's CPU). Attribute values
// are in network byte order, as netfilter wants them; headers in host
// order. The sequence number, port id and ACK flag of each message are
// set by exchange.
type nlBuf struct {
	b      []byte
	starts []int // where each message begins in b
	err    error // of the message begun last: an attribute too large
}

// maxAttrData is the most an attribute can hold.
const maxAttrData = math.MaxUint16 - nlaHeaderLen

var errAttrTooLarge = errors.New("attribute too large for netlink")

// Sizes of the headers: nlmsghdr, nfgenmsg, nlattr.
const (
	nlmsgHeaderLen = 16
	nfgenHeaderLen = 4
	nlaHeaderLen   = 4
)

// reset empties the buffer, keeping its memory.
func (w *nlBuf) reset() { w.b, w.starts = w.b[:0], w.starts[:0] }

// len returns the number of messages.
func (w *nlBuf) len() int { return len(w.starts) }

// begin starts a message with h's type, flags and family.
func (w *nlBuf) begin(h netfilter.Header) {
	w.err = nil
	w.starts = append(w.starts, len(w.b))
	var hdr [nlmsgHeaderLen + nfgenHeaderLen]byte
	binary.NativeEndian.PutUint16(hdr[4:], uint16(h.SubsystemID)<<8|uint16(h.MessageType))
	binary.NativeEndian.PutUint16(hdr[6:], uint16(h.Flags))
	hdr[16], hdr[17] = uint8(h.Family), h.Version
	binary.BigEndian.PutUint16(hdr[18:], h.ResourceID)
	w.b = append(w.b, hdr[:]...)
}

// end completes the message begun last (its length), or drops it if
// an attribute could not be encoded, and returns that error.
func (w *nlBuf) end() error {
	if w.err != nil {
		w.drop()
		return w.err
	}
	start := w.starts[len(w.starts)-1]
	binary.NativeEndian.PutUint32(w.b[start:], uint32(len(w.b)-start))
	return nil
}

// drop removes the message begun last.
func (w *nlBuf) drop() {
	w.b = w.b[:w.starts[len(w.starts)-1]]
	w.starts = w.starts[:len(w.starts)-1]
}

// message returns message i.
func (w *nlBuf) message(i int) []byte {
	end := len(w.b)
	if i+1 < len(w.starts) {
		end = w.starts[i+1]
	}
	return w.b[w.starts[i]:end]
}

// setHeader sets message i's sequence number and port id, and whether
// it asks for an ACK.
func (w *nlBuf) setHeader(i int, seq, pid uint32, ack bool) {
	m := w.b[w.starts[i]:]
	flags := netlink.HeaderFlags(binary.NativeEndian.Uint16(m[6:])) &^ netlink.Acknowledge
	if ack {
		flags |= netlink.Acknowledge
	}
	binary.NativeEndian.PutUint16(m[6:], uint16(flags))
	binary.NativeEndian.PutUint32(m[8:], seq)
	binary.NativeEndian.PutUint32(m[12:], pid)
}

// attr appends an attribute's header and value, padded to 4 bytes.
func (w *nlBuf) attr(typ uint16, v ...byte) {
	var h [nlaHeaderLen]byte
	binary.NativeEndian.PutUint16(h[:], uint16(nlaHeaderLen+len(v)))
	binary.NativeEndian.PutUint16(h[2:], typ)
	w.b = append(append(w.b, h[:]...), v...)
	w.pad()
}

func (w *nlBuf) pad() {
	for len(w.b)%4 != 0 {
		w.b = append(w.b, 0)
	}
}

// Uint8 appends an attribute of one byte.
func (w *nlBuf) Uint8(typ uint16, v uint8) { w.attr(typ, v) }

// Uint16 appends a 16-bit attribute.
func (w *nlBuf) Uint16(typ uint16, v uint16) { w.attr(typ, byte(v>>8), byte(v)) }

// Uint32 appends a 32-bit attribute.
func (w *nlBuf) Uint32(typ uint16, v uint32) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	w.attr(typ, b[:]...)
}

// Uint64 appends a 64-bit attribute.
func (w *nlBuf) Uint64(typ uint16, v uint64) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	w.attr(typ, b[:]...)
}

// Bytes appends an attribute of b.
func (w *nlBuf) Bytes(typ uint16, b []byte) {
	if len(b) > maxAttrData {
		w.err = errAttrTooLarge
		return
	}
	w.attr(typ, b...)
}

// String appends s as a NUL-terminated string attribute.
func (w *nlBuf) String(typ uint16, s string) {
	if len(s)+1 > maxAttrData {
		w.err = errAttrTooLarge
		return
	}
	var h [nlaHeaderLen]byte
	binary.NativeEndian.PutUint16(h[:], uint16(nlaHeaderLen+len(s)+1))
	binary.NativeEndian.PutUint16(h[2:], typ)
	w.b = append(append(append(w.b, h[:]...), s...), 0)
	w.pad()
}

// Nested appends an attribute holding the attributes fn appends.
func (w *nlBuf) Nested(typ uint16, fn func(*nlBuf)) {
	start := len(w.b)
	w.b = append(w.b, 0, 0, 0, 0)
	fn(w)
	binary.NativeEndian.PutUint16(w.b[start:], uint16(len(w.b)-start))
	binary.NativeEndian.PutUint16(w.b[start+2:], typ|netlink.Nested)
}
