package ctsync

import (
	"hash/maphash"

	"github.com/ctha/ctha/ctsync/ct"
)

// table maps flow keys to values of type V: a dense array of items and an
// open-addressing index (linear probing) over it. A slot of the index is
// 0 when empty, else the key's 32-bit hash tag (high half) and the item's
// index + 1 (low half); a key's home slot is its tag modulo the index
// size, so the index grows and deletes shift slots without hashing again.
// Deleting moves the last item into the hole: the items stay dense. The
// items are kept in chunks of a fixed size, so that a large table grows
// without copying what it holds.
//
// The zero table is empty and ready. Not safe for concurrent use.
type table[V any] struct {
	seed   maphash.Seed
	slots  []uint64
	chunks [][]item[V] // all full but the last
	n      int         // items
}

type item[V any] struct {
	k ct.Key
	v V
}

// Index bounds: it starts with minSlots and doubles when more than
// 3/4 full.
const minSlots = 64

// Items per chunk.
const (
	chunkBits = 10
	chunkSize = 1 << chunkBits
)

func (t *table[V]) len() int { return t.n }

// at returns item i.
func (t *table[V]) at(i uint32) *item[V] { return &t.chunks[i>>chunkBits][i&(chunkSize-1)] }

func (t *table[V]) tag(k *ct.Key) uint32 {
	return uint32(maphash.Comparable(t.seed, *k) >> 32)
}

// lookup returns the slot of k, or the empty slot where it would go.
func (t *table[V]) lookup(k *ct.Key, tag uint32) (slot int, found bool) {
	mask := len(t.slots) - 1
	for i := int(tag) & mask; ; i = (i + 1) & mask {
		s := t.slots[i]
		if s == 0 {
			return i, false
		}
		if uint32(s>>32) == tag && t.at(uint32(s)-1).k == *k {
			return i, true
		}
	}
}

// find returns k's value, nil if k is not there.
func (t *table[V]) find(k *ct.Key) *V {
	if t.n == 0 {
		return nil
	}
	i, ok := t.lookup(k, t.tag(k))
	if !ok {
		return nil
	}
	return &t.at(uint32(t.slots[i]) - 1).v
}

// upsert returns k's value, adding a zero one if k was not there; found
// says which. The pointer is good until the next change of the table.
func (t *table[V]) upsert(k *ct.Key) (v *V, found bool) {
	if len(t.slots) == 0 {
		t.seed = maphash.MakeSeed()
		t.slots = make([]uint64, minSlots)
	}
	tag := t.tag(k)
	i, ok := t.lookup(k, tag)
	if ok {
		return &t.at(uint32(t.slots[i]) - 1).v, true
	}
	if (t.n+1)*4 > len(t.slots)*3 {
		t.grow()
		i, _ = t.lookup(k, tag)
	}
	if t.n&(chunkSize-1) == 0 {
		t.chunks = append(t.chunks, make([]item[V], chunkSize))
	}
	it := t.at(uint32(t.n))
	it.k = *k
	t.n++
	t.slots[i] = uint64(tag)<<32 | uint64(t.n)
	return &it.v, false
}

// grow doubles the index.
func (t *table[V]) grow() {
	old := t.slots
	t.slots = make([]uint64, 2*len(old))
	mask := len(t.slots) - 1
	for _, s := range old {
		if s == 0 {
			continue
		}
		i := int(s>>32) & mask
		for t.slots[i] != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = s
	}
}

// remove deletes k and returns the value it had.
func (t *table[V]) remove(k *ct.Key) (v V, found bool) {
	if t.n == 0 {
		return v, false
	}
	i, ok := t.lookup(k, t.tag(k))
	if !ok {
		return v, false
	}
	idx := uint32(t.slots[i]) - 1
	v = t.at(idx).v
	t.unslot(i)
	// Fill the hole with the last item, and point its slot there.
	last := uint32(t.n - 1)
	if idx != last {
		lk := &t.at(last).k
		j, _ := t.lookup(lk, t.tag(lk))
		t.slots[j] = t.slots[j]&^0xffffffff | uint64(idx+1)
		*t.at(idx) = *t.at(last)
	}
	*t.at(last) = item[V]{}
	t.n--
	if t.n&(chunkSize-1) == 0 {
		t.chunks[len(t.chunks)-1] = nil
		t.chunks = t.chunks[:len(t.chunks)-1]
	}
	return v, true
}

// unslot empties slot i, shifting back the slots of the probe run after
// it that may move closer to their home.
func (t *table[V]) unslot(i int) {
	mask := len(t.slots) - 1
	for j := (i + 1) & mask; ; j = (j + 1) & mask {
		s := t.slots[j]
		if s == 0 {
			break
		}
		home := int(s>>32) & mask
		// s may fill hole i when its home is not in (i, j] (cyclically).
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			t.slots[i] = s
			i = j
		}
	}
	t.slots[i] = 0
}

// each calls f with every key and value, the last added first, until f
// returns false. f may remove the key it is given (the last item, already
// seen, takes its place) and update values, but not add keys.
func (t *table[V]) each(f func(k *ct.Key, v *V) bool) {
	for i := t.n - 1; i >= 0; i-- {
		if i >= t.n {
			continue
		}
		it := t.at(uint32(i))
		if !f(&it.k, &it.v) {
			return
		}
	}
}

// slice calls f with the items from index from to from+n (at most the
// last) and returns where the next slice begins, len() after the last.
// A scan by slices across changes of the table may miss items or see
// them twice (a delete moves the last item into the hole).
func (t *table[V]) slice(from, n int, f func(k *ct.Key, v *V)) (next int) {
	end := min(from+n, t.n)
	for i := from; i < end; i++ {
		it := t.at(uint32(i))
		f(&it.k, &it.v)
	}
	return max(end, from)
}

// clear empties the table and lets its memory go.
func (t *table[V]) clear() { t.slots, t.chunks, t.n = nil, nil, 0 }
