package addr_test

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/ctha/ctha/addr"
)

func ExampleVirtualMAC() {
	fmt.Println(addr.VirtualMAC(51, false))
	fmt.Println(addr.VirtualMAC(51, true))
	// Output:
	// 00:00:5e:00:01:33
	// 00:00:5e:00:02:33
}

// The life of an instance's VIPs, as the vrrp runner drives it.
func ExampleManager() {
	vips := []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24")}
	if _, err := addr.RemoveStale("eth0", vips); err != nil { // before the election
		slog.Error("remove stale VIPs", "iface", "eth0", "err", err)
	}
	m, err := addr.New(addr.Config{
		Interface: "eth0",
		VRID:      51,
		VIPs:      vips,
		GARP:      addr.GARP{Repeat: 5, Interval: 100 * time.Millisecond, Delay: 5 * time.Second},
	}, slog.Default())
	if err != nil {
		slog.Error("addr", "err", err)
		return
	}
	defer m.Close()

	// Becoming MASTER:
	if _, err := m.Up(); err != nil {
		slog.Error("VIPs up", "err", err)
	}
	// Leaving MASTER:
	if err := m.Down(); err != nil {
		slog.Error("VIPs down", "err", err)
	}
}
