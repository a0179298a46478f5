package kernel

import (
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"

	"github.com/ctha/ctha/ctsync/ct"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/encode.golden")

// encodedGolden is every message the encoders build for the round trip
// cases and the test expectations, each op and option, one per line in
// hex (sequence and port id 0, no ACK requested: exchange sets those).
func encodedGolden(t *testing.T) string {
	t.Helper()
	var sb strings.Builder
	line := func(name string, m netlink.Message) {
		m.Header.Length = uint32((16 + len(m.Data) + 3) &^ 3)
		m.Header.Flags &^= netlink.Acknowledge
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		fmt.Fprintf(&sb, "%s %s\n", name, hex.EncodeToString(b))
	}
	for _, tc := range roundTripCases() {
		for _, op := range []Op{Create, Update, Delete} {
			for _, opts := range []WriteOptions{{}, {Liberal: true}} {
				msgs, err := flowMessages(nil, op, &tc.flow, opts)
				if err != nil {
					t.Fatalf("%s %v: %v", tc.name, op, err)
				}
				for i, m := range msgs {
					line(fmt.Sprintf("%q/%v/liberal=%v/%d", tc.name, op, opts.Liberal, i), m)
				}
			}
		}
	}
	for i, e := range testExpects() {
		for _, op := range []Op{Create, Delete} {
			m, err := encodeExpectMsg(op, &e)
			if err != nil {
				t.Fatalf("expect %d %v: %v", i, op, err)
			}
			line(fmt.Sprintf("expect/%d/%v", i, op), m)
		}
	}
	return sb.String()
}

// TestEncodeGolden: the encoders build exactly the bytes recorded in
// testdata/encode.golden (made with ti-mo/netfilter's attribute encoder).
func TestEncodeGolden(t *testing.T) {
	path := filepath.Join("testdata", "encode.golden")
	got := encodedGolden(t)
	if *updateGolden {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("encoded messages (-want +got):\n%s", diff)
	}
}

// messages splits the messages built in w.
func messages(t testing.TB, w *nlBuf) []netlink.Message {
	t.Helper()
	var out []netlink.Message
	for i := range w.len() {
		var m netlink.Message
		if err := m.UnmarshalBinary(w.message(i)); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		out = append(out, m)
	}
	return out
}

// encodeFlowMsg is encodeFlow's message alone.
func encodeFlowMsg(op Op, f *ct.Flow, opts WriteOptions) (netlink.Message, error) {
	var w nlBuf
	if err := encodeFlow(&w, op, f, opts); err != nil {
		return netlink.Message{}, err
	}
	return messages(testingT{}, &w)[0], nil
}

// flowMessages appends appendFlow's messages to msgs.
func flowMessages(msgs []netlink.Message, op Op, f *ct.Flow, opts WriteOptions) ([]netlink.Message, error) {
	var w nlBuf
	if err := appendFlow(&w, op, f, opts); err != nil {
		return msgs, err
	}
	return append(msgs, messages(testingT{}, &w)...), nil
}

// encodeExpectMsg is encodeExpect's message alone.
func encodeExpectMsg(op Op, e *ct.Expect) (netlink.Message, error) {
	var w nlBuf
	if err := encodeExpect(&w, op, e); err != nil {
		return netlink.Message{}, err
	}
	return messages(testingT{}, &w)[0], nil
}

// testingT makes a message that cannot be split a panic, in the helpers
// that have no testing.TB (it would be a bug of nlBuf).
type testingT struct{ testing.TB }

func (testingT) Helper() {}
func (testingT) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// TestEncodeAllocs: a write's flows are encoded without allocating once
// the batch's buffer has grown.
func TestEncodeAllocs(t *testing.T) {
	flows := roundTripCases()
	var w nlBuf
	encode := func() {
		w.reset()
		for i := range flows {
			if err := appendFlow(&w, Create, &flows[i].flow, WriteOptions{Liberal: true}); err != nil {
				t.Fatal(err)
			}
		}
	}
	encode()
	if n := testing.AllocsPerRun(100, encode); n != 0 {
		t.Errorf("encoding %d flows: %v allocations, want 0", len(flows), n)
	}
}
