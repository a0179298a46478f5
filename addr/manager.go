package addr

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// netlinkTimeout bounds every rtnetlink request, so that a wedged kernel
// call cannot hang the instance's runner forever.
const netlinkTimeout = 5 * time.Second

// Manager owns one VRRP instance's VIPs on one interface.
//
// Up, Down, Announce and Close must be called from one goroutine (the
// instance's runner), never concurrently. Stats may be called at any time
// from any goroutine, Present at any time before Close.
type Manager struct {
	cfg  Config
	ipv6 bool
	log  *slog.Logger

	// Fixed by New; the handle and the sockets are bound to the network
	// namespace New ran in, whichever goroutine uses them later.
	nl   *netlink.Handle
	link netlink.Link // where the VIPs live: the interface or the macvlan
	vmac netlink.Link // the macvlan; nil unless cfg.VirtualMAC
	// arpIsolated: the parent's ARP sysctls are held for the virtual MAC.
	arpIsolated bool
	ann         *announcer

	stats  counters
	closed atomic.Bool

	bursts *bursts // running while up; owned by the runner goroutine
}

// Stats are a Manager's counters since New.
type Stats struct {
	Announcements uint64 // packets written: ARP requests, ARP replies, NAs
	SendErrors    uint64 // packets that could not be written
	AddErrors     uint64 // VIPs that could not be added
	RemoveErrors  uint64 // VIPs that could not be removed
}

type counters struct {
	announcements, sendErrors, addErrors, removeErrors atomic.Uint64
}

// New checks c, resolves its interface, creates the virtual MAC link if c
// asks for one (replacing a leftover of a crashed run), and opens the
// sockets the announcements go out on, so that Up never waits for them.
// Everything New opens belongs to the network namespace of the calling
// thread. log receives the failures of background announcements; nil
// discards them.
func New(c Config, log *slog.Logger) (*Manager, error) {
	ipv6, err := c.validate()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c.VIPs = slices.Clone(c.VIPs)
	m := &Manager{cfg: c, ipv6: ipv6, log: log}
	if err := m.open(); err != nil {
		m.release()
		return nil, err
	}
	return m, nil
}

// open does the work of New; on error, release undoes what it did.
func (m *Manager) open() error {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open rtnetlink: %w", err)
	}
	m.nl = h
	if err := h.SetSocketTimeout(netlinkTimeout); err != nil {
		return fmt.Errorf("set rtnetlink timeout: %w", err)
	}
	link, err := h.LinkByName(m.cfg.Interface)
	if err != nil {
		return fmt.Errorf("resolve interface %s: %w", m.cfg.Interface, err)
	}
	m.link = link
	mac := link.Attrs().HardwareAddr
	if m.cfg.VirtualMAC {
		v, err := m.createMacvlan(link)
		if err != nil {
			return err
		}
		m.vmac, m.link = v, v
		mac = v.Attrs().HardwareAddr
		if !m.ipv6 {
			if err := isolateARP(m.cfg.Interface); err != nil {
				return fmt.Errorf("virtual MAC on %s: %w", m.cfg.Interface, err)
			}
			m.arpIsolated = true
		}
	}
	ann, err := newAnnouncer(m.link.Attrs().Index, mac, m.cfg.VIPs)
	if err != nil {
		return fmt.Errorf("announcer on %s: %w", m.linkName(), err)
	}
	m.ann = ann
	return nil
}

// release closes what open acquired; Close's last step.
func (m *Manager) release() error {
	var errs []error
	if m.ann != nil {
		errs = append(errs, m.ann.close())
	}
	if m.vmac != nil {
		if err := m.nl.LinkDel(m.vmac); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", m.linkName(), err))
		}
	}
	if m.arpIsolated {
		errs = append(errs, releaseARP(m.cfg.Interface))
	}
	if m.nl != nil {
		m.nl.Close()
	}
	return errors.Join(errs...)
}

// Up adds every VIP (IPv6 ones with IFA_F_NODAD so they are usable at once;
// replacing, so that Up is idempotent), brings the virtual MAC up if there
// is one, and sends the first message of the first announcement burst
// before it returns. The rest of the burst, the delayed burst and the
// refresh follow from the Manager's goroutine until Down or Close. Up
// returns the time the first announcement was written (zero if none was).
//
// On error Up still does all it can: every step is tried (a VIP that could
// not be added does not stop the others, nor the announcements), and the
// errors are joined.
func (m *Manager) Up() (firstAnnounce time.Time, err error) {
	if m.closed.Load() {
		return time.Time{}, ErrClosed
	}
	m.stopBursts()
	var errs []error
	if m.vmac != nil {
		if err := m.nl.LinkSetUp(m.vmac); err != nil {
			errs = append(errs, fmt.Errorf("set %s up: %w", m.linkName(), err))
		}
	}
	for _, vip := range m.cfg.VIPs {
		if err := m.nl.AddrReplace(m.link, nlAddr(vip)); err != nil {
			m.stats.addErrors.Add(1)
			errs = append(errs, fmt.Errorf("add %s on %s: %w", vip, m.linkName(), err))
		}
	}
	if len(m.cfg.VIPs) == 0 {
		return time.Time{}, errors.Join(errs...)
	}
	first, err := m.sendOne()
	if err != nil {
		errs = append(errs, err)
	}
	start := first
	if start.IsZero() {
		start = time.Now()
	}
	m.bursts = startBursts(m.cfg.GARP, start, m.sendInBackground)
	return first, errors.Join(errs...)
}

