// Package control is ctha's control socket: the protocol between the daemon
// (`ctha run`) and the commands that talk to it (`ctha status`, ...), and the
// documented JSON shapes those commands print with --json.
//
// The protocol is one JSON request and one JSON response per connection over
// a Unix stream socket that only root can reach (mode 0600). A request
// answered with a Stream (`ctha events`) gets an empty response, then one
// line of JSON per value, until the daemon or the client ends it.
//
// Server runs one goroutine per connection and calls the Handler
// concurrently; Call is safe for concurrent use.
package control
