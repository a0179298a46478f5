package auth

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNextEpoch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "epoch")
	for want := uint32(1); want <= 3; want++ { // each call is a restart
		got, err := NextEpoch(path, time.Time{})
		if err != nil || got != want {
			t.Fatalf("NextEpoch = %d, %v; want %d", got, err, want)
		}
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", st.Mode().Perm())
	}
	if e, err := LoadPeerEpoch(path); err != nil || e != 3 {
		t.Errorf("the file holds %d, %v; want 3", e, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func TestNextEpochClockFloor(t *testing.T) {
	path := filepath.Join(t.TempDir(), "epoch")
	now := time.Unix(1_800_000_000, 0)
	// A lost state directory: the epoch starts from the clock, above any
	// counter a peer could remember from the node's earlier life.
	if e, err := NextEpoch(path, now); err != nil || e != 1_800_000_000 {
		t.Fatalf("NextEpoch without a file = %d, %v; want the clock's 1800000000", e, err)
	}
	// A clock set back: the stored counter still grows.
	if e, err := NextEpoch(path, now.Add(-time.Hour)); err != nil || e != 1_800_000_001 {
		t.Fatalf("NextEpoch with the clock set back = %d, %v; want 1800000001", e, err)
	}
}

func TestNextEpochRefusesCorruptFile(t *testing.T) {
	for _, tt := range []struct {
		name, content string
		err           error
	}{
		{"empty", "", ErrEpochFile},
		{"only a comment", "# nothing\n", ErrEpochFile},
		{"not a number", "seven\n", ErrEpochFile},
		{"negative", "-1\n", ErrEpochFile},
		{"too big", "4294967296\n", ErrEpochFile},
		{"two numbers", "1\n2\n", ErrEpochFile},
		{"garbage", "\x00\x01\x02", ErrEpochFile},
		{"huge", strings.Repeat("#", 5000) + "\n1\n", ErrEpochFile},
		{"exhausted", "4294967295\n", ErrEpochExhausted},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "epoch")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if e, err := NextEpoch(path, time.Time{}); !errors.Is(err, tt.err) {
				t.Errorf("NextEpoch = %d, %v; want %v", e, err, tt.err)
			}
			if data, _ := os.ReadFile(path); string(data) != tt.content {
				t.Errorf("the corrupt file was rewritten: %q", data)
			}
		})
	}
}

func TestNextEpochReadsCommentedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "epoch")
	if err := os.WriteFile(path, []byte("# hand-edited\n\n  41  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if e, err := NextEpoch(path, time.Time{}); err != nil || e != 42 {
		t.Errorf("NextEpoch = %d, %v; want 42", e, err)
	}
}

func TestNextEpochMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "epoch")
	if _, err := NextEpoch(path, time.Time{}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("NextEpoch in a missing directory = %v, want fs.ErrNotExist", err)
	}
}

func TestPeerEpoch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "peer-epoch")
	if e, err := LoadPeerEpoch(path); err != nil || e != 0 {
		t.Fatalf("LoadPeerEpoch of no file = %d, %v; want 0", e, err)
	}
	// A run accepts the peer's epoch 9 and saves it; the next run restores
	// it and still rejects epoch 8.
	g := NewReplayGuard(0)
	g.Accept(hdr(9, 1))
	if err := SavePeerEpoch(path, g.Epoch()); err != nil {
		t.Fatal(err)
	}
	e, err := LoadPeerEpoch(path)
	if err != nil || e != 9 {
		t.Fatalf("LoadPeerEpoch = %d, %v; want 9", e, err)
	}
	if err := NewReplayGuard(e).Check(hdr(8, 1<<30)); !errors.Is(err, ErrReplay) {
		t.Errorf("after a restart, an older epoch: %v, want ErrReplay", err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("peer epoch file: %v, %v; want mode 0600", st.Mode(), err)
	}
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPeerEpoch(path); !errors.Is(err, ErrEpochFile) {
		t.Errorf("LoadPeerEpoch of a corrupt file = %v, want ErrEpochFile", err)
	}
}
