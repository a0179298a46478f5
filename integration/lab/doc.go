// Package lab builds the firewall-pair test lab of spec/lab.md in Linux
// network namespaces and runs processes inside it, for end-to-end tests and
// for the demo program.
//
// # What it owns
//
// A [Lab] owns five namespaces named Prefix+"-"+role, where Prefix is random
// per lab ("ct" and six hex digits) and role is one of [RoleSwitch] ("sw"),
// [RoleFW1] ("fw1"), [RoleFW2] ("fw2"), [RoleClient] ("cl") and
// [RoleServer] ("srv") (six with [Options].ThirdFirewall, which adds
// [RoleFW3], "fw3"), every veth and bridge inside them, the sysctls of
// those namespaces and the nftables ruleset of the firewalls. It never
// touches the host namespace: every veth is created inside lab namespaces
// and every sysctl is written with `ip netns exec`. The VIPs are not
// configured by the lab: the HA daemon under test adds them.
//
// A Lab also owns the processes started with [Lab.Start] (and the
// keepalived and conntrackd runners built on it). They are stopped by the
// pid the lab started, never by name, and always before the namespaces are
// deleted.
//
// # Cleanup
//
// [New] registers a cleanup with the [TB] it is given, so the lab disappears
// when the test ends, pass or fail. [Lab.Close] does the same on demand and
// is idempotent. A process killed from outside (for example the whole test
// binary on timeout) cannot clean up; its daemons die with it (they are
// started with a parent-death signal), but its namespaces stay until
// deleted by hand (`ip netns list | grep ^ct`).
//
// # Concurrency
//
// Lab and Proc methods are safe for concurrent use. Labs are independent
// of each other, so tests may build several, but timing-sensitive tests
// should run one at a time (go test -p 1) on small machines.
//
// Every method that runs a command takes a timeout (30 s unless told
// otherwise), so a hung tool cannot hang a test run.
package lab
