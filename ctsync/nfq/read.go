package nfq

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// read is the reader goroutine: it reads the socket until it is closed,
// hands packets to Packets, answers to the requests waiting for them,
// and counts the rest.
func (q *Queue) read(copyRange uint32) {
	defer q.wg.Done()
	defer close(q.out)
	defer q.failPending()
	// A packet message is its headers, a few attributes, the conntrack
	// entry (a few hundred bytes) and the copied payload.
	buf := make([]byte, int(copyRange)+8192)
	for {
		n, err := q.recv(buf)
		switch {
		case err == nil:
		case errors.Is(err, unix.ENOBUFS):
			// Messages were lost; the kernel accepted their packets
			// (fail-open). The socket stays usable.
			q.stats.overruns.Add(1)
			continue
		case errors.Is(err, unix.EINTR):
			continue
		case q.closing.Load():
			return // Close, or a failed Open
		default:
			err = fmt.Errorf("nfqueue %d: receive: %w", q.num, err)
			q.readErr.Store(&err)
			return
		}
		if n > len(buf) { // MSG_TRUNC: the datagram was larger
			q.stats.malformed.Add(1)
			continue
		}
		q.datagram(buf[:n])
	}
}

// recv reads one datagram into buf; with MSG_TRUNC, n is the datagram's
// real length even when it did not fit.
func (q *Queue) recv(buf []byte) (n int, err error) {
	var rerr error
	err = q.rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT|unix.MSG_TRUNC)
		return rerr != unix.EAGAIN
	})
	if err != nil {
		return 0, err
	}
	return n, rerr
}

// datagram handles the netlink messages of one datagram.
func (q *Queue) datagram(d []byte) {
	if err := forEachMessage(d, q.message); err != nil {
		q.stats.malformed.Add(1)
	}
}

// message handles one netlink message.
func (q *Queue) message(typ uint16, body []byte) {
	switch typ {
	case nlmsgError:
		errno, seq, err := parseError(body)
		switch {
		case err != nil:
			q.stats.malformed.Add(1)
		case q.answer(seq, errno):
		case errno != 0:
			// An answer to a verdict, which asked for none: only errors come.
			q.stats.verdictErrors.Add(1)
			q.stats.lastErrno.Store(uint32(errno))
		}
	case nlmsgDone:
	case subsysQueue<<8 | msgPacket:
		q.packet(body)
	default:
		q.stats.malformed.Add(1)
	}
}

// packet decodes a packet message and hands it to Packets, or accepts it
// if it cannot be decoded or Packets is full.
func (q *Queue) packet(body []byte) {
	q.stats.received.Add(1)
	var p Packet
	if err := p.decode(body); err != nil {
		q.stats.malformed.Add(1)
		if p.ID != 0 {
			q.seen(p.ID)
			_ = q.Verdict(p.ID, Accept)
		}
		return
	}
	q.seen(p.ID)
	// The buffer is reused: keep copies.
	own := make([]byte, len(p.Payload)+len(p.CTAttrs))
	n := copy(own, p.Payload)
	copy(own[n:], p.CTAttrs)
	if p.Payload != nil {
		p.Payload = own[:n:n]
	}
	if p.CTAttrs != nil {
		p.CTAttrs = own[n:]
	}
	select {
	case q.out <- p:
	default:
		q.stats.overflow.Add(1)
		_ = q.Verdict(p.ID, Accept)
	}
}

func (q *Queue) seen(id uint32) { q.lastID.Store(id) }

// failPending ends the requests still waiting: no answer will come.
func (q *Queue) failPending() {
	q.pending.mu.Lock()
	defer q.pending.mu.Unlock()
	q.pending.done = true
	for seq, ch := range q.pending.m {
		ch <- ErrClosed
		delete(q.pending.m, seq)
	}
}
