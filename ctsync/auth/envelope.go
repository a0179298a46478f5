package auth

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"hash"
	"sync"
)

// Version is the protocol version Seal writes and Open accepts. It
// versions the whole datagram: this envelope and the payload inside.
const Version = 1

// Sizes of the envelope around a payload.
const (
	HeaderSize = 17                   // version u8, sender u32, epoch u32, seq u64
	TagSize    = 16                   // HMAC-SHA256 truncated to 128 bits
	Overhead   = HeaderSize + TagSize // bytes Seal adds to a payload
)

// Errors of Open and ReplayGuard.Check. They are returned unwrapped, so
// that rejecting a flood of forged datagrams allocates nothing.
var (
	ErrShort     = errors.New("datagram too short")
	ErrVersion   = errors.New("unsupported protocol version")
	ErrMAC       = errors.New("datagram authentication failed")
	ErrReplay    = errors.New("replayed or too old datagram")
	ErrReflected = errors.New("datagram sent by this node (reflected)")
)

// Header of every datagram, in clear but authenticated.
type Header struct {
	// Version is the protocol version; Seal writes Version when it is 0.
	Version uint8
	// Sender identifies the sending process (NewSenderID): the two nodes
	// have different ones, so a node recognizes its own datagrams sent
	// back to it (ReplayGuard.SetSelf).
	Sender uint32
	// Epoch is the sender's boot epoch (NextEpoch): strictly increasing
	// across the sender's restarts.
	Epoch uint32
	// Seq counts the sender's datagrams within its epoch, strictly
	// increasing.
	Seq uint64
}

// NewSenderID returns a random non-zero sender ID for this process.
func NewSenderID() uint32 {
	var b [4]byte
	for {
		rand.Read(b[:])
		if id := binary.BigEndian.Uint32(b[:]); id != 0 {
			return id
		}
	}
}

// Seal appends to dst the datagram carrying payload: h, the payload and
// a tag, HMAC-SHA256 of both under a key derived from k, truncated to
// TagSize bytes. It allocates nothing when dst has room for
// len(payload)+Overhead more bytes. To seal in place, put the payload at
// dst[len(dst)+HeaderSize:] of the same array.
func Seal(dst []byte, k *Key, h Header, payload []byte) []byte {
	if h.Version == 0 {
		h.Version = Version
	}
	start := len(dst)
	dst = append(dst, h.Version)
	dst = binary.BigEndian.AppendUint32(dst, h.Sender)
	dst = binary.BigEndian.AppendUint32(dst, h.Epoch)
	dst = binary.BigEndian.AppendUint64(dst, h.Seq)
	dst = append(dst, payload...)
	var tag [TagSize]byte
	mac(k, dst[start:], &tag)
	return append(dst, tag[:]...)
}

// Open verifies the datagram b and returns its header and payload (a
// sub-slice of b). It fails with ErrShort, ErrVersion or ErrMAC (wrong
// key, forged or corrupted), whatever b holds, and allocates nothing.
// Open does not check for replays: that is ReplayGuard's job.
//
// The version is checked before the tag, so ErrVersion does not tell that
// the datagram came from the peer.
func Open(k *Key, b []byte) (Header, []byte, error) {
	if len(b) == 0 {
		return Header{}, nil, ErrShort
	}
	if b[0] != Version {
		return Header{}, nil, ErrVersion
	}
	if len(b) < Overhead {
		return Header{}, nil, ErrShort
	}
	msg, got := b[:len(b)-TagSize], b[len(b)-TagSize:]
	var want [TagSize]byte
	mac(k, msg, &want)
	if !hmac.Equal(want[:], got) {
		return Header{}, nil, ErrMAC
	}
	h := Header{
		Version: b[0],
		Sender:  binary.BigEndian.Uint32(b[1:]),
		Epoch:   binary.BigEndian.Uint32(b[5:]),
		Seq:     binary.BigEndian.Uint64(b[9:]),
	}
	return h, msg[HeaderSize:], nil
}

// macInfo labels the derivation of the datagram MAC key from the sync key:
// the sync key itself is never used directly, so other uses of it (a later
// protocol version, encryption) get independent keys.
const macInfo = "ctha sync v1 datagram hmac-sha256"

// A macer holds an HMAC state keyed for one sync key; the pool keeps them
// so that Seal and Open need not derive the key and build an HMAC (which
// allocates) for every datagram.
type macer struct {
	key Key // the sync key h was derived from
	h   hash.Hash
	sum [sha256.Size]byte
}

var macers = sync.Pool{New: func() any { return new(macer) }}

// mac computes the truncated HMAC of msg under k into tag.
func mac(k *Key, msg []byte, tag *[TagSize]byte) {
	m := macers.Get().(*macer)
	if m.h == nil || subtle.ConstantTimeCompare(m.key[:], k[:]) != 1 {
		mk, err := hkdf.Key(sha256.New, k[:], nil, macInfo, sha256.Size)
		if err != nil {
			panic("auth: derive MAC key: " + err.Error()) // only for an invalid length
		}
		m.key, m.h = *k, hmac.New(sha256.New, mk)
	} else {
		m.h.Reset()
	}
	m.h.Write(msg)
	copy(tag[:], m.h.Sum(m.sum[:0]))
	macers.Put(m)
}
