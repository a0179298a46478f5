// Package sim is the world around a ctha node, in memory, for tests that
// run a pair of nodes in one process: a conntrack table (Table, the
// sync engine's ctsync.Kernel), a network for the sync links (Net, with
// loss, delay, rate limits and cuts), a LAN segment for VRRP (Segment),
// the kernel's links (Host) and the virtual addresses (Addresses).
//
// Everything blocks on channels and the runtime's timers, never on a
// file descriptor, so that the engines run inside a testing/synctest
// bubble, on its fake clock.
package sim
