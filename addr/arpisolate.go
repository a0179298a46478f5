package addr

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// While a virtual MAC holds IPv4 VIPs, the parent interface must neither
// answer ARP for them with its own MAC (Linux answers for any local address
// on any interface by default) nor send ARP requests that name a VIP as
// their sender (its own traffic to a client would then teach the client
// the parent's MAC for the VIP). As keepalived does, the parent gets
// arp_ignore=1 and arp_filter=1, plus arp_announce=2, while any virtual
// MAC uses it, and its old values back when the last one goes.
var arpSettings = []struct{ name, value string }{
	{"arp_ignore", "1"},   // answer only for addresses of the receiving interface
	{"arp_filter", "1"},   // and only where the route back leaves by it
	{"arp_announce", "2"}, // ARP from the interface's own address, never a VIP
}

// arpIsolation counts the virtual MACs on each parent. The sysctl files
// stay open while in use: a /proc/sys/net file belongs to the network
// namespace it was opened in, so restoring works from any thread.
var arpIsolation = struct {
	mu    sync.Mutex
	users map[string]int
	held  map[string][]heldSysctl
}{users: map[string]int{}, held: map[string][]heldSysctl{}}

type heldSysctl struct {
	f   *os.File
	old string
}

// isolateARP applies the settings to parent for a new virtual MAC.
func isolateARP(parent string) error {
	a := &arpIsolation
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.users[parent] == 0 {
		var held []heldSysctl
		for _, s := range arpSettings {
			h, err := setSysctl(filepath.Join("/proc/sys/net/ipv4/conf", parent, s.name), s.value)
			if err != nil {
				return errors.Join(err, restore(held))
			}
			held = append(held, h)
		}
		a.held[parent] = held
	}
	a.users[parent]++
	return nil
}

// releaseARP gives parent its old values back after its last user.
func releaseARP(parent string) error {
	a := &arpIsolation
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.users[parent] == 0 {
		return nil
	}
	if a.users[parent]--; a.users[parent] > 0 {
		return nil
	}
	err := restore(a.held[parent])
	delete(a.held, parent)
	delete(a.users, parent)
	return err
}

func setSysctl(path, value string) (heldSysctl, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return heldSysctl{}, fmt.Errorf("open %s: %w", path, err)
	}
	old, err := io.ReadAll(f)
	if err == nil {
		_, err = f.WriteAt([]byte(value), 0)
	}
	if err != nil {
		f.Close()
		return heldSysctl{}, fmt.Errorf("set %s=%s: %w", path, value, err)
	}
	return heldSysctl{f: f, old: strings.TrimSpace(string(old))}, nil
}

func restore(held []heldSysctl) error {
	var errs []error
	for _, h := range held {
		if _, err := h.f.WriteAt([]byte(h.old), 0); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", h.f.Name(), err))
		}
		h.f.Close()
	}
	return errors.Join(errs...)
}
