package kernel

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsgBatch receives up to len(hdrs) datagrams with one recvmmsg(2):
// the kernel sends every conntrack event as a datagram of its own, and a
// recvmsg each cost a system call per event (x/sys/unix has no wrapper for
// recvmmsg, and x/net's batch reads take only IP and UDP sockets).
type mmsgBatch struct {
	hdrs []mmsghdr
	iovs []unix.Iovec
	buf  []byte
	size int // bytes per datagram slot
}

// mmsghdr is struct mmsghdr: Go pads it as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

func newMmsgBatch(n, size int) *mmsgBatch {
	b := &mmsgBatch{hdrs: make([]mmsghdr, n), iovs: make([]unix.Iovec, n), buf: make([]byte, n*size), size: size}
	for i := range b.hdrs {
		b.iovs[i].Base = &b.buf[i*size]
		b.iovs[i].SetLen(size)
		b.hdrs[i].hdr.Iov = &b.iovs[i]
		b.hdrs[i].hdr.SetIovlen(1)
	}
	return b
}

// recv reads the datagrams queued on fd, without waiting, and returns how
// many it read (unix.EAGAIN if none).
func (b *mmsgBatch) recv(fd int) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.hdrs[0])),
		uintptr(len(b.hdrs)), unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// datagram returns the i-th datagram of the last recv, and whether the
// kernel truncated it.
func (b *mmsgBatch) datagram(i int) ([]byte, bool) {
	h := &b.hdrs[i]
	return b.buf[i*b.size : i*b.size+min(int(h.len), b.size)], h.hdr.Flags&unix.MSG_TRUNC != 0
}
