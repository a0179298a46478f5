package ctsync

import (
	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/wire"
)

// cache is this node's flows. It is the protocol's Source: a (re)sent
// message carries each flow's latest state, or its destruction.
type cache map[ct.Key]ct.Flow

// AppendRecord implements proto.Source.
func (c *cache) AppendRecord(b []byte, k ct.Key) []byte {
	if f, ok := (*c)[k]; ok {
		return wire.AppendUpdate(b, &f)
	}
	return wire.AppendDestroy(b, k)
}

// extEntry is one of the peer's flows, with when it was last heard of
// (commit goes most recently active first).
type extEntry struct {
	flow ct.Flow
	at   int64 // unix nanoseconds
}

// extCache is the peer's flows.
type extCache map[ct.Key]extEntry
