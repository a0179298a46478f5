// Package events is ctha's event bus: what `ctha events` streams. The
// daemon publishes what happened (a transition, a peer that came up, a
// VIP put back, a reload) and every reader connected to the control
// socket gets it.
//
// Publishing never blocks and never waits for a reader: each subscriber
// has a bounded buffer, and a subscriber whose buffer is full is dropped.
// It still gets what its buffer holds, then one final error event saying
// how many events it missed, and then its stream ends (the reader is told
// to reconnect and read the status again).
//
// Bus and Sub are safe for concurrent use. The bus starts no goroutine.
package events
