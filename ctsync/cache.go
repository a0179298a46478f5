package ctsync

import (
	"iter"
	"math/bits"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/wire"
)

// The caches hold up to millions of flows, so they are packed: a
// ct.Flow (112 bytes) under its ct.Key (40 bytes) in a Go map took about
// 335 bytes per entry. Here an entry is its key and a 28-byte entry in a
// dense array without pointers (which the garbage collector does not
// scan), found through an open-addressing index of 8 bytes per slot. The
// original tuple and zone are the key's; the reply tuple is kept as its
// two ports only when its addresses are the original's swapped (no
// address translation), and in a side array otherwise, with the rare
// extra state. See BenchmarkCache1M for the figures.

// entry is a flow less its key.
type entry struct {
	status, timeout, mark uint32
	tcp                   ct.TCPInfo
	_                     uint8
	rsport, rdport        uint16 // the reply's ports (when rare == 0)
	rare                  uint32 // index+1 in rareStore; 0: none
}

// rare is what few flows have: a reply tuple that is not the original's
// addresses swapped (address NAT), and the extra state.
type rare struct {
	reply    ct.Tuple
	hasReply bool
	extra    *ct.Extra
}

// rareStore keeps the rare parts, reusing the places of those freed.
type rareStore struct {
	items []rare
	free  []uint32
}

func (r *rareStore) add(x rare) uint32 {
	if n := len(r.free); n > 0 {
		i := r.free[n-1]
		r.free = r.free[:n-1]
		r.items[i-1] = x
		return i
	}
	r.items = append(r.items, x)
	return uint32(len(r.items))
}

func (r *rareStore) release(i uint32) {
	if i != 0 {
		r.items[i-1] = rare{}
		r.free = append(r.free, i)
	}
}

func (r *rareStore) clear() { *r = rareStore{} }

// pack makes f's entry, replacing old's (0 for none) rare part.
func (r *rareStore) pack(f *ct.Flow, old uint32) entry {
	x := entry{status: f.Status, timeout: f.Timeout, mark: f.Mark, tcp: f.TCP,
		rsport: f.Reply.SrcPort, rdport: f.Reply.DstPort}
	swapped := f.Reply.Src == f.Orig.Dst && f.Reply.Dst == f.Orig.Src &&
		f.Reply.Proto == f.Orig.Proto && f.Reply.V6 == f.Orig.V6
	switch {
	case swapped && f.Extra == nil:
		r.release(old)
	case old != 0:
		r.items[old-1] = rare{reply: f.Reply, hasReply: !swapped, extra: f.Extra}
		x.rare = old
	default:
		x.rare = r.add(rare{reply: f.Reply, hasReply: !swapped, extra: f.Extra})
	}
	return x
}

// unpack rebuilds the flow of key k and entry x.
func (r *rareStore) unpack(k *ct.Key, x *entry) ct.Flow {
	f := ct.Flow{Orig: k.Orig, Zone: k.Zone, Status: x.status, Timeout: x.timeout, Mark: x.mark, TCP: x.tcp}
	f.Reply = ct.Tuple{Src: k.Orig.Dst, Dst: k.Orig.Src, SrcPort: x.rsport, DstPort: x.rdport, Proto: k.Orig.Proto, V6: k.Orig.V6}
	if x.rare != 0 {
		p := &r.items[x.rare-1]
		if p.hasReply {
			f.Reply = p.reply
		}
		f.Extra = p.extra
	}
	return f
}

// cache is this node's flows. It is the protocol's Source: a (re)sent
// message carries each flow's latest state, or its destruction.
type cache struct {
	t table[entry]
	r rareStore
}

// put stores f, replacing the flow of the same key.
func (c *cache) put(f *ct.Flow) {
	k := f.Key()
	p, found := c.t.upsert(&k)
	old := uint32(0)
	if found {
		old = p.rare
	}
	*p = c.r.pack(f, old)
}

// get returns the flow of key k.
func (c *cache) get(k ct.Key) (ct.Flow, bool) {
	p := c.t.find(&k)
	if p == nil {
		return ct.Flow{}, false
	}
	return c.r.unpack(&k, p), true
}

// has reports whether the cache holds key k.
func (c *cache) has(k ct.Key) bool { return c.t.find(&k) != nil }

// del removes key k and reports whether it was there.
func (c *cache) del(k ct.Key) bool {
	x, ok := c.t.remove(&k)
	if ok {
		c.r.release(x.rare)
	}
	return ok
}

func (c *cache) len() int { return c.t.len() }

// clear empties the cache and lets its memory go.
func (c *cache) clear() { c.t.clear(); c.r.clear() }

// keys yields every key; the body may delete the key it is given (and no
// other) or put flows that the cache holds already.
func (c *cache) keys() iter.Seq[ct.Key] {
	return func(yield func(ct.Key) bool) {
		c.t.each(func(k *ct.Key, _ *entry) bool { return yield(*k) })
	}
}

// flows yields every flow; the body may delete the flow it is given.
func (c *cache) flows() iter.Seq[ct.Flow] {
	return func(yield func(ct.Flow) bool) {
		c.t.each(func(k *ct.Key, x *entry) bool { return yield(c.r.unpack(k, x)) })
	}
}

