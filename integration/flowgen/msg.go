package flowgen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// MsgSize is the size in bytes of every message a client sends and the
// server echoes.
const MsgSize = 32

// magic opens every message, so a client notices when it talks to
// something else than a flowgen server.
var magic = [4]byte{'F', 'G', 'E', '1'}

// message is the content of one probe: which flow sent it, its sequence
// number on that flow (0 is the setup handshake, then 1, 2, ...) and when
// it was sent (Unix nanoseconds, the client's clock).
type message struct {
	flow uint32
	seq  uint64
	sent int64
}

// Layout: magic [0:4], flow [4:8], seq [8:16], sent [16:24], zero [24:32].
func (m message) encode(b []byte) {
	_ = b[MsgSize-1]
	copy(b[0:4], magic[:])
	binary.BigEndian.PutUint32(b[4:8], m.flow)
	binary.BigEndian.PutUint64(b[8:16], m.seq)
	binary.BigEndian.PutUint64(b[16:24], uint64(m.sent))
	clear(b[24:MsgSize])
}

var errBadMagic = errors.New("echo is not a flowgen message (bad magic)")

func decode(b []byte) (message, error) {
	if len(b) < MsgSize {
		return message{}, fmt.Errorf("short message: %d bytes", len(b))
	}
	if [4]byte(b[0:4]) != magic {
		return message{}, errBadMagic
	}
	return message{
		flow: binary.BigEndian.Uint32(b[4:8]),
		seq:  binary.BigEndian.Uint64(b[8:16]),
		sent: int64(binary.BigEndian.Uint64(b[16:24])),
	}, nil
}

// ms converts a duration to milliseconds, rounded to the microsecond.
func ms(d time.Duration) float64 {
	return float64(d.Round(time.Microsecond)) / float64(time.Millisecond)
}
