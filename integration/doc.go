// Package integration holds ctha's end-to-end tests: real ctha processes
// in the network-namespace lab of the lab sub-package, with real kernel
// conntrack tables and, as peers and baselines, real keepalived and
// conntrackd. The tests need root; see lab.RequireNetns.
package integration
