package kernel

import (
	"context"
	"encoding/binary"
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

// ErrLookup is what Get's error wraps when some lookups failed (an errno
// other than ENOENT, an answer that cannot be decoded) and the others
// were made.
var ErrLookup = errors.New("lookups failed")

// GetBatch is how many lookups Get sends per sendmsg: their replies
// (about 1 KiB of receive buffer each) must fit the socket's buffer.
const GetBatch = 256

// getter is Get's socket: a lookup's answers must not mix with a dump's.
type getter struct {
	mu  sync.Mutex
	c   *netlink.Conn
	rc  syscall.RawConn
	seq uint32
	b   nlBuf
	mm  *mmsgBatch
}

// Get looks flows up by key (original tuple and zone) and calls fn with
// the kernel's entry of each one the table holds, in the order of keys;
// the others are skipped. It returns how many were not found (ENOENT).
// Unlike a dump, which walks every bucket of the kernel's hash table
// (262 144 here, 12 ms of CPU even for a table of ten entries), a lookup
// costs the same whatever the table's size: so a pass over a few
// flows costs a few lookups. An entry the kernel refuses to look up
// (another errno) or that cannot be decoded does not stop Get: it
// returns an error that counts them (ErrLookup) after the others.
func (c *Conn) Get(ctx context.Context, keys []ct.Key, fn func(ct.Flow)) (missing int, err error) {
	g := &c.g
	g.mu.Lock()
	defer g.mu.Unlock()
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = g.c.SetReadDeadline(time.Now())
		close(fired)
	})
	defer func() {
		if !stop() {
			<-fired
		}
		_ = g.c.SetReadDeadline(time.Time{})
	}()

	var bad int
	var badErr error
	for start := 0; start < len(keys); start += GetBatch {
		if err := ctx.Err(); err != nil {
			return missing, fmt.Errorf("get conntrack flows: %w", err)
		}
		m, b, e, err := g.batch(ctx, keys[start:min(start+GetBatch, len(keys))], fn)
		missing += m
		if bad == 0 && b > 0 {
			badErr = e
		}
		bad += b
		if err != nil {
			if cerr := ctx.Err(); cerr != nil {
				err = cerr // the deadline it set
			}
			return missing, fmt.Errorf("get conntrack flows: %w", err)
		}
	}
	if bad > 0 {
		return missing, fmt.Errorf("get conntrack flows: %w: %d, the first: %w", ErrLookup, bad, badErr)
	}
	return missing, nil
}

func (g *getter) dial() error {
	c, err := dialNetfilter()
	if err != nil {
		return err
	}
	if err := setReadBuffer(c, writeReadBuffer); err != nil {
		c.Close()
		return err
	}
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return err
	}
	g.c, g.rc = c, rc
	return nil
}

// batch sends one sendmsg of lookups and reads their replies: the kernel
// answers each one, in order, with the entry or an error (no ACK asked).
func (g *getter) batch(ctx context.Context, keys []ct.Key, fn func(ct.Flow)) (missing, bad int, badErr, err error) {
	g.b.reset()
	for i := range keys {
		k := &keys[i]
		fam := netfilter.ProtoIPv4
		if k.Orig.V6 {
			fam = netfilter.ProtoIPv6
		}
		g.b.begin(netfilter.Header{SubsystemID: netfilter.NFSubsysCTNetlink, MessageType: msgCTGet,
			Family: fam, Flags: netlink.Request})
		encodeTuple(&g.b, ctaTupleOrig, k.Orig)
		if k.Zone != 0 {
			g.b.Uint16(ctaZone, k.Zone)
		}
		if err := g.b.end(); err != nil {
			return missing, bad, badErr, err // cannot happen: a tuple always encodes
		}
	}
	n := uint32(len(keys))
	if g.seq > ^uint32(0)-n {
		g.seq = 0 // 0 is never used: the library would replace it
	}
	base := g.seq + 1
	g.seq += n
	pid := g.c.PID()
	for i := range n {
		g.b.setHeader(int(i), base+i, pid, false)
	}
	if err := sendRaw(g.rc, g.b.b); err != nil {
		return missing, bad, badErr, err
	}
	// Every request is answered once, in a datagram of its own: its entry
	// or an error. Answers to an earlier, abandoned batch (its ctx ended)
	// are recognised by their sequence numbers. Read as raw datagrams:
	// the kernel marks each entry NLM_F_MULTI, as in a dump, though no
	// NLMSG_DONE follows, and the netlink library would wait for one.
	var answered uint32
	answer := func(d []byte) {
		for len(d) >= nlmsgHeaderLen {
			var m netlink.Message
			if err := m.UnmarshalBinary(d); err != nil {
				if bad == 0 {
					badErr = fmt.Errorf("netlink message in %d bytes: %w: %w", len(d), errMalformed, err)
				}
				bad++
				return
			}
			d = d[min(len(d), (int(m.Header.Length)+3)&^3):]
			if m.Header.Sequence-base >= n {
				continue
			}
			answered++
			if m.Header.Type == netlink.Error {
				var errno syscall.Errno
				if len(m.Data) >= 4 {
					errno = syscall.Errno(-int32(binary.NativeEndian.Uint32(m.Data)))
				}
				switch errno {
				case unix.ENOENT:
					missing++
				default:
					if bad == 0 {
						badErr = errno
					}
					bad++
				}
				continue
			}
			_, f, err := decodeMessage(m)
			if err != nil {
				if bad == 0 {
					badErr = err
				}
				bad++
				continue
			}
			fn(f)
		}
	}
	if g.mm == nil {
		g.mm = newMmsgBatch(64, 4096)
	}
	var rerr error
	for answered < n && rerr == nil {
		if err := ctx.Err(); err != nil {
			return missing, bad, badErr, err // the rest are skipped by the next batch
		}
		err := g.rc.Read(func(fd uintptr) bool {
			k, err := g.mm.recv(int(fd))
			for err == unix.EINTR {
				k, err = g.mm.recv(int(fd))
			}
			switch {
			case err == unix.EAGAIN:
				return false // wait until readable
			case err != nil:
				rerr = err
				return true
			}
			for i := range k {
				d, trunc := g.mm.datagram(i)
				if trunc {
					rerr = fmt.Errorf("answer truncated at %d bytes", len(d))
					return true
				}
				answer(d)
			}
			return true
		})
		if err != nil {
			return missing, bad, badErr, err // ctx ended (the deadline), or the socket closed
		}
	}
	if rerr != nil {
		return missing, bad, badErr, rerr
	}
	return missing, bad, badErr, nil
}
