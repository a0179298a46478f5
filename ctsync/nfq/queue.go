package nfq

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Defaults of Options.
const (
	// DefaultCopyRange copies IPv6, its extension headers and TCP with
	// options: the headers are all ctha reads.
	DefaultCopyRange = 128
	// DefaultMaxLen is the kernel's queue length. Beyond it the kernel
	// accepts packets without queueing them (fail-open).
	DefaultMaxLen = 8192
	// DefaultBacklog is the capacity of the Packets channel.
	DefaultBacklog = 4096
	// DefaultReadBuffer is the socket's receive buffer.
	DefaultReadBuffer = 8 << 20
)

// requestTimeout bounds the wait for the kernel's answer to a
// configuration request.
const requestTimeout = 5 * time.Second

// Options tune Open. The zero value is usable.
type Options struct {
	// CopyRange is how many bytes of each packet are copied to user space
	// (DefaultCopyRange if 0; at most MaxCopyRange).
	CopyRange uint32
	// MaxLen is the most packets the kernel holds for the queue
	// (DefaultMaxLen if 0). When it is full the kernel accepts new packets
	// unqueued (NFQA_CFG_F_FAIL_OPEN).
	MaxLen uint32
	// Conntrack asks for each packet's conntrack entry (NFQA_CT, with
	// NFQA_CFG_F_CONNTRACK). Where the kernel lacks the glue
	// (CONFIG_NETFILTER_NETLINK_GLUE_CT) the queue is bound without it, and
	// Glue reports false.
	Conntrack bool
	// Backlog is the capacity of the Packets channel (DefaultBacklog if 0).
	// A packet that finds the channel full is accepted at once and counted
	// in Stats.Overflow.
	Backlog int
	// ReadBuffer is the socket's receive buffer in bytes (DefaultReadBuffer
	// if 0), forced past net.core.rmem_max with CAP_NET_ADMIN.
	ReadBuffer int
}

// Stats are a queue's counters since Open.
type Stats struct {
	// Received counts the packet messages read.
	Received uint64
	// Overflow counts packets accepted because the Packets channel was full.
	Overflow uint64
	// Overruns counts ENOBUFS from the socket: packet messages that did not
	// fit its receive buffer. With fail-open the kernel accepted those
	// packets; ctha never saw them.
	Overruns uint64
	// Malformed counts messages that could not be decoded. A packet whose
	// id could be read is accepted.
	Malformed uint64
	// VerdictErrors counts the kernel's error answers to verdicts (ENOENT:
	// no such packet held, e.g. given a verdict twice).
	VerdictErrors uint64
	// LastErrno is the errno of the last such answer.
	LastErrno syscall.Errno
}

// Errors of Open and the verdicts.
var (
	// ErrQueueTaken is wrapped by Open's error when another socket (another
	// process, or another Queue) is bound to the queue number.
	ErrQueueTaken = errors.New("nfqueue already bound by another socket")
	// ErrClosed is returned by the methods of a closed Queue.
	ErrClosed = errors.New("nfqueue closed")
)

// Queue is a bound NFQUEUE: packets the kernel queues to its number arrive
// on Packets; each needs a verdict (Verdict, Verdicts, VerdictBatch) or
// the kernel holds it until the queue is closed.
type Queue struct {
	num  uint16
	glue bool
	nl   *netlink.Conn
	rc   syscall.RawConn
	out  chan Packet

	seq      atomic.Uint32
	lastID   atomic.Uint32 // the id of the last packet read
	closing  atomic.Bool
	readErr  atomic.Pointer[error] // why the reader stopped, if not Close
	closeErr error
	once     sync.Once
	wg       sync.WaitGroup // the reader

	stats statsCounters

	pending pendingRequests
}

// statsCounters are Stats, updated by the reader and read by Stats.
type statsCounters struct {
	received, overflow, overruns, malformed, verdictErrors atomic.Uint64
	lastErrno                                              atomic.Uint32
}

// pendingRequests are configuration requests waiting for their answer,
// by sequence number.
type pendingRequests struct {
	mu   sync.Mutex
	m    map[uint32]chan error
	done bool // the reader has stopped: no answer will come
}

