package addr

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
)

// addrGenModeNone is IN6_ADDR_GEN_MODE_NONE of linux/if_link.h: the link
// gets no automatic IPv6 link-local address.
const addrGenModeNone = 1

// createMacvlan creates the instance's virtual MAC link on parent: a
// macvlan in private mode (as keepalived makes it) with the RFC 5798 MAC,
// down, without an automatic IPv6 link-local address (which would also
// make it send DAD and router solicitations from the virtual MAC). A link
// of that name left on parent by a crashed run is deleted first, with
// whatever addresses it held; one on another interface is an error.
func (m *Manager) createMacvlan(parent netlink.Link) (netlink.Link, error) {
	name := macvlanName(m.cfg.VRID, m.ipv6)
	old, err := m.nl.LinkByName(name)
	switch {
	case err == nil:
		if old.Attrs().ParentIndex != parent.Attrs().Index || old.Type() != "macvlan" {
			return nil, fmt.Errorf("virtual MAC link %s exists and is not a macvlan on %s", name, parent.Attrs().Name)
		}
		if err := m.nl.LinkDel(old); err != nil {
			return nil, fmt.Errorf("delete leftover %s: %w", name, err)
		}
	case !errors.As(err, new(netlink.LinkNotFoundError)):
		return nil, fmt.Errorf("look up %s: %w", name, err)
	}

	mv := &netlink.Macvlan{
		LinkAttrs: netlink.LinkAttrs{
			Name:         name,
			ParentIndex:  parent.Attrs().Index,
			HardwareAddr: VirtualMAC(m.cfg.VRID, m.ipv6),
		},
		Mode: netlink.MACVLAN_MODE_PRIVATE,
	}
	if err := m.nl.LinkAdd(mv); err != nil {
		return nil, fmt.Errorf("create %s on %s: %w", name, parent.Attrs().Name, err)
	}
	link, err := m.nl.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("look up new %s: %w", name, err)
	}
	// From here on, release deletes the link if New fails.
	m.vmac = link
	if err := m.nl.LinkSetIP6AddrGenMode(link, addrGenModeNone); err != nil && m.ipv6 {
		// Without IPv6 on the link, an IPv4 instance has nothing to fear.
		return nil, fmt.Errorf("set addr_gen_mode none on %s: %w", name, err)
	}
	return link, nil
}
