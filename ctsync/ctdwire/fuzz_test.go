package ctdwire

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func addGoldenSeeds(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.hex"))
	for _, p := range files {
		f.Add(readHex(f, p))
	}
}

// FuzzDatagram parses arbitrary datagrams: parsing never panics, and
// whatever parses re-encodes to bytes that parse to the same messages,
// states and flows, and re-encode to themselves.
func FuzzDatagram(f *testing.F) {
	addGoldenSeeds(f)
	f.Add(AppendMsg(nil, &Msg{Type: TypeCtl, Flags: FlagNack, Seq: 9, From: 1, To: 8}))
	f.Add(AppendMsg(nil, &Msg{Type: TypeExpNew, Attrs: []byte{0, 12, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0, 5, 0, 2, 6, 0, 0, 0}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, _ := ParseDatagram(nil, b)
		var enc []byte
		for i := range msgs {
			m := msgs[i]
			switch {
			case m.Type.IsExpect():
				s, err := ParseExpectState(m.Attrs)
				if err != nil {
					continue
				}
				m.Attrs = AppendExpectState(nil, &s)
				s2, err := ParseExpectState(m.Attrs)
				if err != nil {
					t.Fatalf("re-encoded expectation does not parse: %v", err)
				}
				if diff := cmp.Diff(s, s2, addrCmp); diff != "" {
					t.Fatalf("expectation round trip (-first +second):\n%s", diff)
				}
				_, _, _ = s.Expect()
			case m.Type.IsState():
				s, err := ParseState(m.Attrs)
				if err != nil {
					continue
				}
				m.Attrs = AppendState(nil, &s)
				s2, err := ParseState(m.Attrs)
				if err != nil {
					t.Fatalf("re-encoded state does not parse: %v", err)
				}
				if diff := cmp.Diff(s, s2, addrCmp); diff != "" {
					t.Fatalf("state round trip (-first +second):\n%s", diff)
				}
				fl, _, err := s.Flow()
				if err == nil {
					// A flow maps to a state that maps back to it,
					// but for what StateOf reports dropped.
					s3, d := StateOf(&fl)
					fl2, _, err := s3.Flow()
					if err != nil {
						t.Fatalf("StateOf of %v: %v", &fl, err)
					}
					if d&DroppedReply == 0 && !fl.Equal(&fl2) {
						t.Fatalf("flow round trip:\n got %v\nwant %v", &fl2, &fl)
					}
				}
			}
			enc = AppendMsg(enc, &m)
		}
		again, err := ParseDatagram(nil, enc)
		if err != nil {
			t.Fatalf("re-encoded datagram: %v", err)
		}
		enc2 := []byte(nil)
		for i := range again {
			enc2 = AppendMsg(enc2, &again[i])
		}
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("re-encoding is not stable:\n%x\n%x", enc, enc2)
		}
	})
}

// FuzzEndpoint feeds arbitrary datagrams to an Endpoint: it never
// panics and keeps answering.
func FuzzEndpoint(f *testing.F) {
	addGoldenSeeds(f)
	f.Add(AppendMsg(nil, &Msg{Type: TypeCtl, Flags: FlagAck | FlagHello, Seq: 1 << 31, From: 0, To: 1 << 31}))
	f.Fuzz(func(t *testing.T, b []byte) {
		own := table{1: 1, 2: 2}
		e := New(Config{}, own)
		e.Queue(simKey(1))
		e.Queue(simKey(3))
		now := time.Unix(100, 0)
		e.Output(now, nil)
		for i := range 3 {
			now = now.Add(time.Duration(i) * 700 * time.Millisecond)
			ms, _ := e.Input(b, now, nil)
			for _, m := range ms {
				_, _, _ = m.Flow()
			}
			e.ResyncRequested()
			e.PeerRestarted()
			e.Output(now, nil)
			_ = e.NextTimeout(now)
		}
	})
}
