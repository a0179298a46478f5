package auth

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// KeySize is the length of a sync key in bytes.
const KeySize = 32

// Key is a shared sync key.
type Key [KeySize]byte

// Errors returned by ParseKey.
var (
	ErrNoKey        = errors.New("no key line found")
	ErrSeveralKeys  = errors.New("more than one key line")
	ErrKeyMalformed = fmt.Errorf("key line must be %d hexadecimal digits", 2*KeySize)
	ErrKeyWeak      = errors.New("key is all zeros")
)

// GenerateKey returns a new random key read from r (crypto/rand.Reader when nil).
func GenerateKey(r io.Reader) (Key, error) {
	if r == nil {
		r = rand.Reader
	}
	var k Key
	if _, err := io.ReadFull(r, k[:]); err != nil {
		return Key{}, fmt.Errorf("generate key: %w", err)
	}
	return k, nil
}

// ParseKey reads a key in the key file format described in the package
// documentation.
func ParseKey(data []byte) (Key, error) {
	line, err := meaningfulLine(data)
	switch {
	case errors.Is(err, errNoLine):
		return Key{}, ErrNoKey
	case errors.Is(err, errSeveralLines):
		return Key{}, ErrSeveralKeys
	case err != nil:
		return Key{}, ErrKeyMalformed
	}
	var k Key
	if len(line) != 2*KeySize {
		return Key{}, ErrKeyMalformed
	}
	if _, err := hex.Decode(k[:], []byte(line)); err != nil {
		return Key{}, ErrKeyMalformed
	}
	if k == (Key{}) {
		return Key{}, ErrKeyWeak
	}
	return k, nil
}

// The key and epoch files share one text format: blank lines and lines
// starting with '#' are ignored, and exactly one other line holds the
// value.
var (
	errNoLine       = errors.New("no value line")
	errSeveralLines = errors.New("more than one value line")
)

// meaningfulLine returns the one value line of data, trimmed.
func meaningfulLine(data []byte) (string, error) {
	var (
		value string
		found bool
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if found {
			return "", errSeveralLines
		}
		value, found = line, true
	}
	if err := sc.Err(); err != nil {
		return "", err // only bufio.ErrTooLong from a bytes.Reader
	}
	if !found {
		return "", errNoLine
	}
	return value, nil
}

// MarshalText returns the key file content for k, comment included.
func (k Key) MarshalText() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# ctha sync key (HMAC-SHA256); identical on every node of the pair; keep it mode 0600\n")
	b.WriteString(hex.EncodeToString(k[:]))
	b.WriteByte('\n')
	return b.Bytes(), nil
}

// Fingerprint identifies k without revealing it: the first 8 bytes of its
// SHA-256, in hex. Two nodes show the same fingerprint when they share a key.
func (k Key) Fingerprint() string {
	sum := sha256.Sum256(k[:])
	return hex.EncodeToString(sum[:8])
}

// String hides the key material; it returns the fingerprint.
func (k Key) String() string { return "key:" + k.Fingerprint() }

// WriteKeyFile writes a new random key to path with mode 0600. It never
// overwrites: an existing file is an error.
func WriteKeyFile(path string) (Key, error) {
	k, err := GenerateKey(nil)
	if err != nil {
		return Key{}, err
	}
	text, _ := k.MarshalText()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return Key{}, fmt.Errorf("write key: %w", err)
	}
	if _, err := f.Write(text); err != nil {
		f.Close()
		os.Remove(path)
		return Key{}, fmt.Errorf("write key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return Key{}, fmt.Errorf("write key %s: %w", path, err)
	}
	return k, nil
}
