package vrrp

import (
	"log/slog"
	"net/netip"

	"github.com/ctha/ctha/addr"
	"github.com/ctha/ctha/cfg"
)

// addrVIPs is the production VIPs: an addr.Manager.
type addrVIPs struct {
	*addr.Manager
	iface string
	vips  []netip.Prefix
}

// NewAddrVIPs makes the virtual-address manager of an instance with the
// addr package. It is the default of Options.NewVIPs.
func NewAddrVIPs(in cfg.Instance, log *slog.Logger) (VIPs, error) {
	m, err := addr.New(addr.Config{
		Interface:  in.Interface,
		VRID:       in.VRID,
		VIPs:       in.VIPs,
		VirtualMAC: in.VirtualMAC,
		GARP: addr.GARP{
			Repeat: in.GARP.Repeat, Interval: in.GARP.Interval,
			Delay: in.GARP.Delay, Refresh: in.GARP.Refresh,
		},
	}, log)
	if err != nil {
		return nil, err
	}
	return &addrVIPs{Manager: m, iface: in.Interface, vips: in.VIPs}, nil
}

// RemoveStale removes the instance's addresses left by a crashed run.
func (a *addrVIPs) RemoveStale() ([]netip.Prefix, error) {
	return addr.RemoveStale(a.iface, a.vips)
}

var _ VIPs = (*addrVIPs)(nil)
