package auth

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseKey(t *testing.T) {
	good := strings.Repeat("ab", KeySize)
	tests := []struct {
		name string
		in   string
		err  error
	}{
		{name: "bare", in: good},
		{name: "comments and blanks", in: "# c\n\n  " + good + "  \n# trailer\n"},
		{name: "empty", in: "", err: ErrNoKey},
		{name: "only comments", in: "# a\n# b\n", err: ErrNoKey},
		{name: "short", in: good[:62], err: ErrKeyMalformed},
		{name: "long", in: good + "00", err: ErrKeyMalformed},
		{name: "not hex", in: strings.Repeat("zz", KeySize), err: ErrKeyMalformed},
		{name: "two keys", in: good + "\n" + good, err: ErrSeveralKeys},
		{name: "zero", in: strings.Repeat("00", KeySize), err: ErrKeyWeak},
		{name: "huge line", in: strings.Repeat("a", 1<<17), err: ErrKeyMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseKey([]byte(tt.in))
			if !errors.Is(err, tt.err) {
				t.Fatalf("ParseKey error = %v, want %v", err, tt.err)
			}
			if err == nil && k[0] != 0xab {
				t.Fatalf("key starts with %#x, want 0xab", k[0])
			}
		})
	}
}

func TestMarshalParseRoundTrip(t *testing.T) {
	k, err := GenerateKey(bytes.NewReader(bytes.Repeat([]byte{7}, KeySize)))
	if err != nil {
		t.Fatal(err)
	}
	text, err := k.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseKey(text)
	if err != nil {
		t.Fatalf("ParseKey(MarshalText()) = %v", err)
	}
	if got != k {
		t.Fatalf("round trip changed the key")
	}
	if strings.Contains(k.String(), "0707") {
		t.Fatalf("String() leaks key material: %s", k)
	}
}

func TestWriteKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sync.key")
	k, err := WriteKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", st.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	if got, err := ParseKey(data); err != nil || got != k {
		t.Errorf("written file does not parse back to the key: %v", err)
	}
	if _, err := WriteKeyFile(path); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second WriteKeyFile = %v, want an fs.ErrExist error", err)
	}
	if again, _ := os.ReadFile(path); !bytes.Equal(again, data) {
		t.Errorf("existing key file was overwritten")
	}
}
