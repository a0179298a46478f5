package addr

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RemoveStale removes from iface every address that is one of vips (the
// prefix length does not matter), such as VIPs left by a crashed run, and
// returns the addresses it removed as the kernel had them. Call it before
// the election starts. The interface's own addresses are left alone, unless
// one of them is among vips: do not pass the addresses an address owner
// (priority 255) holds as its own.
//
// It works in the network namespace of the calling thread.
func RemoveStale(iface string, vips []netip.Prefix) ([]netip.Prefix, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("remove stale VIPs from %s: open rtnetlink: %w", iface, err)
	}
	defer h.Close()
	if err := h.SetSocketTimeout(netlinkTimeout); err != nil {
		return nil, fmt.Errorf("remove stale VIPs from %s: %w", iface, err)
	}
	link, err := h.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("remove stale VIPs: resolve interface %s: %w", iface, err)
	}
	have, err := listAddrs(h, link)
	if err != nil {
		return nil, fmt.Errorf("remove stale VIPs: list addresses of %s: %w", iface, err)
	}
	wanted := make(map[netip.Addr]bool, len(vips))
	for _, v := range vips {
		wanted[v.Addr()] = true
	}
	var removed []netip.Prefix
	var errs []error
	for _, p := range have {
		if !wanted[p.Addr()] {
			continue
		}
		err := h.AddrDel(link, nlAddr(p))
		if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("remove stale %s from %s: %w", p, iface, err))
			continue
		}
		removed = append(removed, p)
	}
	return removed, errors.Join(errs...)
}

// listAddrs returns the addresses of link, of both families.
func listAddrs(h *netlink.Handle, link netlink.Link) ([]netip.Prefix, error) {
	var (
		list []netlink.Addr
		err  error
	)
	// A dump interrupted by a concurrent change is retried.
	for range 3 {
		list, err = h.AddrList(link, netlink.FAMILY_ALL)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	have := make([]netip.Prefix, 0, len(list))
	for _, a := range list {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		if ip.Is4In6() {
			ip = ip.Unmap()
		}
		bits, _ := a.Mask.Size()
		have = append(have, netip.PrefixFrom(ip, bits))
	}
	return have, nil
}
