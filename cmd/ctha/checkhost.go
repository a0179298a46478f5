package main

import (
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
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
