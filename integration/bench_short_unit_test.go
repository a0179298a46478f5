package integration

import (
	"encoding/binary"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ctha/ctha/integration/flowgen"
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

func TestGapAcross(t *testing.T) {
	kill := time.Unix(1000, 0)
	at := func(ms int) time.Time { return kill.Add(time.Duration(ms) * time.Millisecond) }
	gap := func(from, to int) flowgen.Gap {
		return flowgen.Gap{Start: at(from), End: at(to), Ms: float64(to - from)}
	}
	r := flowgen.Report{PerFlow: []flowgen.FlowReport{
		{Gaps: []flowgen.Gap{gap(-5000, -3000), gap(-20, 90)}}, // before the kill: not counted
		{Gaps: []flowgen.Gap{gap(-10, 110), gap(2000, 2070)}},  // the longest across it
		{Gaps: []flowgen.Gap{gap(-40, 60)}, GapsDropped: 3},    // too many gaps listed
		{},
	}}
	longest, began, dropped := gapAcross(r, kill)
	if longest != 120*time.Millisecond || began != -10*time.Millisecond || dropped != 1 {
		t.Errorf("gapAcross = %v, %v, %d; want 120ms, -10ms, 1", longest, began, dropped)
	}
	if l, b, d := gapAcross(flowgen.Report{}, kill); l != 0 || b != 0 || d != 0 {
		t.Errorf("gapAcross(no flows) = %v, %v, %d", l, b, d)
	}
}
