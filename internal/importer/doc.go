// Package importer converts a keepalived.conf and a conntrackd.conf into
// one ctha configuration file (`ctha import`).
//
// It owns two small parsers, one for each foreign format, and the mapping
// of their keywords onto ctha's HCL keys. What has no ctha equivalent is
// not dropped silently: it becomes an HCL comment in the output, with the
// reason, and a warning. The output is deterministic: the same inputs give
// the same bytes.
//
// Nothing here keeps state between calls; every function is safe for
// concurrent use.
package importer
