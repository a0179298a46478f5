package auth

// ReplayWindow is how many sequence numbers below the highest one a
// ReplayGuard remembers: a datagram reordered by less than this is
// accepted once; an older one is rejected.
const ReplayWindow = 1024

// ReplayGuard remembers what a receiver accepted from one peer: the
// highest epoch seen and, within it, the sequence numbers of the last
// ReplayWindow datagrams. Duplicates, datagrams older than the window and
// datagrams of an older epoch are rejected (ErrReplay); a newer epoch (the
// peer restarted) starts afresh.
//
// The zero value accepts every epoch; NewReplayGuard restores the epoch a
// previous run saved (SavePeerEpoch). A ReplayGuard is not safe for
// concurrent use.
type ReplayGuard struct {
	self  uint32 // this node's sender ID; 0: no reflection check
	epoch uint32 // the highest epoch accepted, or the one restored
	seen  bool   // some datagram of epoch was accepted
	top   uint64 // the highest sequence number accepted in epoch
	// Bit s%ReplayWindow is set when sequence number s was accepted, for
	// s in (top-ReplayWindow, top].
	bits [ReplayWindow / 64]uint64
}

// NewReplayGuard returns a guard that rejects epochs below minEpoch, the
// peer's epoch saved by a previous run (0 when there is none).
func NewReplayGuard(minEpoch uint32) *ReplayGuard {
	return &ReplayGuard{epoch: minEpoch}
}

// SetSelf gives the guard this node's own sender ID: Check then rejects
// datagrams bearing it with ErrReflected, since they are this node's own,
// sent back by someone on the path. Without it (or with 0) the check is
// off.
func (g *ReplayGuard) SetSelf(id uint32) { g.self = id }

// Epoch returns the highest peer epoch accepted, or the one the guard was
// created with: what the receiver saves so that a restart does not
// reopen older epochs.
func (g *ReplayGuard) Epoch() uint32 { return g.epoch }

// Check reports whether a datagram with header h, already authenticated
// by Open, may be accepted: nil, ErrReplay or ErrReflected. It does not
// record it.
func (g *ReplayGuard) Check(h Header) error {
	switch {
	case g.self != 0 && h.Sender == g.self:
		return ErrReflected
	case h.Epoch < g.epoch:
		return ErrReplay
	case h.Epoch > g.epoch || !g.seen || h.Seq > g.top:
		return nil
	case g.top-h.Seq >= ReplayWindow, g.has(h.Seq):
		return ErrReplay
	}
	return nil
}

// Accept records h as received: call it once the payload was found valid
// too. A header Check rejects is ignored.
func (g *ReplayGuard) Accept(h Header) {
	if g.Check(h) != nil {
		return
	}
	if h.Epoch > g.epoch {
		g.epoch, g.seen = h.Epoch, false
	}
	switch {
	case !g.seen:
		g.bits = [ReplayWindow / 64]uint64{}
		g.top, g.seen = h.Seq, true
	case h.Seq > g.top:
		if d := h.Seq - g.top; d >= ReplayWindow {
			g.bits = [ReplayWindow / 64]uint64{}
		} else {
			for i := uint64(1); i <= d; i++ { // forget what slides out
				s := g.top + i
				g.bits[s/64%(ReplayWindow/64)] &^= 1 << (s % 64)
			}
		}
		g.top = h.Seq
	}
	g.bits[h.Seq/64%(ReplayWindow/64)] |= 1 << (h.Seq % 64)
}

func (g *ReplayGuard) has(s uint64) bool {
	return g.bits[s/64%(ReplayWindow/64)]&(1<<(s%64)) != 0
}
