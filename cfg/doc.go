// Package cfg reads ctha's HCL configuration file.
//
// It works in two layers. The file is first decoded into structs that hold
// what the user wrote and where (file, line, column). Validation then turns
// those into a Config: plain runtime values with every default applied
// (defaults.go holds them all) that the rest of ctha receives by value.
//
// Every problem is reported as an hcl.Diagnostic with its position, and all
// of them are collected: a file with five mistakes yields five diagnostics.
// A Config is usable only when the diagnostics hold no error; warnings (such
// as insecure_no_auth) do not prevent running.
//
// ParseWith and LoadWith can also hold the configuration against the
// machine it is for (host.go, `ctha check`): the interfaces and their
// addresses, the commands. They ask the machine through the Host
// interface; this package never looks at it itself. Options.Offline reads
// nothing of the machine, not even the key file.
//
// Everything here is pure apart from reading the file and the sync key file;
// it is safe for concurrent use.
package cfg