// Open binds queue num in the calling thread's network namespace: copy
// mode packet with opts.CopyRange bytes, fail-open, GSO packets
// unsegmented, and the conntrack glue if opts.Conntrack and the kernel has
// it. A queue bound by another socket is an error wrapping ErrQueueTaken
// (the kernel answers EPERM).
func Open(num uint16, opts Options) (*Queue, error) {
	if opts.CopyRange == 0 {
		opts.CopyRange = DefaultCopyRange
	}
	opts.CopyRange = min(opts.CopyRange, MaxCopyRange)
	if opts.MaxLen == 0 {
		opts.MaxLen = DefaultMaxLen
	}
	if opts.Backlog <= 0 {
		opts.Backlog = DefaultBacklog
	}
	if opts.ReadBuffer <= 0 {
		opts.ReadBuffer = DefaultReadBuffer
	}
	nl, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, fmt.Errorf("open nfqueue %d: %w", num, err)
	}
	q := &Queue{num: num, nl: nl, out: make(chan Packet, opts.Backlog)}
	q.pending.m = make(map[uint32]chan error)
	if err := q.setup(opts); err != nil {
		nl.Close()
		return nil, fmt.Errorf("open nfqueue %d: %w", num, err)
	}
	q.wg.Add(1)
	go q.read(opts.CopyRange)
	if err := q.bind(opts); err != nil {
		q.stop()
		return nil, fmt.Errorf("open nfqueue %d: %w", num, err)
	}
	return q, nil
}

func (q *Queue) setup(opts Options) error {
	rc, err := q.nl.SyscallConn()
	if err != nil {
		return err
	}
	q.rc = rc
	if err := setReadBuffer(rc, q.nl, opts.ReadBuffer); err != nil {
		return err
	}
	// Error answers carry only the request's header, not the request.
	_ = q.nl.SetOption(netlink.CapAcknowledge, true)
	return nil
}

// setReadBuffer sets a socket's receive buffer: with SO_RCVBUFFORCE when
// the process has CAP_NET_ADMIN, else with SO_RCVBUF (capped by the kernel
// at net.core.rmem_max).
func setReadBuffer(rc syscall.RawConn, nl *netlink.Conn, n int) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
	}); err == nil && serr == nil {
		return nil
	}
	if err := nl.SetReadBuffer(n); err != nil {
		return fmt.Errorf("set receive buffer to %d bytes: %w", n, err)
	}
	return nil
}

// bind binds the queue, with the conntrack glue if asked for and
// available: the kernel checks the flags before it binds, so a refused
// flag binds nothing.
func (q *Queue) bind(opts Options) error {
	c := config{cmd: cmdBind, copyMode: copyPacket, copyRange: opts.CopyRange, maxLen: &opts.MaxLen,
		mask: flagFailOpen | flagGSO | flagConntrack, flags: flagFailOpen | flagGSO}
	if opts.Conntrack {
		c.flags |= flagConntrack
		err := q.request(c)
		if err == nil {
			q.glue = true
			return nil
		}
		if !errors.Is(err, unix.EOPNOTSUPP) {
			return q.bindError(err)
		}
		c.flags &^= flagConntrack
	}
	if err := q.request(c); err != nil {
		return q.bindError(err)
	}
	return nil
}

func (q *Queue) bindError(err error) error {
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("bind: queue %d: %w (%w)", q.num, ErrQueueTaken, err)
	}
	return fmt.Errorf("bind: %w", err)
}

// Num returns the queue number.
func (q *Queue) Num() uint16 { return q.num }

// Glue reports whether packets carry their conntrack entry (Packet.CT):
// the queue was opened with Options.Conntrack and the kernel has
// CONFIG_NETFILTER_NETLINK_GLUE_CT.
func (q *Queue) Glue() bool { return q.glue }

// Packets returns the channel of queued packets. It is closed when the
// queue is closed, or when reading fails (Err).
func (q *Queue) Packets() <-chan Packet { return q.out }

