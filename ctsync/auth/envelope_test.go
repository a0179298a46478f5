package auth

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var (
	testKey  = Key{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32}
	otherKey = Key{31: 1}
	testHdr  = Header{Version: Version, Sender: 0xa1b2c3d4, Epoch: 7, Seq: 1<<40 + 3}
)

func TestSealOpen(t *testing.T) {
	for _, tt := range []struct {
		name    string
		h       Header
		payload []byte
	}{
		{"empty payload", testHdr, nil},
		{"payload", testHdr, []byte("records")},
		{"max fields", Header{Version: Version, Sender: 1<<32 - 1, Epoch: 1<<32 - 1, Seq: 1<<64 - 1}, bytes.Repeat([]byte{0xff}, 1400)},
		{"zero header", Header{Version: Version}, []byte{0}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("prefix")
			b := Seal(bytes.Clone(prefix), &testKey, tt.h, tt.payload)
			if !bytes.HasPrefix(b, prefix) || len(b) != len(prefix)+Overhead+len(tt.payload) {
				t.Fatalf("Seal wrote %d bytes after its prefix, want %d", len(b)-len(prefix), Overhead+len(tt.payload))
			}
			h, p, err := Open(&testKey, b[len(prefix):])
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if diff := cmp.Diff(tt.h, h); diff != "" {
				t.Errorf("header (-want +got):\n%s", diff)
			}
			if !bytes.Equal(p, tt.payload) {
				t.Errorf("payload = %x, want %x", p, tt.payload)
			}
		})
	}
}

func TestSealDefaultVersion(t *testing.T) {
	b := Seal(nil, &testKey, Header{Epoch: 1, Seq: 1}, nil)
	if h, _, err := Open(&testKey, b); err != nil || h.Version != Version {
		t.Errorf("Open(Seal(Version 0)) = %+v, %v; want version %d", h, err, Version)
	}
}

// TestGoldenDatagram pins the envelope's layout and MAC (key derivation
// included).
func TestGoldenDatagram(t *testing.T) {
	got := Seal(nil, &testKey, testHdr, []byte("hi"))
	want := []byte{
		0x01,                   // version
		0xa1, 0xb2, 0xc3, 0xd4, // sender
		0, 0, 0, 7, // epoch
		0, 0, 1, 0, 0, 0, 0, 3, // seq
		'h', 'i',
	}
	// The tag, computed independently (Python hmac, hashlib: HKDF-SHA256
	// of the key with an empty salt, then HMAC-SHA256, first 16 bytes).
	want = append(want, 0x64, 0xd0, 0x9c, 0xbd, 0x87, 0x29, 0xdb, 0x91, 0x51, 0x27, 0x13, 0x09, 0xf1, 0x15, 0x66, 0x7a)
	if !bytes.Equal(got, want) {
		t.Errorf("datagram = %x\n      want %x", got, want)
	}
}

func TestOpenErrors(t *testing.T) {
	good := Seal(nil, &testKey, testHdr, []byte("payload"))
	v2 := Seal(nil, &testKey, Header{Version: 2, Epoch: 1}, []byte("payload"))
	for _, tt := range []struct {
		name string
		key  *Key
		in   []byte
		err  error
	}{
		{"wrong key", &otherKey, good, ErrMAC},
		{"empty", &testKey, nil, ErrShort},
		{"header only", &testKey, good[:HeaderSize], ErrShort},
		{"no tag", &testKey, good[:Overhead-1], ErrShort},
		{"version 2", &testKey, v2, ErrVersion},
		{"version 0", &testKey, append([]byte{0}, good[1:]...), ErrVersion},
		{"extra byte", &testKey, append(bytes.Clone(good), 0), ErrMAC},
		{"tag of another datagram", &testKey, append(bytes.Clone(good[:len(good)-TagSize]), v2[len(v2)-TagSize:]...), ErrMAC},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if h, p, err := Open(tt.key, tt.in); !errors.Is(err, tt.err) || p != nil || h != (Header{}) {
				t.Errorf("Open = %+v, %x, %v; want %v", h, p, err, tt.err)
			}
		})
	}
}

func TestOpenBitFlips(t *testing.T) {
	good := Seal(nil, &testKey, testHdr, []byte("some records"))
	for i := range len(good) * 8 {
		b := bytes.Clone(good)
		b[i/8] ^= 1 << (i % 8)
		if _, _, err := Open(&testKey, b); err == nil {
			t.Errorf("flipping bit %d of byte %d went unnoticed", i%8, i/8)
		}
	}
}

