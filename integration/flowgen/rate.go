package flowgen

import (
	"net/netip"
	"time"
)

// RateClient opens short TCP connections at a fixed rate (open loop: a
// slow answer does not slow the next attempt) and times each handshake:
// the new-flow load of a firewall, and what each new flow waits in it.
// Each connection is closed with a reset (SO_LINGER 0) once established,
// so that neither end keeps a TIME_WAIT socket.
type RateClient struct {
	// Addr is the server, "host:port". Required.
	Addr string
	// Sources are the local addresses connections are made from, in turn
	// (more addresses, more tuples: each has its ephemeral ports); none:
	// the kernel's choice.
	Sources []netip.Addr
	// Rate is the new connections per second. Required.
	Rate int
	// Duration is how long connections are opened. Required.
	Duration time.Duration
	// Timeout bounds each handshake (default 3 s): longer is a failure.
	Timeout time.Duration
	// Inflight bounds the handshakes under way (default 16384); an
	// attempt due while it is reached is counted in Skipped, not made.
	Inflight int

	// UDPRate, if set, is a background load of new flows besides the
	// timed handshakes: UDP datagrams at this rate to the server's
	// address, each to the next port of UDPPorts (each datagram a new
	// flow, until the ports come round again), from each source in turn.
	// A flow's state is what costs a firewall; nothing needs to answer.
	UDPRate  int
	UDPPorts [2]uint16
}

// Defaults of RateClient.
const (
	DefaultRateTimeout  = 3 * time.Second
	DefaultRateInflight = 16384
)

// RateReport is what a RateClient measured.
type RateReport struct {
	Target     string  `json:"target"`
	Rate       int     `json:"rate"`
	DurationMs float64 `json:"duration_ms"`
	// Attempted connections were dialled; Connected completed their
	// handshake in time; Failed did not (an error or the timeout);
	// Skipped were due while Inflight handshakes were under way.
	Attempted int `json:"attempted"`
	Connected int `json:"connected"`
	Failed    int `json:"failed"`
	Skipped   int `json:"skipped"`
	// AchievedPerSec is Connected over the run's duration.
	AchievedPerSec float64 `json:"achieved_per_sec"`
	// HandshakeUs: order statistics of the connected flows' handshake
	// times (connect(2) called to established), in microseconds.
	HandshakeUs GapStats `json:"handshake_us"`
	// Slow counts handshakes of SlowConnect or longer (a retransmission).
	Slow int `json:"slow"`
	// FirstError is the first failure's error, if any.
	FirstError string `json:"first_error,omitempty"`
	// UDPSent counts the background load's datagrams (new flows) sent;
	// UDPErrors those refused by the kernel.
	UDPSent   int `json:"udp_sent"`
	UDPErrors int `json:"udp_errors"`
}
