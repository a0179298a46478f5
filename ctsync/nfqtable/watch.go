package nfqtable

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Watch calls changed after every change of the namespace's nftables
// ruleset: each committed transaction (the kernel's NFT_MSG_NEWGEN, which
// `nft flush ruleset` sends like any other), and each ENOBUFS on its
// socket (changes it missed). It returns when ctx is done (ctx.Err()) or
// the socket fails. changed runs on Watch's goroutine; it is meant to wake
// a reconcile that calls Reinstall, which costs two dumps when nothing of
// ctha's changed. ctha's own Install wakes it too, harmlessly.
func (t *Table) Watch(ctx context.Context, changed func()) error {
	nl, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: t.netns})
	if err != nil {
		return fmt.Errorf("watch nftables: %w", err)
	}
	defer nl.Close()
	if err := nl.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		return fmt.Errorf("watch nftables: join group: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = nl.SetReadDeadline(time.Now()) })
	defer stop()
	const newGen = unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWGEN
	for {
		msgs, err := nl.Receive()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, unix.ENOBUFS) {
			changed()
			continue
		}
		if err != nil {
			return fmt.Errorf("watch nftables: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Type == newGen {
				changed()
			}
		}
	}
}