func TestOpenTruncated(t *testing.T) {
	good := Seal(nil, &testKey, testHdr, []byte("some records"))
	for n := range len(good) {
		if _, _, err := Open(&testKey, good[:n]); err == nil {
			t.Errorf("datagram cut to %d of %d bytes accepted", n, len(good))
		}
	}
}

func TestSealInPlace(t *testing.T) {
	payload := []byte("records built in place")
	buf := make([]byte, 0, 100)
	work := buf[:HeaderSize+len(payload)]
	copy(work[HeaderSize:], payload)
	b := Seal(buf, &testKey, testHdr, work[HeaderSize:])
	if &b[0] != &buf[:1][0] {
		t.Errorf("Seal reallocated")
	}
	if want := Seal(nil, &testKey, testHdr, payload); !bytes.Equal(b, want) {
		t.Errorf("sealed in place = %x, want %x", b, want)
	}
}

func TestKeysAreNotMixedUp(t *testing.T) {
	// The MAC state pool must not keep one key's state for another.
	for range 10 {
		a := Seal(nil, &testKey, testHdr, nil)
		b := Seal(nil, &otherKey, testHdr, nil)
		if bytes.Equal(a, b) {
			t.Fatal("two keys give the same tag")
		}
		if _, _, err := Open(&otherKey, a); !errors.Is(err, ErrMAC) {
			t.Fatalf("Open with the other key = %v", err)
		}
	}
}

func TestEnvelopeAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	payload := make([]byte, 1400)
	buf := make([]byte, 0, 1500)
	var sealed []byte
	if n := testing.AllocsPerRun(100, func() { sealed = Seal(buf[:0], &testKey, testHdr, payload) }); n != 0 {
		t.Errorf("Seal: %v allocs, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _, _ = Open(&testKey, sealed) }); n != 0 {
		t.Errorf("Open: %v allocs, want 0", n)
	}
	sealed[20] ^= 1
	if n := testing.AllocsPerRun(100, func() { _, _, _ = Open(&testKey, sealed) }); n != 0 {
		t.Errorf("Open of a forgery: %v allocs, want 0", n)
	}
}

func TestNewSenderID(t *testing.T) {
	if a, b := NewSenderID(), NewSenderID(); a == 0 || a == b {
		t.Errorf("NewSenderID = %#x, %#x", a, b)
	}
}

func FuzzOpen(f *testing.F) {
	f.Add(Seal(nil, &testKey, testHdr, []byte("records")), uint32(1), uint64(2))
	f.Add([]byte{}, uint32(0), uint64(0))
	f.Add([]byte{1, 2, 3}, uint32(1<<32-1), uint64(1<<64-1))
	f.Fuzz(func(t *testing.T, data []byte, epoch uint32, seq uint64) {
		// Anything: no panic, and the payload lies inside the input.
		if h, p, err := Open(&testKey, data); err == nil {
			if h.Version != Version || len(p) != len(data)-Overhead {
				t.Fatalf("Open(%x) = %+v, %x", data, h, p)
			}
		}
		// Open(Seal(x)) = x, and the other key refuses it.
		in := Header{Version: Version, Sender: epoch ^ 0x5a5a5a5a, Epoch: epoch, Seq: seq}
		b := Seal(nil, &testKey, in, data)
		h, p, err := Open(&testKey, b)
		if err != nil || h != in || !bytes.Equal(p, data) {
			t.Fatalf("Open(Seal(%+v, %x)) = %+v, %x, %v", in, data, h, p, err)
		}
		if _, _, err := Open(&otherKey, b); !errors.Is(err, ErrMAC) {
			t.Fatalf("Open with another key = %v", err)
		}
	})
}

func BenchmarkSeal(b *testing.B) {
	payload := make([]byte, 1400-Overhead)
	buf := make([]byte, 0, 1500)
	b.SetBytes(1400)
	b.ReportAllocs()
	for b.Loop() {
		buf = Seal(buf[:0], &testKey, testHdr, payload)
	}
}

func BenchmarkOpen(b *testing.B) {
	d := Seal(nil, &testKey, testHdr, make([]byte, 1400-Overhead))
	b.SetBytes(int64(len(d)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Open(&testKey, d); err != nil {
			b.Fatal(err)
		}
	}
}
