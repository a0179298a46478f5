// Package vrrp elects a master among the firewalls of a virtual router:
// VRRP version 3 (RFC 5798) and version 2 (RFC 3768), over IPv4 and IPv6,
// interoperating with keepalived.
//
// It is built in layers:
//
//   - packet: the advertisement codec (pure);
//   - Machine: one instance's protocol state, a pure transition function
//     Step(event, now) -> actions, whose timers are deadlines in the state
//     (fsm.go); its tests are tables that never sleep;
//   - Group: instances that fail over together, and the hook through which
//     the conntrack engine makes the kernel table complete before the
//     virtual IPs move (group.go);
//   - the runner: sockets, timers and trackers around them (runner.go,
//     socket.go, track.go).
//
// One goroutine owns a group and all of its instances' state; socket
// readers and trackers talk to it over channels. Status and Stats are safe
// for concurrent use.
package vrrp
