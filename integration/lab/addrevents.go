package lab

import (
	"net/netip"
	"slices"
	"time"
)

// AddrEvent is one address added to or deleted from an interface, as a
// netlink subscription (RTM_NEWADDR, RTM_DELADDR) or `ip monitor
// address` reports it, with the time it was received.
type AddrEvent struct {
	At    time.Time
	Addr  netip.Addr
	Added bool // false: deleted
}

// CountAdded counts the events in [from, to) that added one of addrs:
// on a backup, each is a VIP it took (a takeover, false or not).
func CountAdded(events []AddrEvent, addrs []netip.Addr, from, to time.Time) int {
	n := 0
	for _, e := range events {
		if e.Added && slices.Contains(addrs, e.Addr) && !e.At.Before(from) && e.At.Before(to) {
			n++
		}
	}
	return n
}

// AllPresentAt returns when every one of addrs was last added without a
// deletion after it, counting only events from since on; ok is false if
// some address was not (still) added by the last event. Events must be in
// the order received.
func AllPresentAt(events []AddrEvent, addrs []netip.Addr, since time.Time) (at time.Time, ok bool) {
	added := map[netip.Addr]time.Time{}
	for _, e := range events {
		if e.At.Before(since) || !slices.Contains(addrs, e.Addr) {
			continue
		}
		if e.Added {
			if _, present := added[e.Addr]; !present {
				added[e.Addr] = e.At
			}
		} else {
			delete(added, e.Addr)
		}
	}
	for _, a := range addrs {
		t, present := added[a]
		if !present {
			return time.Time{}, false
		}
		at = maxTime(at, t)
	}
	return at, true
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
