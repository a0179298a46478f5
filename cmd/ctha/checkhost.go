package main

import (
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"

	"github.com/ctha/ctha/cfg"
	"github.com/ctha/ctha/vrrp"
	vnl "github.com/vishvananda/netlink"
)

// systemHost answers the host checks of `ctha check` (cfg.Host) from
// this machine: its interfaces and addresses (rtnetlink, unprivileged)
// and its file system.
type systemHost struct{}

func (systemHost) Interfaces() (map[string][]netip.Prefix, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	out := make(map[string][]netip.Prefix, len(ifs))
	for _, ifi := range ifs {
		addrs, err := ifi.Addrs()
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", ifi.Name, err)
		}
		ps := []netip.Prefix{}
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(n.IP)
			ones, _ := n.Mask.Size()
			if !ok {
				continue
			}
			if ip = ip.Unmap(); ip.Is4() && ones > 32 { // a 16-byte mask
				ones -= 96
			}
			ps = append(ps, netip.PrefixFrom(ip, ones))
		}
		out[ifi.Name] = ps
	}
	return out, nil
}

func (systemHost) Stat(path string) (fs.FileInfo, error) { return os.Stat(path) }

// ForeignRoutes lists the table's routes that ctha did not add (they do
// not carry vrrp.RouteProtocol).
func (systemHost) ForeignRoutes(table int) ([]cfg.HostRoute, error) {
	list, err := vnl.RouteListFiltered(vnl.FAMILY_ALL, &vnl.Route{Table: table}, vnl.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes of table %d: %w", table, err)
	}
	var out []cfg.HostRoute
	for _, r := range list {
		if r.Protocol == vrrp.RouteProtocol || r.Table != table {
			continue
		}
		var to netip.Prefix
		if r.Dst == nil {
			to = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
			if r.Family == vnl.FAMILY_V6 {
				to = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
			}
		} else if a, ok := netip.AddrFromSlice(r.Dst.IP); ok {
			bits, _ := r.Dst.Mask.Size()
			to = netip.PrefixFrom(a.Unmap(), bits)
		}
		out = append(out, cfg.HostRoute{To: to, Metric: r.Priority})
	}
	return out, nil
}

var _ cfg.RouteHost = systemHost{}
