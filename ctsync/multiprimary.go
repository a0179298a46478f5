package ctsync

import (
	"time"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
)

// Multiprimary. Every node forwards its own flows; a flow's packets may
// cross one node, then (after a failover, or a change of the upstream
// split) another. So no role says whose state of a flow counts: any
// node's update does, and the rules below keep the nodes' tables equal
// without letting a late or idle node undo a live flow.
//
//   - A node's own flows are those its kernel reports events for (not its
//     own writes, which the listener ignores) or whose timeouts its
//     traffic refreshes (the checks below): the internal cache. It
//     replicates their changes, as in primary-backup.
//   - A peer's update goes straight into the kernel unless this node has
//     the flow as its own: then it is written only if it is ahead of the
//     own state (progress, below), as an update in place, never a
//     replacement of the live entry. A TCP state never moves backwards
//     (pfsync's rule): a late update cannot undo a newer one.
//   - A peer's destroy deletes only a mirror: a flow this node forwards
//     too ends by its own kernel's judgement (its peer's FIN or RST came
//     as updates first, and its entry expires by its own timeout).
//   - A mirror that vanishes here (it expired, nobody forwarding it) is
//     forgotten, never reported to the peer as destroyed.
//   - When the peer restarts, this node adopts every flow it holds of the
//     peer's previous run: the restarted node may have lost its table (a
//     reboot), and this node's copy, which the peer asks for at once,
//     gives them back. Otherwise the new run's copy, which lacks them,
//     would delete them here too: an idle SSH session of the dead node,
//     say, would be lost on both.
//
// Timeouts. An established TCP flow's packets refresh its timeout without
// an event, so events alone cannot tell who forwards a flow. The mirror
// check (mirrorcheck.go: every mpCheckEvery, the mirrors under
// refreshBelow and those of dead peers) and the reconciling dump (every reconcileEvery, all of
// them) compare a mirror's timeout in the kernel with what was written
// (the peer's timeout, less the time since):
//   - a timeout longer by more than adoptSlack means packets crossed this
//     node: the flow is adopted (made this node's own and sent to the
//     peer), so that a node that takes over a dead node's traffic also
//     replicates it, and a node that rejoins gets it in the bulk copy;
//   - otherwise, while the peer is up, a short timeout (under
//     refreshBelow) is written again, so a flow the peer forwards never
//     expires here; while the peer is down it is not: the dead node's
//     flows that nobody forwards expire by their own timeouts.

const (
	// adoptSlack: how much longer than written a mirror's timeout must be
	// to count as refreshed by this node's traffic (kernel timeouts are
	// whole seconds; a write is queued a moment before it is made).
	adoptSlack = 3 // seconds
)

// progress compares two states of one flow: +1 when b is ahead of a, -1
// when it is behind, 0 when neither (the same state, or no order). TCP
// states are ordered by how far the connection went, except that a new
// SYN_SENT after CLOSE or TIME_WAIT is a new connection on the same tuple
// (the kernel reopens the entry too): ahead, as CLOSE after SYN_SENT (a
// refused connection) is; between the two the later update wins.
// Otherwise the SEEN_REPLY
// and ASSURED bits only ever get set.
func progress(a, b *ct.Flow) int {
	if a.Orig.Proto == ct.ProtoTCP {
		if reopens(a.TCP.State, b.TCP.State) {
			return 1 // and SYN_SENT to CLOSE (refused) is ahead too: the later one wins
		}
		if ra, rb := tcpRank(a.TCP.State), tcpRank(b.TCP.State); ra != rb {
			if rb > ra {
				return 1
			}
			return -1
		}
	}
	const bits = ct.StatusSeenReply | ct.StatusAssured
	sa, sb := a.Status&bits, b.Status&bits
	switch {
	case sa == sb:
		return 0
	case sb&^sa != 0 && sa&^sb == 0:
		return 1
	case sa&^sb != 0 && sb&^sa == 0:
		return -1
	}
	return 0
}

