package kernel

import (
	"context"
	"fmt"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"

	"github.com/ctha/ctha/ctsync/ct"
)

// enum cntl_expect_msg_types and enum ctattr_expect
const (
	msgExpNew    = 0 // IPCTNL_MSG_EXP_NEW
	msgExpDelete = 2 // IPCTNL_MSG_EXP_DELETE

	ctaExpectMaster   = 1  // CTA_EXPECT_MASTER
	ctaExpectTuple    = 2  // CTA_EXPECT_TUPLE
	ctaExpectMask     = 3  // CTA_EXPECT_MASK
	ctaExpectTimeout  = 4  // CTA_EXPECT_TIMEOUT
	ctaExpectHelpName = 6  // CTA_EXPECT_HELP_NAME
	ctaExpectZone     = 7  // CTA_EXPECT_ZONE
	ctaExpectFlags    = 8  // CTA_EXPECT_FLAGS
	ctaExpectClass    = 9  // CTA_EXPECT_CLASS
	ctaExpectFn       = 11 // CTA_EXPECT_FN
)

// encodeExpect appends to w the request that creates (Create) or deletes
// (Delete) an expectation. A Create needs the master flow in the table
// (ENOENT otherwise), with a helper or a timeout; the kernel finds the
// helper by name. A Delete always names the tuple: one without would
// flush every expectation.
func encodeExpect(w *nlBuf, op Op, e *ct.Expect) error {
	family := netfilter.ProtoIPv4
	if e.Tuple.V6 {
		family = netfilter.ProtoIPv6
	}
	h := netfilter.Header{SubsystemID: netfilter.NFSubsysCTNetlinkExp, Family: family}
	switch op {
	case Create:
		if e.Master.V6 != e.Tuple.V6 || e.Mask.V6 != e.Tuple.V6 {
			return fmt.Errorf("%w: expectation %v of another family than its master", ErrInvalidFlow, e)
		}
		h.MessageType = msgExpNew
		h.Flags = netlink.Request | netlink.Acknowledge | netlink.Create | netlink.Excl
	case Delete:
		h.MessageType = msgExpDelete
		h.Flags = netlink.Request | netlink.Acknowledge
	default:
		return fmt.Errorf("%w: %v of an expectation", ErrInvalidFlow, op)
	}
	ae := w
	ae.begin(h)
	switch op {
	case Create:
		encodeTuple(ae, ctaExpectMaster, e.Master)
		encodeTuple(ae, ctaExpectTuple, e.Tuple)
		encodeTuple(ae, ctaExpectMask, e.Mask)
		ae.Uint32(ctaExpectTimeout, e.Timeout)
		if e.Helper != "" {
			ae.String(ctaExpectHelpName, e.Helper)
		}
		if e.Zone != 0 {
			ae.Uint16(ctaExpectZone, e.Zone)
		}
		if e.Flags != 0 {
			ae.Uint32(ctaExpectFlags, e.Flags)
		}
		if e.Class != 0 {
			ae.Uint32(ctaExpectClass, e.Class)
		}
		if e.Fn != "" {
			ae.String(ctaExpectFn, e.Fn)
		}
	case Delete:
		encodeTuple(ae, ctaExpectTuple, e.Tuple)
		if e.Zone != 0 {
			ae.Uint16(ctaExpectZone, e.Zone)
		}
	}
	if err := w.end(); err != nil {
		return fmt.Errorf("encode %v %v: %w", op, e, err)
	}
	return nil
}

// WriteExpect creates or deletes expectations, in one batch, and returns
// the error of each (nil: done), in order. Create an expectation after
// its master flow. A create of an expectation that exists fails with
// EEXIST, a delete of one that is gone with ENOENT. The error is not nil
// when the exchange could not complete (the socket failed, ctx is done).
func (c *Conn) WriteExpect(ctx context.Context, op Op, exps []ct.Expect) ([]error, error) {
	errs := make([]error, len(exps))
	if err := ctx.Err(); err != nil {
		return errs, err
	}
	defer c.lockWrite(ctx)()
	w := &c.wb
	w.reset()
	idx := make([]int, 0, len(exps))
	for i := range exps {
		if err := encodeExpect(w, op, &exps[i]); err != nil {
			errs[i] = err
			continue
		}
		idx = append(idx, i)
	}
	res, fatal := c.exchange(w)
	for j, i := range idx {
		errs[i] = res[j]
	}
	if fatal != nil {
		return errs, fmt.Errorf("%v expectations: %w", op, fatal)
	}
	return errs, nil
}

// DumpExpect lists the expectations of the table.
func (c *Conn) DumpExpect(ctx context.Context) ([]ct.Expect, error) {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	req, err := netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysCTNetlinkExp,
		MessageType: 1, // IPCTNL_MSG_EXP_GET
		Family:      netfilter.ProtoUnspec,
		Flags:       netlink.Request | netlink.Dump,
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("dump expectations: %w", err)
	}
	if _, err := c.d.Send(req); err != nil {
		return nil, fmt.Errorf("dump expectations: %w", err)
	}
	var out []ct.Expect
	for m, err := range c.d.ReceiveIter() {
		if err != nil {
			return out, fmt.Errorf("dump expectations: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return out, fmt.Errorf("dump expectations: %w", err)
		}
		// A dump entry decodes as an expectation "new" event.
		ev, err := decodeEvent(m)
		if err != nil || ev.Expect == nil {
			return out, fmt.Errorf("dump expectations: %w", err)
		}
		out = append(out, *ev.Expect)
	}
	return out, nil
}