// AppendRecord implements proto.Source.
func (c *cache) AppendRecord(b []byte, k ct.Key) []byte {
	if p := c.t.find(&k); p != nil {
		f := c.r.unpack(&k, p)
		return wire.AppendUpdate(b, &f)
	}
	return wire.AppendDestroy(b, k)
}

// extEntry is one of the peers' flows, with when it was last heard of
// (commit goes most recently active first; in multiprimary, when it was
// last written into the kernel) and which peers hold it.
type extEntry struct {
	entry
	at      int64 // unix nanoseconds
	holders uint8 // a bit per peer (peer.bit)
}

// extCache is the peers' flows.
type extCache struct {
	t      table[extEntry]
	r      rareStore
	counts [MaxPeers]int // flows each peer holds
}

// put stores f, heard of at at (unix nanoseconds) from the peer of bit.
func (c *extCache) put(f *ct.Flow, at int64, bit uint8) {
	k := f.Key()
	p, found := c.t.upsert(&k)
	old, holders := uint32(0), uint8(0)
	if found {
		old, holders = p.rare, p.holders
	}
	c.count(holders, bit)
	*p = extEntry{entry: c.r.pack(f, old), at: at, holders: holders | bit}
}

// hold records that the peer of bit holds key k too; it reports whether
// the cache has k.
func (c *extCache) hold(k ct.Key, bit uint8) bool {
	p := c.t.find(&k)
	if p == nil {
		return false
	}
	c.count(p.holders, bit)
	p.holders |= bit
	return true
}

// count counts bit as a new holder of a flow held by holders.
func (c *extCache) count(holders, bit uint8) {
	if holders&bit == 0 {
		c.counts[bits.TrailingZeros8(bit)]++
	}
}

// release records that the peer of bit no longer holds key k, and
// removes the flow when no peer does; it reports whether it did.
func (c *extCache) release(k ct.Key, bit uint8) bool {
	p := c.t.find(&k)
	if p == nil {
		return false
	}
	if p.holders&bit != 0 {
		p.holders &^= bit
		c.counts[bits.TrailingZeros8(bit)]--
	}
	if p.holders != 0 {
		return false
	}
	c.del(k)
	return true
}

// holdersOf returns the peers that hold key k.
func (c *extCache) holdersOf(k ct.Key) uint8 {
	if p := c.t.find(&k); p != nil {
		return p.holders
	}
	return 0
}

// held returns how many flows the peer of bit holds.
func (c *extCache) held(bit uint8) int { return c.counts[bits.TrailingZeros8(bit)] }

// get returns the flow of key k.
func (c *extCache) get(k ct.Key) (ct.Flow, bool) {
	p := c.t.find(&k)
	if p == nil {
		return ct.Flow{}, false
	}
	return c.r.unpack(&k, &p.entry), true
}

// getAt returns the flow of key k and when it was heard of.
func (c *extCache) getAt(k ct.Key) (ct.Flow, int64, bool) {
	p := c.t.find(&k)
	if p == nil {
		return ct.Flow{}, 0, false
	}
	return c.r.unpack(&k, &p.entry), p.at, true
}

// touch records that key k's flow was heard of (or written) at at.
func (c *extCache) touch(k ct.Key, at int64) {
	if p := c.t.find(&k); p != nil {
		p.at = at
	}
}

// has reports whether the cache holds key k.
func (c *extCache) has(k ct.Key) bool { return c.t.find(&k) != nil }

// del removes key k and returns the flow it held.
func (c *extCache) del(k ct.Key) (ct.Flow, bool) {
	x, ok := c.t.remove(&k)
	if !ok {
		return ct.Flow{}, false
	}
	f := c.r.unpack(&k, &x.entry)
	c.r.release(x.rare)
	for h := x.holders; h != 0; h &= h - 1 {
		c.counts[bits.TrailingZeros8(h)]--
	}
	return f, true
}

func (c *extCache) len() int { return c.t.len() }

// clear empties the cache and lets its memory go.
func (c *extCache) clear() { c.t.clear(); c.r.clear(); c.counts = [MaxPeers]int{} }

// flows yields every flow and when it was last heard of; the body may
// delete the flow it is given (and no other).
func (c *extCache) flows() iter.Seq2[ct.Flow, int64] {
	return func(yield func(ct.Flow, int64) bool) {
		c.t.each(func(k *ct.Key, x *extEntry) bool { return yield(c.r.unpack(k, &x.entry), x.at) })
	}
}

// slice calls f with the flows of the cache's items from index from to
// from+n, with their holders, and returns where the next slice begins
// (table.slice: across changes, a flow may be missed or seen twice).
func (c *extCache) slice(from, n int, f func(f ct.Flow, holders uint8)) (next int) {
	return c.t.slice(from, n, func(k *ct.Key, x *extEntry) { f(c.r.unpack(k, &x.entry), x.holders) })
}

// heldBy yields every flow the peer of bit holds; the body may delete or
// release the flow it is given (and no other).
func (c *extCache) heldBy(bit uint8) iter.Seq[ct.Flow] {
	return func(yield func(ct.Flow) bool) {
		c.t.each(func(k *ct.Key, x *extEntry) bool {
			if x.holders&bit == 0 {
				return true
			}
			return yield(c.r.unpack(k, &x.entry))
		})
	}
}
