package kernel

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"

	"github.com/ctha/ctha/ctsync/ct"
)

const (
	// recvBufSize is the user buffer of every receive: large enough for the
	// biggest datagram the kernel builds for a dump (32 KiB), so the kernel
	// also fills dump datagrams that far.
	recvBufSize = 64 << 10
	// writeReadBuffer is the write socket's receive buffer. The kernel
	// handles a whole sendmsg before we read, queueing one ACK (about 1 KiB
	// of buffer each) per message; if they do not fit it drops them.
	writeReadBuffer = 8 << 20
	// DefaultBatchSize is WriteOptions.BatchSize when it is 0.
	DefaultBatchSize = 256
	// MaxBatchSize bounds WriteOptions.BatchSize (the ACKs of a batch must
	// fit the write socket's receive buffer).
	MaxBatchSize = 2048
)

// Conn is a ctnetlink connection for dumps, lookups and writes (not
// events). It holds three sockets: writes, dumps and lookups each have
// their own, so that a dump can run during a write and no answer goes to
// the wrong reader.
type Conn struct {
	wmu sync.Mutex // serialises writes; guards seq, wb and spans
	w   *netlink.Conn
	wrc syscall.RawConn // w's, to send a batch as built
	seq uint32
	wb  nlBuf  // the batch being written
	sp  []span // its flows

	dmu sync.Mutex // serialises dumps
	d   *netlink.Conn

	g getter // Get's
}

func dialNetfilter() (*netlink.Conn, error) {
	return netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{MessageBufferSize: recvBufSize})
}

// Dial opens a Conn in the calling thread's network namespace.
func Dial() (*Conn, error) {
	w, err := dialNetfilter()
	if err != nil {
		return nil, fmt.Errorf("dial ctnetlink: %w", err)
	}
	if err := setReadBuffer(w, writeReadBuffer); err != nil {
		w.Close()
		return nil, fmt.Errorf("dial ctnetlink: %w", err)
	}
	// Both are optional: error ACKs without the request, with the kernel's
	// message (shown in WriteError).
	_ = w.SetOption(netlink.CapAcknowledge, true)
	_ = w.SetOption(netlink.ExtendedAcknowledge, true)
	wrc, err := w.SyscallConn()
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("dial ctnetlink: %w", err)
	}
	d, err := dialNetfilter()
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("dial ctnetlink: %w", err)
	}
	c := &Conn{w: w, wrc: wrc, d: d}
	if err := c.g.dial(); err != nil {
		w.Close()
		d.Close()
		return nil, fmt.Errorf("dial ctnetlink: %w", err)
	}
	return c, nil
}

// setReadBuffer sets a socket's receive buffer to n bytes: with
// SO_RCVBUFFORCE when the process has CAP_NET_ADMIN, else with SO_RCVBUF,
// which the kernel silently caps at net.core.rmem_max.
func setReadBuffer(c *netlink.Conn, n int) error {
	rc, err := c.SyscallConn()
	if err == nil {
		var serr error
		err = rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
		})
		if err == nil && serr == nil {
			return nil
		}
	}
	if err := c.SetReadBuffer(n); err != nil {
		return fmt.Errorf("set receive buffer to %d bytes: %w", n, err)
	}
	return nil
}

// Close closes the sockets.
func (c *Conn) Close() error {
	return errors.Join(c.w.Close(), c.d.Close(), c.g.c.Close())
}

// PortID is the netlink port id of the write socket. The kernel sends the
// events caused by a write with the writer's port id (nlmsg_pid); a
// Listener given it in ListenOptions drops them, so the engine's own writes
// are never echoed to the peer. Dumps use another socket and cause no
// events.
func (c *Conn) PortID() uint32 { return c.w.PID() }

// Dump calls fn for every flow in the table (IPv4 and IPv6, every zone),
// one at a time as the kernel sends them; it stops early if fn returns
// false or ctx is done (returning ctx's error). An entry that cannot be
// decoded does not stop the dump: the others are still passed to fn, and
// Dump then returns an error that counts them.
func (c *Conn) Dump(ctx context.Context, fn func(ct.Flow) bool) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	req, err := netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysCTNetlink,
		MessageType: msgCTGet,
		Family:      netfilter.ProtoUnspec, // both families
		Flags:       netlink.Request | netlink.Dump,
	}, nil)
	if err != nil {
		return fmt.Errorf("dump conntrack table: %w", err)
	}
	if _, err := c.d.Send(req); err != nil {
		return fmt.Errorf("dump conntrack table: %w", err)
	}
	var bad int
	var badErr error
	// Leaving the loop early makes the iterator read (and discard) the rest
	// of the dump, so the socket is clean for the next one.
	for m, err := range c.d.ReceiveIter() {
		if err != nil {
			return fmt.Errorf("dump conntrack table: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("dump conntrack table: %w", err)
		}
		_, f, err := decodeMessage(m)
		if err != nil {
			if bad == 0 {
				badErr = err
			}
			bad++
			continue
		}
		if !fn(f) {
			break
		}
	}
	if bad > 0 {
		return fmt.Errorf("dump conntrack table: %d entries could not be decoded, the first: %w", bad, badErr)
	}
	return nil
}

