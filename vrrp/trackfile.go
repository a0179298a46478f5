package vrrp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Tracker names of keepalived's extras.
func fileTracker(path string) string { return "file:" + path }

// faultStatus is keepalived's status of a track_file that means FAULT.
const faultStatus = -254

// contribution is what one tracker adds to its member's priority, and
// whether it puts the member in FAULT, with keepalived's semantics.
func (t *tracked) contribution() (adj int, fault bool) {
	mult := 1
	if t.reverse {
		mult = -1
	}
	if t.file {
		// track_file: with weight 0, a non-zero value is a failure (a
		// zero one with reverse); otherwise value x weight, clamped to
		// [-254, 253], -254 meaning FAULT.
		if t.weight == 0 {
			return 0, (t.value != 0) != t.reverse
		}
		s := min(max(t.value*t.weight*mult, faultStatus), 253)
		if s == faultStatus {
			return 0, true
		}
		return s, false
	}
	// Links, scripts and processes: weight 0 is FAULT while down (while up
	// with reverse); a positive weight counts while up, a negative one
	// while down, negated with reverse.
	switch {
	case t.weight == 0:
		return 0, t.up == t.reverse
	case (t.weight > 0) == t.up:
		return t.weight * mult, false
	}
	return 0, false
}

// maxTrackFileRead is how much of a track file is read, as keepalived.
const maxTrackFileRead = 127

// readTrackFile reads a track file's value as keepalived does: the
// number at its start as C's strtol with base 0 reads it (leading white
// space, a sign, 0x for hex, 0 for octal; what follows is ignored), 0 for
// a missing or empty file or one that does not start with a number. ok
// is false for a number outside the range of a C int: keepalived then
// keeps the previous value.
func readTrackFile(path string) (value int, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, true
	}
	defer f.Close()
	buf := make([]byte, maxTrackFileRead)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return 0, true
	}
	return parseStrtol(buf[:n])
}

// parseStrtol parses b as strtol(b, NULL, 0) and reports whether the
// value fits a 32-bit int.
func parseStrtol(b []byte) (int, bool) {
	i := 0
	for i < len(b) && (b[i] == ' ' || (b[i] >= '\t' && b[i] <= '\r')) {
		i++
	}
	neg := false
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		neg = b[i] == '-'
		i++
	}
	base := 10
	switch {
	case i+2 < len(b) && b[i] == '0' && (b[i+1] == 'x' || b[i+1] == 'X') && digitVal(b[i+2]) < 16:
		base, i = 16, i+2
	case i < len(b) && b[i] == '0':
		base = 8
	}
	var v int64
	for ; i < len(b); i++ {
		d := digitVal(b[i])
		if d >= base {
			break
		}
		v = v*int64(base) + int64(d)
		if v > math.MaxInt32+1 {
			return 0, false
		}
	}
	if neg {
		v = -v
	}
	if v > math.MaxInt32 || v < math.MinInt32 {
		return 0, false
	}
	return int(v), true
}

func digitVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return 99
}

// trackFiles returns the distinct files the instances track.
func trackFiles(ins []Instance) []string {
	var out []string
	for _, in := range ins {
		for _, t := range in.TrackFiles {
			out = appendUnique(out, t.Path)
		}
	}
	return out
}

// trackFileMaxBackoff bounds the wait between attempts to watch a
// directory that does not exist (yet, or any more).
const trackFileMaxBackoff = 2 * time.Second

// watchMask: keepalived's events on the directory's entries, and the
// directory itself deleted or moved (the watch then ends: IN_IGNORED).
const watchMask = unix.IN_CLOSE_WRITE | unix.IN_DELETE | unix.IN_MOVE | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF

// watchTrackFile reports the file's value at each change until ctx is
// done: inotify on its directory (a write closed, a rename, a deletion:
// keepalived's events), as keepalived does. A deleted file counts as 0.
// When the kernel's event queue overflowed, the file is read again.
// While the directory does not exist (at start, or deleted or moved
// away), the file counts as 0 and the watch is tried again, waiting
// longer each time up to trackFileMaxBackoff; onErr hears the first
// failure of each such run.
func watchTrackFile(ctx context.Context, path string, report func(int), onErr func(error)) error {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return fmt.Errorf("inotify: %w", err)
	}
	f := os.NewFile(uintptr(fd), "inotify")
	defer f.Close()
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer stop()
	dir, base := filepath.Split(path)
	last, reported := 0, false
	update := func() {
		if v, ok := readTrackFile(path); ok && (!reported || v != last) {
			last, reported = v, true
			report(v)
		}
	}
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	var backoff time.Duration
	for {
		wd, err := unix.InotifyAddWatch(fd, dir, watchMask)
		update() // a change before the watch began is not missed
		if err != nil {
			if backoff == 0 && onErr != nil {
				onErr(fmt.Errorf("watch %s: %w", dir, err))
			}
			backoff = min(max(2*backoff, 50*time.Millisecond), trackFileMaxBackoff)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		for ended := false; !ended; {
			n, err := f.Read(buf)
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				return fmt.Errorf("read inotify: %w", err)
			}
			ev := scanEvents(buf[:n], base, int32(wd))
			if ev.file || ev.overflow || ev.ended {
				update()
			}
			if ended = ev.ended; ended {
				// A directory moved away keeps its watch: drop it.
				_, _ = unix.InotifyRmWatch(fd, uint32(wd))
			}
		}
	}
}

// inotifyEvents sums up a read of inotify events.
type inotifyEvents struct {
	file     bool // one is about the tracked file
	overflow bool // the kernel's queue overflowed: events were lost
	ended    bool // the watch ended (its directory deleted or moved away)
}

// scanEvents reads the inotify events in b for the file named base and
// the watch wd.
func scanEvents(b []byte, base string, wd int32) inotifyEvents {
	var ev inotifyEvents
	for len(b) >= unix.SizeofInotifyEvent {
		// struct inotify_event: wd, mask, cookie, len, then the name.
		w, mask := int32(binary.NativeEndian.Uint32(b[0:4])), binary.NativeEndian.Uint32(b[4:8])
		end := unix.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(b[12:16]))
		if end > len(b) {
			ev.overflow = true // cannot happen; read the file to be sure
			return ev
		}
		ev.overflow = ev.overflow || mask&unix.IN_Q_OVERFLOW != 0
		ev.ended = ev.ended || w == wd && mask&(unix.IN_IGNORED|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0
		name := b[unix.SizeofInotifyEvent:end]
		for len(name) > 0 && name[len(name)-1] == 0 {
			name = name[:len(name)-1]
		}
		ev.file = ev.file || string(name) == base && len(name) > 0
		b = b[end:]
	}
	return ev
}

// startFileTrackers watches every tracked file until ctx is done.
func (r *Runner) startFileTrackers(ctx context.Context) {
	for _, path := range trackFiles(r.conf.Instances) {
		r.wg.Go(func() {
			err := watchTrackFile(ctx, path, func(v int) {
				r.broadcast(ctx, trackUpdate{name: fileTracker(path), up: true, value: v})
			}, func(err error) {
				r.log.Warn("cannot watch a track file's directory; the file counts as 0, retrying", "tracker", path, "err", err)
			})
			if err != nil {
				r.log.Error("cannot watch a track file; it keeps its last value", "tracker", path, "err", err)
			}
		})
	}
}
