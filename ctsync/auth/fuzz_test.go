package auth

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// maxFuzzFile bounds the files fuzzed: the fuzzer spends its time
// minimizing the large ones it finds interesting.
const maxFuzzFile = 8 << 10

// FuzzParseKey: any key file gives a key or one of ParseKey's errors;
// comment and blank lines before it change nothing; a key written by
// MarshalText reads back the same.
func FuzzParseKey(f *testing.F) {
	good := strings.Repeat("ab", KeySize)
	for _, s := range []string{
		good,
		"# c\n\n  " + good + "  \r\n# trailer\n",
		"", "# only\n", good[:62], good + "\n" + good, strings.Repeat("00", KeySize),
		"\t" + strings.ToUpper(good) + "\v", "#" + good + "\n" + good[2:] + "zz",
	} {
		f.Add([]byte(s))
	}
	text, _ := testKey.MarshalText()
	f.Add(text)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzFile {
			return // lines too long for the scanner: TestParseKey
		}
		k, err := ParseKey(data)
		k2, err2 := ParseKey(append([]byte("# a comment\n\n \t\n"), data...))
		if k2 != k || !errors.Is(err2, err) {
			t.Fatalf("a comment before the file changed the result: %v, %v; then %v, %v", k, err, k2, err2)
		}
		if err != nil {
			if k != (Key{}) {
				t.Fatalf("error %v with key %x", err, k[:])
			}
			for _, want := range []error{ErrNoKey, ErrSeveralKeys, ErrKeyMalformed, ErrKeyWeak} {
				if errors.Is(err, want) {
					return
				}
			}
			t.Fatalf("ParseKey error %v is none of its sentinels", err)
		}
		if k == (Key{}) {
			t.Fatalf("accepted the zero key")
		}
		text, err := k.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		if k3, err := ParseKey(text); err != nil || k3 != k {
			t.Fatalf("MarshalText %q reads back as %x, %v; want %x", text, k3[:], err, k[:])
		}
	})
}

// FuzzEpochFile: any epoch file (the node's own, or the peer's) is read
// as one epoch or refused with ErrEpochFile, never reset; NextEpoch then
// stores the next epoch, which reads back.
func FuzzEpochFile(f *testing.F) {
	for _, s := range []string{
		"# ctha sync epoch: this node's restart counter; never lower it\n7\n",
		"", "# nothing\n", "seven\n", "-1\n", "1\n2\n", "4294967295\n", "4294967296\n",
		"  42  \r\n\n# x\n", "0x10\n", "+5\n", "007\n", strings.Repeat("#", maxEpochFile) + "\n1\n",
	} {
		f.Add([]byte(s), uint32(0))
	}
	f.Add([]byte("5\n"), uint32(1_800_000_000))
	f.Add([]byte("4294967294\n"), uint32(math.MaxUint32))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte, clock uint32) {
		if len(data) > maxFuzzFile {
			return
		}
		path := filepath.Join(dir, "epoch")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		e, err := LoadPeerEpoch(path)
		if err != nil {
			if !errors.Is(err, ErrEpochFile) {
				t.Fatalf("LoadPeerEpoch(%q) = %v, want ErrEpochFile", data, err)
			}
			if _, err := NextEpoch(path, time.Unix(int64(clock), 0)); !errors.Is(err, ErrEpochFile) {
				t.Fatalf("NextEpoch over a corrupt file: %v, want ErrEpochFile", err)
			}
			return
		}
		n, err := NextEpoch(path, time.Unix(int64(clock), 0))
		if e == math.MaxUint32 {
			if !errors.Is(err, ErrEpochExhausted) {
				t.Fatalf("NextEpoch after the largest epoch: %d, %v", n, err)
			}
			return
		}
		want := e + 1
		if clock > want && clock < math.MaxUint32 {
			want = clock
		}
		if err != nil || n != want {
			t.Fatalf("NextEpoch after %d at clock %d = %d, %v; want %d", e, clock, n, err, want)
		}
		if got, err := LoadPeerEpoch(path); err != nil || got != n {
			t.Fatalf("stored %d, reads back %d, %v", n, got, err)
		}
	})
}