// WriteOptions tune Write.
type WriteOptions struct {
	// Liberal sets TCPFlagBeLiberal in both directions' flags (and mask) of
	// TCP flows: the kernel then skips TCP window checks for them, as a
	// flow replicated mid-stream needs unless tcp_window_tracking = true.
	Liberal bool
	// BatchSize is the number of messages per sendmsg: DefaultBatchSize if
	// 0, at most MaxBatchSize.
	BatchSize int
}

// WriteResult counts what a Write did. Every flow given to Write is either
// counted in OK or listed in Failed.
type WriteResult struct {
	OK       int
	Replaced int // of OK: Create found the flow (EEXIST) and replaced it
	Failed   []WriteError
}

// WriteError is the failure of one flow. Err wraps the kernel's errno
// (errors.Is(err, unix.ENOENT)), ErrInvalidFlow, or the error that stopped
// the Write before the flow's outcome was known.
type WriteError struct {
	Key ct.Key
	Err error
}

func (e WriteError) Error() string {
	return fmt.Sprintf("%v zone %d: %v", e.Key.Orig, e.Key.Zone, e.Err)
}

func (e WriteError) Unwrap() error { return e.Err }

// lockWrite takes the write socket for one exchange and makes ctx's end
// unblock a read waiting for ACKs; the function it returns gives it back.
func (c *Conn) lockWrite(ctx context.Context) (unlock func()) {
	c.wmu.Lock()
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = c.w.SetReadDeadline(time.Now())
		close(fired)
	})
	return func() {
		if !stop() {
			<-fired
		}
		_ = c.w.SetReadDeadline(time.Time{})
		c.wmu.Unlock()
	}
}

// Write applies op to flows in batches: BatchSize messages per sendmsg,
// each failure reported with its flow's key and errno (see exchange). Create replaces a flow that exists
// (EEXIST): it deletes and recreates it in one batch, so the new flow is
// exactly the one given (an update could not change its NAT binding,
// helper or status). Write returns an error only when it could not go on
// (the socket failed, ctx is done): then the flows not written are in
// Failed with that error too.
func (c *Conn) Write(ctx context.Context, op Op, flows []ct.Flow, opts WriteOptions) (WriteResult, error) {
	bs := opts.BatchSize
	if bs <= 0 {
		bs = DefaultBatchSize
	}
	bs = min(bs, MaxBatchSize)
	defer c.lockWrite(ctx)()

	var res WriteResult
	for start := 0; start < len(flows); start += bs {
		batch := flows[start:min(start+bs, len(flows))]
		next := start
		err := ctx.Err()
		if err == nil {
			next += len(batch) // writeBatch accounts for the batch
			err = c.writeBatch(op, batch, opts, &res)
		}
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				err = ctxErr
			}
			err = fmt.Errorf("%v conntrack flows: %w", op, err)
			for i := next; i < len(flows); i++ {
				res.Failed = append(res.Failed, WriteError{Key: flows[i].Key(), Err: err})
			}
			return res, err
		}
	}
	return res, nil
}

// span is where a flow's messages are in a batch's messages.
type span struct{ flow, from, to int }

// outcome is the first error among a span's messages.
func (s span) outcome(errs []error) error {
	for _, err := range errs[s.from:s.to] {
		if err != nil {
			return err
		}
	}
	return nil
}

