//go:build !linux

package flowgen

import (
	"syscall"
	"time"
)

// setUserTimeout is a no-op outside Linux: dead flows are then noticed only
// by the absence of echoes (see Client.AliveWindow).
func setUserTimeout(syscall.RawConn, time.Duration) error { return nil }
