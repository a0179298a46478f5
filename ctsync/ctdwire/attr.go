package ctdwire

// Attributes: type-length-value, each padded to 4 bytes.

import (
	"encoding/binary"
	"fmt"
)

// Attribute types of a flow (NTA_*). 1.4.7 knows 0..32 and rejects a
// message with any other (msg2ct).
const (
	ntaIPv4         = 0  // src, dst: 4 bytes each, network order
	ntaIPv6         = 1  // src, dst: 16 bytes each
	ntaL4Proto      = 2  // u8
	ntaPort         = 3  // sport, dport: u16 each, network order
	ntaTCPState     = 4  // u8
	ntaStatus       = 5  // u32
	ntaTimeout      = 6  // u32 seconds
	ntaMark         = 7  // u32
	ntaMasterIPv4   = 8  // the master flow's addresses
	ntaMasterIPv6   = 9  //
	ntaMasterL4     = 10 // u8
	ntaMasterPort   = 11 // sport, dport
	ntaSNATIPv4     = 12 // the reply tuple's destination address
	ntaDNATIPv4     = 13 // the reply tuple's source address
	ntaSPATPort     = 14 // the reply tuple's destination port, swapped (see doc.go)
	ntaDPATPort     = 15 // the reply tuple's source port, swapped
	ntaNATSeqAdj    = 16 // 6 x u32: orig pos, before, after; reply pos, before, after
	ntaSCTPState    = 17 // u8
	ntaSCTPVTagOrig = 18 // u32
	ntaSCTPVTagRepl = 19 // u32
	ntaDCCPState    = 20 // u8
	ntaDCCPRole     = 21 // u8
	ntaICMPType     = 22 // u8
	ntaICMPCode     = 23 // u8
	ntaICMPID       = 24 // u16, swapped
	ntaWScaleOrig   = 25 // u8
	ntaWScaleRepl   = 26 // u8
	ntaHelper       = 27 // NUL-terminated string, at most 11 characters
	ntaLabels       = 28 // u32 words, network order, word i = labels 32i..32i+31
	ntaSNATIPv6     = 29 // 16 bytes
	ntaDNATIPv6     = 30 // 16 bytes
	ntaSynproxy     = 31 // its, isn, tsoff: u32 each
	ntaZone         = 32 // u16, only for a zone other than 0
	ntaMax          = 33
)

// Attribute types of an expectation (NTA_EXP_*).
const (
	ntaExpMasterIPv4 = 0
	ntaExpMasterIPv6 = 1
	ntaExpMasterL4   = 2
	ntaExpMasterPort = 3
	ntaExpIPv4       = 4
	ntaExpIPv6       = 5
	ntaExpL4         = 6
	ntaExpPort       = 7
	ntaExpMaskIPv4   = 8
	ntaExpMaskIPv6   = 9
	ntaExpMaskL4     = 10
	ntaExpMaskPort   = 11
	ntaExpTimeout    = 12
	ntaExpFlags      = 13
	ntaExpClass      = 14
	ntaExpNATIPv4    = 15
	ntaExpNATPort    = 16
	ntaExpNATL4      = 17
	ntaExpNATDir     = 18
	ntaExpHelper     = 19
	ntaExpFn         = 20
	ntaExpMax        = 21
)

// Limits conntrackd checks on the length of variable attributes (the
// attribute header of 4 bytes included).
const (
	helperMaxLen = 16       // NFCT_HELPER_NAME_MAX
	expFnMaxLen  = 32       //
	labelsMaxLen = 4 + 1024 // NTA_SIZE(4096/sizeof(uint32_t))
)

func align4(n int) int { return (n + 3) &^ 3 }

// appendAttr appends an attribute with its padding.
func appendAttr(b []byte, typ uint16, val ...byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(4+len(val)))
	b = binary.BigEndian.AppendUint16(b, typ)
	b = append(b, val...)
	for range align4(len(val)) - len(val) {
		b = append(b, 0)
	}
	return b
}

func appendU8(b []byte, typ uint16, v uint8) []byte { return appendAttr(b, typ, v) }

func appendU16(b []byte, typ uint16, v uint16) []byte {
	return appendAttr(b, typ, binary.BigEndian.AppendUint16(nil, v)...)
}

func appendU32(b []byte, typ uint16, v uint32) []byte {
	return appendAttr(b, typ, binary.BigEndian.AppendUint32(nil, v)...)
}

// attrs walks attributes. conntrackd ignores up to 4 trailing bytes.
type attrs struct {
	b   []byte
	err error
}

// next returns the next attribute; ok is false at the end or on error.
func (a *attrs) next() (typ uint16, val []byte, ok bool) {
	if len(a.b) <= 4 || a.err != nil {
		return 0, nil, false
	}
	n := int(binary.BigEndian.Uint16(a.b))
	typ = binary.BigEndian.Uint16(a.b[2:])
	if n < 4 || n > len(a.b) {
		a.err = fmt.Errorf("%w: type %d length %d of %d bytes", ErrAttr, typ, n, len(a.b))
		return 0, nil, false
	}
	val = a.b[4:n]
	if p := align4(n); p < len(a.b) {
		a.b = a.b[p:]
	} else {
		a.b = nil
	}
	return typ, val, true
}

// fixed checks the length of a fixed-size attribute.
func (a *attrs) fixed(typ uint16, val []byte, n int) bool {
	if len(val) != n {
		a.err = fmt.Errorf("%w: type %d has %d bytes, want %d", ErrAttr, typ, len(val), n)
		return false
	}
	return true
}