// writeBatch writes one batch and accounts for every flow of it in res. On
// a fatal error the batch's flows of unknown outcome are in res.Failed.
func (c *Conn) writeBatch(op Op, batch []ct.Flow, opts WriteOptions, res *WriteResult) error {
	w := &c.wb
	w.reset()
	spans := c.sp[:0]
	defer func() { c.sp = spans[:0] }()
	for i := range batch {
		from := w.len()
		if err := appendFlow(w, op, &batch[i], opts); err != nil {
			res.Failed = append(res.Failed, WriteError{Key: batch[i].Key(), Err: err})
			continue
		}
		spans = append(spans, span{flow: i, from: from, to: w.len()})
	}
	errs, fatal := c.exchange(w)
	var exist []int
	for _, s := range spans {
		switch err := s.outcome(errs); {
		case err == nil:
			res.OK++
		case op == Create && fatal == nil && errors.Is(errs[s.from], unix.EEXIST):
			exist = append(exist, s.flow)
		default:
			res.Failed = append(res.Failed, WriteError{Key: batch[s.flow].Key(), Err: err})
		}
	}
	if fatal != nil || len(exist) == 0 {
		return fatal
	}

	// Replace: delete then create, back to back in one sendmsg. The
	// delete's error does not matter (ENOENT: gone meanwhile).
	w.reset()
	spans = spans[:0]
	for _, i := range exist {
		if err := encodeFlow(w, Delete, &batch[i], opts); err != nil {
			return err // cannot happen: the create encoded
		}
		from := w.len()
		if err := appendFlow(w, Create, &batch[i], opts); err != nil {
			return err
		}
		spans = append(spans, span{flow: i, from: from, to: w.len()})
	}
	errs, fatal = c.exchange(w)
	for _, s := range spans {
		if err := s.outcome(errs); err != nil {
			res.Failed = append(res.Failed, WriteError{Key: batch[s.flow].Key(), Err: fmt.Errorf("replace: %w", err)})
			continue
		}
		res.OK++
		res.Replaced++
	}
	return fatal
}

// exchange sends the messages of w in one sendmsg and learns each one's
// outcome. It returns each message's error (nil when it succeeded) and,
// if the exchange could not complete, the error that stopped it; the
// messages whose outcome was not known then carry that error.
//
// Only the last message asks for an ACK: the kernel answers a failed
// request with an error message whether or not it asked for an ACK, and
// handles the messages of a sendmsg in order, so the last one's ACK says
// every earlier one without an error succeeded. An ACK per message cost
// the kernel a message to build and us one to read for every flow.
// Answers to earlier, abandoned exchanges are recognised by their
// sequence numbers and skipped.
func (c *Conn) exchange(w *nlBuf) ([]error, error) {
	n := uint32(w.len())
	errs := make([]error, n)
	if n == 0 {
		return errs, nil
	}
	if c.seq > ^uint32(0)-n {
		c.seq = 0 // 0 is never used: the library would replace it
	}
	base := c.seq + 1
	c.seq += n
	pid := c.w.PID()
	for i := range n {
		w.setHeader(int(i), base+i, pid, i == n-1)
	}
	// unknown gives the messages without an error the error that stopped
	// the exchange: their outcome is not known.
	unknown := func(err error) ([]error, error) {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = fmt.Errorf("outcome unknown: %w", err)
			}
		}
		return errs, err
	}
	if err := c.send(w.b); err != nil {
		return unknown(err)
	}
	for {
		replies, err := c.w.Receive()
		if err != nil {
			var oe *netlink.OpError
			var errno syscall.Errno
			if !errors.As(err, &oe) || oe.Sequence == 0 || !errors.As(oe.Err, &errno) {
				// Not a message's error: the socket failed (or ctx ended).
				return unknown(err)
			}
			if i := oe.Sequence - base; i < n && errs[i] == nil {
				errs[i] = errnoError(errno, oe.Message)
				if i == n-1 {
					return errs, nil
				}
			}
			continue
		}
		for _, m := range replies {
			if m.Header.Type == netlink.Error && m.Header.Sequence == base+n-1 {
				return errs, nil
			}
		}
	}
}

// send writes b, requests built in an nlBuf, to the kernel in one
// sendmsg.
func (c *Conn) send(b []byte) error { return sendRaw(c.wrc, b) }

// sendRaw writes b to the netlink socket rc in one sendmsg.
func sendRaw(rc syscall.RawConn, b []byte) error {
	var serr error
	err := rc.Write(func(fd uintptr) bool {
		for {
			_, serr = unix.Write(int(fd), b)
			if serr != unix.EINTR {
				return serr != unix.EAGAIN
			}
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("send %d bytes to ctnetlink: %w", len(b), err)
	}
	return nil
}

// errnoError is a kernel error for one message, with the kernel's extended
// ACK message when there is one.
func errnoError(errno syscall.Errno, msg string) error {
	if msg == "" {
		return errno
	}
	return fmt.Errorf("%w (%s)", errno, msg)
}
