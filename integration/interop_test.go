package integration

import (
	"fmt"
	"net/netip"
	"regexp"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/lab"
)

// keepalivedComplaint matches what keepalived 2.2.7 logs about an advert
// it rejects or distrusts ("Invalid VRRPv3 checksum", "vrrp packet too
// short", "invalid TTL/HL", "wrong version", "advertisement interval
// mismatch", "Invalid packet type", "received an unexpected ip number
// count", "ip address associated with VRID ... not present in MASTER
// advert", ...: the strings of its vrrp.c).
var keepalivedComplaint = regexp.MustCompile(`(?i)checksum|invalid|packet too|wrong version|mismatch|unexpected|not present in MASTER advert|not a unicast peer|auth, expecting`)

// cthaProtocolDrops are the drop reasons that would mean ctha and keepalived
// disagree on the wire format.
var cthaProtocolDrops = []string{"checksum", "version", "length", "type", "family", "interval", "auth", "source"}

// TestKeepalivedInterop runs ctha and real keepalived 2.2.7 as the two
// nodes of one virtual router: the higher priority wins whichever
// implementation it is, each takes over when the other is killed, and
// neither side rejects the other's adverts.
func TestKeepalivedInterop(t *testing.T) {
	lab.RequireNetns(t)
	lab.RequireCommands(t, "keepalived")
	variants := []struct {
		name    string
		version int
		v6      bool
		advert  time.Duration
	}{
		{"v2-ipv4", 2, false, time.Second},
		{"v3-ipv4", 3, false, 200 * time.Millisecond},
		{"v3-ipv6", 3, true, 200 * time.Millisecond},
	}
	for _, v := range variants {
		for _, cthaMaster := range []bool{true, false} {
			name := fmt.Sprintf("%s/keepalived-master", v.name)
			if cthaMaster {
				name = fmt.Sprintf("%s/ctha-master", v.name)
			}
			t.Run(name, func(t *testing.T) {
				interopRound(t, v.version, v.v6, v.advert, cthaMaster)
			})
		}
	}
}

func interopRound(t *testing.T, version int, v6 bool, advert time.Duration, cthaMaster bool) {
	l := lab.New(t, lab.Options{NoIPv6: !v6})
	vip := lab.LANVIP
	name := "lan"
	if v6 {
		vip, name = lab.LANVIP6, "lan6"
	}
	// fw1 has priority 150, fw2 100; ctha runs on fw1 when it is to be master.
	cthaRole, kaRole, cthaPrio, kaPrio := lab.RoleFW1, lab.RoleFW2, 150, 100
	if !cthaMaster {
		cthaRole, kaRole, cthaPrio, kaPrio = lab.RoleFW2, lab.RoleFW1, 100, 150
	}
	startKA := func() *lab.Proc {
		return l.StartKeepalived(t, kaRole, lab.KeepalivedConfig{Instances: []lab.KeepalivedInstance{{
			Name: name, Interface: "lan", VRID: 51, Priority: kaPrio, Version: version,
			AdvertInterval: advert, VIPs: []netip.Prefix{vip},
		}}})
	}
	startCtha := func() *node {
		return startNode(t, l, cthaRole, pairOpts{node: cthaRole, priority: cthaPrio, advert: advert,
			version: version, v6: v6, lanOnly: true}.config())
	}
	mdi := masterDownInterval(100, advert)

	// The master starts first and takes the VIP; then the backup joins.
	var (
		ctha *node
		ka   *lab.Proc
	)
	if cthaMaster {
		ctha = startCtha()
		waitState(t, ctha, name, "MASTER", mdi+3*time.Second)
		ka = startKA()
	} else {
		ka = startKA()
		if _, err := waitVIP(l, kaRole, "lan", vip.Addr(), true, time.Now(), mdi+5*time.Second); err != nil {
			t.Fatalf("keepalived did not become master: %v\n%s", err, ka.Tail(30))
		}
		ctha = startCtha()
	}
	// Both settle; the higher priority keeps the VIP for several intervals.
	time.Sleep(2 * mdi)
	wantState := map[bool]string{true: "MASTER", false: "BACKUP"}[cthaMaster]
	holdState(t, ctha, name, wantState, 3*advert)
	if has, _ := l.HasAddr(lab.RoleFW1, "lan", vip.Addr()); !has {
		t.Fatalf("the priority-150 node (fw1) does not hold the VIP")
	}
	if has, _ := l.HasAddr(lab.RoleFW2, "lan", vip.Addr()); has {
		t.Fatalf("the priority-100 node (fw2) holds the VIP too")
	}

	// Kill the master like a crash; the other implementation takes over.
	start := time.Now()
	if cthaMaster {
		ctha.proc.Kill()
	} else {
		ka.Kill()
	}
	l.SetLink(lab.RoleFW1, "lan", false)
	took, err := waitVIP(l, lab.RoleFW2, "lan", vip.Addr(), true, start, mdi+5*time.Second)
	if err != nil {
		t.Fatalf("takeover by fw2: %v\n%s", err, ka.Tail(30))
	}
	t.Logf("kill -> VIP on fw2 (%s): %v (Master_Down_Interval %v)",
		map[bool]string{true: "keepalived", false: "ctha"}[cthaMaster], took.Round(time.Millisecond), mdi)
	if limit := mdi + 250*time.Millisecond; took > limit {
		t.Errorf("takeover took %v, more than %v", took, limit)
	}

	// Neither side rejected the other's adverts. (A killed ctha's
	// counters are gone; its peer keepalived's log still speaks.)
	if !cthaMaster {
		checkNoProtocolDrops(t, ctha, name)
	}
	for _, line := range regexp.MustCompile(`.*\n`).FindAllString(ka.Log(), -1) {
		if keepalivedComplaint.MatchString(line) {
			t.Errorf("keepalived complained: %s", line)
		}
	}
}

// checkNoProtocolDrops asserts that the node received adverts and dropped
// none for a reason that would mean a wire-format disagreement.
func checkNoProtocolDrops(t *testing.T, n *node, instance string) {
	t.Helper()
	var st struct {
		VRRP []struct {
			Instance        string            `json:"instance"`
			AdvertsReceived uint64            `json:"adverts_received"`
			AddrMismatch    uint64            `json:"address_list_mismatch"`
			Drops           map[string]uint64 `json:"drops"`
		} `json:"vrrp"`
	}
	if err := n.ctlJSON(&st, "stats", "--json"); err != nil {
		t.Fatal(err)
	}
	for _, s := range st.VRRP {
		if s.Instance != instance {
			continue
		}
		if s.AdvertsReceived == 0 {
			t.Errorf("%s: received no advert from keepalived", instance)
		}
		if s.AddrMismatch != 0 {
			t.Errorf("%s: %d adverts with another address list", instance, s.AddrMismatch)
		}
		for _, reason := range cthaProtocolDrops {
			if n := s.Drops[reason]; n != 0 {
				t.Errorf("%s: dropped %d of keepalived's adverts for %q", instance, n, reason)
			}
		}
		return
	}
	t.Errorf("no stats for instance %s", instance)
}