// Down stops the announcements, removes every VIP (one already absent is
// fine) and sets the virtual MAC down. It is idempotent.
func (m *Manager) Down() error {
	if m.closed.Load() {
		return ErrClosed
	}
	m.stopBursts()
	var errs []error
	for _, vip := range m.cfg.VIPs {
		err := m.nl.AddrDel(m.link, nlAddr(vip))
		if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			m.stats.removeErrors.Add(1)
			errs = append(errs, fmt.Errorf("remove %s from %s: %w", vip, m.linkName(), err))
		}
	}
	if m.vmac != nil {
		if err := m.nl.LinkSetDown(m.vmac); err != nil {
			errs = append(errs, fmt.Errorf("set %s down: %w", m.linkName(), err))
		}
	}
	return errors.Join(errs...)
}

// Announce sends a burst now: its first message before it returns, the
// rest from the Manager's goroutine. It returns ErrNotUp unless the VIPs
// are up.
func (m *Manager) Announce() error {
	if m.closed.Load() {
		return ErrClosed
	}
	if m.bursts == nil {
		return ErrNotUp
	}
	first, err := m.sendOne()
	if first.IsZero() {
		first = time.Now()
	}
	m.bursts.announce(first)
	return err
}

// Close stops the announcements and closes the sockets. It does not remove
// the VIPs from the interface, so that replacing a Manager (on a reload)
// does not interrupt traffic: call Down first to give them up. The virtual
// MAC link, however, is deleted, and the VIPs on it with it. Close is
// idempotent; every other method returns ErrClosed after it.
func (m *Manager) Close() error {
	if m.closed.Swap(true) {
		return nil
	}
	m.stopBursts()
	return m.release()
}

// Present reports which configured VIPs are on their link now, according
// to the kernel: same address and prefix length.
func (m *Manager) Present() ([]netip.Prefix, error) {
	if m.closed.Load() {
		return nil, ErrClosed
	}
	have, err := listAddrs(m.nl, m.link)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", m.linkName(), err)
	}
	var present []netip.Prefix
	for _, vip := range m.cfg.VIPs {
		if slices.Contains(have, vip) {
			present = append(present, vip)
		}
	}
	return present, nil
}

// Stats returns the counters. It is safe for concurrent use.
func (m *Manager) Stats() Stats {
	return Stats{
		Announcements: m.stats.announcements.Load(),
		SendErrors:    m.stats.sendErrors.Load(),
		AddErrors:     m.stats.addErrors.Load(),
		RemoveErrors:  m.stats.removeErrors.Load(),
	}
}

// sendOne writes one message of a burst and counts it.
func (m *Manager) sendOne() (time.Time, error) {
	first, sent, failed, err := m.ann.send()
	m.stats.announcements.Add(uint64(sent))
	m.stats.sendErrors.Add(uint64(failed))
	if err != nil {
		return first, fmt.Errorf("announce on %s: %w", m.linkName(), err)
	}
	return first, nil
}

// sendInBackground is sendOne for the bursts goroutine, which has nobody
// to return an error to.
func (m *Manager) sendInBackground() {
	if _, err := m.sendOne(); err != nil {
		m.log.Warn("announcement failed", "iface", m.linkName(), "vrid", m.cfg.VRID, "err", err)
	}
}

func (m *Manager) stopBursts() {
	if m.bursts != nil {
		m.bursts.halt()
		m.bursts = nil
	}
}

func (m *Manager) linkName() string {
	if m.link == nil {
		return m.cfg.Interface
	}
	return m.link.Attrs().Name
}

// nlAddr converts a VIP for rtnetlink.
func nlAddr(p netip.Prefix) *netlink.Addr {
	a := p.Addr()
	ad := &netlink.Addr{IPNet: &net.IPNet{
		IP:   a.AsSlice(),
		Mask: net.CIDRMask(p.Bits(), a.BitLen()),
	}}
	if a.Is6() {
		ad.Flags = unix.IFA_F_NODAD
	}
	return ad
}
