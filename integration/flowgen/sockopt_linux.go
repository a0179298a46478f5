//go:build linux

package flowgen

import (
	"syscall"
	"time"
)

// tcpUserTimeout is TCP_USER_TIMEOUT from <linux/tcp.h>; package syscall
// does not define it.
const tcpUserTimeout = 0x12

// setUserTimeout sets TCP_USER_TIMEOUT: the kernel aborts the connection
// (ETIMEDOUT) when data stays unacknowledged for longer than d.
func setUserTimeout(rc syscall.RawConn, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	msec := int(d / time.Millisecond)
	if msec < 1 {
		msec = 1
	}
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout, msec)
	})
	if err != nil {
		return err
	}
	return serr
}
