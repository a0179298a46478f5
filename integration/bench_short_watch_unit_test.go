package integration

import (
	"encoding/binary"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// cmsg builds one control message as the kernel lays it out.
func cmsg(level, typ int32, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

func TestKernelTimestamp(t *testing.T) {
	ts := make([]byte, 16)
	binary.NativeEndian.PutUint64(ts[0:8], 1_700_000_000)
	binary.NativeEndian.PutUint64(ts[8:16], 123_456_789)
	want := time.Unix(1_700_000_000, 123_456_789)
	tests := []struct {
		name string
		oob  []byte
		want time.Time
		ok   bool
	}{
		{"timestamp", cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, ts), want, true},
		{"after another message", append(cmsg(unix.SOL_PACKET, unix.PACKET_AUXDATA, make([]byte, 20)), cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, ts)...), want, true},
		{"none", nil, time.Time{}, false},
		{"other type", cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMP, ts), time.Time{}, false},
		{"short", cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, ts[:8]), time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := kernelTimestamp(tt.oob)
			if ok != tt.ok || !got.Equal(tt.want) {
				t.Errorf("kernelTimestamp = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}
