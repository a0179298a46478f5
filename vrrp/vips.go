package vrrp

import (
	"errors"
	"log/slog"
	"net/netip"
	"slices"

	"github.com/ctha/ctha/addr"
)

// addrVIPs is the production VIPs: an addr.Manager.
type addrVIPs struct {
	*addr.Manager
	iface string
	vips  []netip.Prefix
}

// NewAddrVIPs makes the virtual-address manager of an instance with the
// addr package. It is the default of Options.NewVIPs.
func NewAddrVIPs(in Instance, log *slog.Logger) (VIPs, error) {
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
	main := &addrVIPs{Manager: m, iface: in.Interface, vips: in.VIPs}
	if len(in.ExtraVIPs)+len(in.Routes)+len(in.Rules) == 0 {
		return main, nil
	}
	return newExtrasVIPs(main, in, log)
}

// RemoveStale removes the instance's addresses left by a crashed run.
func (a *addrVIPs) RemoveStale() ([]netip.Prefix, error) {
	return addr.RemoveStale(a.iface, a.vips)
}

// Retire removes the addresses next does not place on the interface and
// closes the manager (Close leaves the VIPs where they are).
func (a *addrVIPs) Retire(next Instance) error {
	keep := next.vipsOn(a.iface)
	var drop []netip.Prefix
	for _, p := range a.vips {
		if !slices.Contains(keep, p) {
			drop = append(drop, p)
		}
	}
	var err error
	if len(drop) > 0 {
		_, err = addr.RemoveStale(a.iface, drop)
	}
	return errors.Join(err, a.Close())
}

var _ VIPs = (*addrVIPs)(nil)
