package proto

import (
	"testing"
	"time"
)

// FuzzInput feeds arbitrary payloads to an Endpoint: it must never panic,
// and a payload it rejects is counted.
func FuzzInput(f *testing.F) {
	f.Add(appendMsg(nil, typeAck, u64(7)))
	f.Add(appendMsg(appendMsg(nil, typeData, append(u64(2), 1, 0, 0, 0, 1)), typeKeepalive, append([]byte{2, 0}, append(u64(3), u64(1)...)...)))
	f.Add(appendMsg(nil, typeNack, append(u64(1), u64(1<<40)...)))
	f.Add(appendMsg(nil, typeJump, u64(1<<62)))
	f.Fuzz(func(t *testing.T, payload []byte) {
		e := New(Config{}, table{})
		now := time.Unix(1, 0)
		before := e.Stats().Malformed
		if _, err := e.Input(1, payload, now, nil); err != nil && e.Stats().Malformed != before+1 {
			t.Fatalf("a rejected payload was not counted")
		}
		e.Output(now, nil)
		e.Output(now.Add(time.Second), nil)
		_ = e.NextTimeout(now)
	})
}