// Err returns why Packets was closed if not by Close: the socket failed.
// The kernel then holds new packets until the queue is closed, so the
// caller should Close and Open again.
func (q *Queue) Err() error {
	if p := q.readErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Stats returns the counters.
func (q *Queue) Stats() Stats {
	return Stats{
		Received:      q.stats.received.Load(),
		Overflow:      q.stats.overflow.Load(),
		Overruns:      q.stats.overruns.Load(),
		Malformed:     q.stats.malformed.Load(),
		VerdictErrors: q.stats.verdictErrors.Load(),
		LastErrno:     syscall.Errno(q.stats.lastErrno.Load()),
	}
}

// Verdict gives packet id its verdict. The kernel answers only if it
// fails (counted in Stats.VerdictErrors).
func (q *Queue) Verdict(id uint32, v Verdict) error {
	var buf [64]byte
	return q.send(appendVerdict(buf[:0], q.num, id, v, false, 0, 0), "verdict")
}

// Verdicts gives the same verdict to several packets in one send.
func (q *Queue) Verdicts(ids []uint32, v Verdict) error {
	if len(ids) == 0 {
		return nil
	}
	const msgLen = nlmsgHeaderLen + nfgenHeaderLen + nlaHeaderLen + 8
	b := make([]byte, 0, len(ids)*msgLen)
	for _, id := range ids {
		b = appendVerdict(b, q.num, id, v, false, 0, 0)
	}
	return q.send(b, "verdicts")
}

// VerdictBatch gives verdict v to every packet held with an id up to
// maxID (NFQNL_MSG_VERDICT_BATCH; ids compare modulo 2^32).
func (q *Queue) VerdictBatch(maxID uint32, v Verdict) error {
	var buf [64]byte
	return q.send(appendVerdict(buf[:0], q.num, maxID, v, true, 0, 0), "batch verdict")
}

// send writes one datagram of requests to the kernel.
func (q *Queue) send(b []byte, op string) error {
	var serr error
	err := q.rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return serr != unix.EAGAIN
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		if q.closing.Load() || errors.Is(err, os.ErrClosed) {
			return fmt.Errorf("nfqueue %d: %s: %w", q.num, op, ErrClosed)
		}
		return fmt.Errorf("nfqueue %d: %s: %w", q.num, op, err)
	}
	return nil
}

// request sends a configuration request and waits for the kernel's ACK
// or error, which the reader hands over.
func (q *Queue) request(c config) error {
	return q.exchange(func(seq uint32) []byte { return appendConfig(nil, q.num, c, seq) }, "config")
}

// exchange sends the request build makes with sequence number seq and
// NLM_F_ACK, and waits for the kernel's answer.
func (q *Queue) exchange(build func(seq uint32) []byte, op string) error {
	seq := q.seq.Add(1)
	ch := make(chan error, 1)
	q.pending.mu.Lock()
	if q.pending.done {
		q.pending.mu.Unlock()
		return ErrClosed
	}
	q.pending.m[seq] = ch
	q.pending.mu.Unlock()
	defer func() {
		q.pending.mu.Lock()
		delete(q.pending.m, seq)
		q.pending.mu.Unlock()
	}()
	if err := q.send(build(seq), op); err != nil {
		return err
	}
	t := time.NewTimer(requestTimeout)
	defer t.Stop()
	select {
	case err := <-ch:
		return err
	case <-t.C:
		return fmt.Errorf("%s: no answer from the kernel in %v", op, requestTimeout)
	}
}

// answer hands the kernel's answer to request seq over; false if no
// request waits for it.
func (q *Queue) answer(seq uint32, errno int32) bool {
	q.pending.mu.Lock()
	defer q.pending.mu.Unlock()
	ch, ok := q.pending.m[seq]
	if !ok {
		return false
	}
	var err error
	if errno != 0 {
		err = syscall.Errno(errno)
	}
	ch <- err // buffered, one answer per request
	delete(q.pending.m, seq)
	return true
}

// Close stops the queue without dropping a packet: new packets pass
// unqueued (queue length 0, fail-open), every packet still held is
// accepted, then the queue is unbound (with the rule's bypass, packets
// then pass the rule) and the reader stopped. Verdicts after Close fail
// with ErrClosed. Close waits for the reader; it is safe to call twice.
func (q *Queue) Close() error {
	q.once.Do(func() {
		var errs []error
		zero := uint32(0)
		if err := q.request(config{maxLen: &zero}); err != nil {
			errs = append(errs, fmt.Errorf("set queue length 0: %w", err))
		}
		// Every id queued so far: up to the last one read, and as many
		// again as could have been queued unread.
		maxID := q.lastID.Load() + math.MaxInt32
		err := q.exchange(func(seq uint32) []byte {
			return appendVerdict(nil, q.num, maxID, Accept, true, nlmFAck, seq)
		}, "accept held packets")
		if err != nil && !errors.Is(err, unix.ENOENT) { // ENOENT: none held
			errs = append(errs, err)
		}
		if err := q.request(config{cmd: cmdUnbind}); err != nil {
			errs = append(errs, fmt.Errorf("unbind: %w", err))
		}
		q.stop()
		if len(errs) > 0 {
			q.closeErr = fmt.Errorf("close nfqueue %d: %w", q.num, errors.Join(errs...))
		}
	})
	return q.closeErr
}

// stop closes the socket, which unbinds the queue if it is still bound
// (the kernel then drops what it holds), and waits for the reader.
func (q *Queue) stop() {
	q.closing.Store(true)
	q.nl.Close()
	q.wg.Wait()
}
