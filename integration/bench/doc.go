// Package bench holds the results of `make bench` (ctha against
// keepalived + conntrackd, spec/bench.md): the JSON document a run
// writes (with the machine, the versions and each stack's observed
// settings), the summaries (median and range of each figure per stack,
// the ratio of each ctha stack over each baseline), the Markdown tables of
// docs/benchmarks.md and a PNG chart of the longest application gap, one
// colour per stack, drawn with the standard library.
//
// The measurements themselves are Benchmark functions of package
// integration (bench_*_test.go); this package only records and renders.
// A Run is not safe for concurrent use.
package bench
