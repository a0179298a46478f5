package vrrp

// An interface deleted and created again under the same name (ifupdown or
// networkd rebuilding a VLAN, a bond, a veth) has a new index: a raw
// socket bound to the old one hears nothing more, and addresses added to
// the old one are gone. The member is FAULT from the moment the link
// watch reports the new index (member.stale) until rebind has opened its
// socket and address manager on the new interface; only then may it
// leave FAULT and hear the adverts that decide who is master. A member
// that could not be reopened yet (the interface has no address so far) is
// tried again at every address change and at least every vipCheckEvery.

// rebind reopens member i on its interface as it is now, if it is stale.
func (g *Group) rebind(i int) {
	mb := g.members[i]
	if !mb.stale() {
		return
	}
	// What was opened on the old interface went with it: its sockets
	// are closed (again, on a retry: Close is idempotent), and its
	// addresses are not removed (they are gone). First, because the old
	// address manager's Close restores the interface's ARP settings by
	// name, which are the new interface's (virtual MAC).
	mb.conn.Close()
	mb.vips.Close()
	cn, vips, err := g.reopen(mb.cfg, mb.log)
	if err != nil {
		mb.log.Warn("instance not reopened on its new interface yet; FAULT until it is", "err", err)
		return
	}
	mb.conn, mb.vips, mb.bound = cn, vips, mb.ifindex
	rc := *mb.recv.Load()
	rc.ifindex, rc.own = mb.ifindex, cn.Source()
	mb.recv.Store(&rc)
	mb.m.Primary = cn.Source()
	g.startReader(i, cn)
	mb.log.Info("instance reopened on its new interface", "ifindex", mb.bound, "source", cn.Source())
}

// rebindStale retries the members still stale, and reports whether any
// was reopened.
func (g *Group) rebindStale() bool {
	done := false
	for i, mb := range g.members {
		if mb.stale() {
			g.rebind(i)
			done = done || !mb.stale()
		}
	}
	return done
}
