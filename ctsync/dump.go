package ctsync

import (
	"context"
	"slices"

	"github.com/ctha/ctha/ctsync/ct"
)

// Caches: which cache Dump lists.
const (
	CacheInternal = "internal"
	CacheExternal = "external"
)

// Dump returns a copy of a cache's flows ("internal": this node's,
// "external": the peer's), ordered by original tuple.
func (e *Engine) Dump(ctx context.Context, which string) ([]ct.Flow, error) {
	var out []ct.Flow
	err := e.do(ctx, func() {
		if which == CacheInternal {
			out = slices.AppendSeq(out, e.internal.flows())
			return
		}
		for f := range e.external.flows() {
			out = append(out, f)
		}
	})
	slices.SortFunc(out, func(a, b ct.Flow) int { return compareTuple(a.Orig, b.Orig) })
	return out, err
}

func compareTuple(a, b ct.Tuple) int {
	for _, c := range []int{
		slices.Compare(a.Src[:], b.Src[:]), slices.Compare(a.Dst[:], b.Dst[:]),
		int(a.Proto) - int(b.Proto), int(a.SrcPort) - int(b.SrcPort), int(a.DstPort) - int(b.DstPort),
	} {
		if c != 0 {
			return c
		}
	}
	return 0
}