// reopens reports whether TCP state to after from is a new connection on
// the tuple: a SYN after the end of the previous one (conntrack's
// tcp_conntracks: SYN in CLOSE or TIME_WAIT -> SYN_SENT).
func reopens(from, to uint8) bool {
	return (from == ct.TCPClose || from == ct.TCPTimeWait) && (to == ct.TCPSynSent || to == ct.TCPSynSent2)
}

// tcpRank orders conntrack's TCP states by how far a connection went.
func tcpRank(s uint8) int {
	switch s {
	case ct.TCPSynSent, ct.TCPSynSent2:
		return 1
	case ct.TCPSynRecv:
		return 2
	case ct.TCPEstablished:
		return 3
	case ct.TCPFinWait, ct.TCPCloseWait:
		return 4
	case ct.TCPLastAck:
		return 5
	case ct.TCPTimeWait:
		return 6
	case ct.TCPClose:
		return 7
	}
	return 0 // NONE, or a state this version does not know
}

// mpUpdate applies an update of flow r from the peer of bit
// (multiprimary) and returns the kernel write it needs, if any.
func (e *Engine) mpUpdate(r *ct.Flow, now int64, bit uint8) (flowOp, bool) {
	k := r.Key()
	own, ok := e.internal.get(k)
	if !ok {
		// A mirror. Another peer's newer state of it (the flow moved
		// between two peers, whose updates need not arrive in order)
		// is not undone either.
		if cur, held := e.external.get(k); held && progress(&cur, r) < 0 {
			e.external.hold(k, bit)
			e.stats.staleUpdates.Add(1)
			return flowOp{}, false
		}
		e.external.put(r, now, bit)
		return flowOp{kernel.Create, *r}, true
	}
	e.external.put(r, now, bit)
	switch progress(&own, r) {
	case 1:
		// Ahead of this node's state: written in place (a replacement
		// would drop the live entry for a moment), and taken as the own
		// state so that the next dump does not send it back.
		e.internal.put(r)
		return flowOp{kernel.Update, *r}, true
	case -1:
		e.stats.staleUpdates.Add(1)
	}
	return flowOp{}, false
}

// mpDestroy applies the destroy of key k by the peer of bit
// (multiprimary) and returns the kernel delete it needs, if any: a mirror
// goes once no peer holds it.
func (e *Engine) mpDestroy(k ct.Key, bit uint8) (flowOp, bool) {
	f, ok := e.external.get(k)
	if !ok || !e.external.release(k, bit) || e.internal.has(k) {
		return flowOp{}, false
	}
	return flowOp{kernel.Delete, f}, true
}

// adoptPeer makes the flows peer p holds this node's own (p restarted).
func (e *Engine) adoptPeer(p *peer) {
	n := 0
	for f := range e.external.heldBy(p.bit) {
		if k := f.Key(); !e.internal.has(k) {
			e.internal.put(&f)
			n++
		}
	}
	if n > 0 {
		e.stats.adopted.Add(uint64(n))
		e.log.Info("the peer restarted: its previous run's flows are this node's now, and in its copy",
			"peer", p.name(), "flows", n)
	}
}

// mpDumped classifies a flow of the kernel's dump that a peer also holds
// (multiprimary): adopted reports that this node's traffic refreshed it;
// refresh, that it should be written again with the peer's timeout
// (upMask: the peers that are up).
func (e *Engine) mpDumped(f *ct.Flow, now time.Time, upMask uint8) (adopted, refresh bool, peer ct.Flow) {
	k := f.Key()
	peer, at, ok := e.external.getAt(k)
	if !ok {
		return false, false, peer
	}
	elapsed := int64(now.Sub(time.Unix(0, at)) / time.Second)
	expected := int64(peer.Timeout) - elapsed
	if int64(f.Timeout) > expected+adoptSlack {
		return true, false, peer
	}
	live := e.external.holdersOf(k)&upMask != 0
	return false, live && peer.Timeout < refreshBelow && f.Timeout < peer.Timeout, peer
}
