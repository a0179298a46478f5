package auth

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// ErrEpochFile is the error, wrapped with the path, for an epoch file
// that exists but does not hold exactly one epoch: it is never silently
// reset, since a lower epoch would reopen replays (sender side) or be
// refused by the peer (receiver side).
var ErrEpochFile = errors.New("corrupt epoch file")

// ErrEpochExhausted: the epoch file holds the largest epoch.
var ErrEpochExhausted = errors.New("epoch counter exhausted")

const maxEpochFile = 4096

// NextEpoch returns this node's new boot epoch, one more than the one
// stored in the file at path (1 when there is no file) or, if that is
// larger, the clock's Unix seconds at now, and stores it. The clock is the
// floor for a node whose state directory was lost (reinstalled, wiped):
// its epoch restarting at 1 would be refused by a peer that remembers a
// higher one, until that peer's state directory were wiped too. The
// daemon calls it once at start; the file (e.g. /var/lib/ctha/epoch) is
// replaced atomically and durably (a temporary file written, synced and
// renamed over it, mode 0600) before the epoch is returned, so an epoch is
// never used twice, even across a crash. Only one process may use a file
// at a time.
func NextEpoch(path string, now time.Time) (uint32, error) {
	e, err := readEpoch(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		e = 0
	case err != nil:
		return 0, err
	case e == math.MaxUint32:
		return 0, fmt.Errorf("epoch file %s: %w", path, ErrEpochExhausted)
	}
	e++
	if u := now.Unix(); u > int64(e) && u < math.MaxUint32 {
		e = uint32(u)
	}
	if err := writeEpoch(path, e, "ctha sync epoch: this node's restart counter; never lower it"); err != nil {
		return 0, err
	}
	return e, nil
}

// LoadPeerEpoch returns the peer's epoch stored at path by SavePeerEpoch,
// or 0 when there is no file: what NewReplayGuard takes.
func LoadPeerEpoch(path string) (uint32, error) {
	e, err := readEpoch(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	return e, err
}

// SavePeerEpoch stores the peer's epoch (ReplayGuard.Epoch) at path, as
// NextEpoch stores its own: the daemon calls it when the epoch changes,
// so that after a restart it still rejects the peer's older epochs.
func SavePeerEpoch(path string, epoch uint32) error {
	return writeEpoch(path, epoch, "ctha sync: the highest epoch accepted from the peer; never lower it")
}

// readEpoch reads an epoch file: '#' comment lines, blank lines, and one
// line with the epoch in decimal.
func readEpoch(path string) (uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("read epoch: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxEpochFile+1))
	if err != nil {
		return 0, fmt.Errorf("read epoch %s: %w", path, err)
	}
	if len(data) > maxEpochFile {
		return 0, fmt.Errorf("epoch file %s: too large: %w", path, ErrEpochFile)
	}
	line, err := meaningfulLine(data)
	switch {
	case errors.Is(err, errNoLine):
		return 0, fmt.Errorf("epoch file %s: no epoch: %w", path, ErrEpochFile)
	case errors.Is(err, errSeveralLines):
		return 0, fmt.Errorf("epoch file %s: more than one epoch: %w", path, ErrEpochFile)
	case err != nil:
		return 0, fmt.Errorf("epoch file %s: %v: %w", path, err, ErrEpochFile)
	}
	epoch, err := strconv.ParseUint(line, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("epoch file %s: %q: %w", path, line, ErrEpochFile)
	}
	return uint32(epoch), nil
}

// writeEpoch replaces the file at path, atomically and durably, with one
// holding epoch, mode 0600.
func writeEpoch(path string, epoch uint32, comment string) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*") // mode 0600
	if err != nil {
		return fmt.Errorf("write epoch: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			err = fmt.Errorf("write epoch %s: %w", path, err)
		}
	}()
	if _, err := fmt.Fprintf(f, "# %s\n%d\n", comment, epoch); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync() // make the rename durable
}
