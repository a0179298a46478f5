package integration

import (
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/lab"
)

// TestKeepalivedAuthInterop runs ctha (fw1) and keepalived 2.2.7 (fw2,
// priority 100) as one VRRPv2 router with authentication, PASS and AH,
// in both directions: keepalived master with ctha backup (priority 50),
// then ctha master (priority 150) with keepalived backup; neither rejects
// the other's adverts. Then a wrong password: each drops the other's
// adverts, counted and logged, and both are master, as two keepalived
// would be. With AH, last, the restart against keepalived's sequence
// check: ctha killed and started again at once, its counter back at 0
// while keepalived's is at the last number it heard.
func TestKeepalivedAuthInterop(t *testing.T) {
	lab.RequireNetns(t)
	lab.RequireCommands(t, "keepalived")
	for _, typ := range []string{"pass", "ah"} {
		t.Run(typ, func(t *testing.T) { authInterop(t, typ) })
	}
}

func authInterop(t *testing.T, typ string) {
	const advert = time.Second
	const password = "secret1"
	l := lab.New(t, lab.Options{NoIPv6: true})
	vip := lab.LANVIP
	startCtha := func(prio int, pw string) *node {
		return startNode(t, l, lab.RoleFW1, pairOpts{node: "fw1", priority: prio, advert: advert, version: 2,
			lanOnly: true, authType: typ, password: pw}.config())
	}
	ka := l.StartKeepalived(t, lab.RoleFW2, lab.KeepalivedConfig{Instances: []lab.KeepalivedInstance{{
		Name: "lan", Interface: "lan", VRID: 51, Priority: 100, Version: 2, AdvertInterval: advert,
		VIPs: []netip.Prefix{vip}, AuthType: strings.ToUpper(typ), AuthPass: password,
	}}})
	fw2HasVIP := func() bool { has, _ := l.HasAddr(lab.RoleFW2, "lan", vip.Addr()); return has }

	// keepalived master, ctha backup: ctha accepts keepalived's adverts.
	if _, err := waitVIP(l, lab.RoleFW2, "lan", vip.Addr(), true, time.Now(), masterDownInterval(100, advert)+5*time.Second); err != nil {
		t.Fatalf("keepalived did not become master: %v\n%s", err, ka.Tail(30))
	}
	ctha := startCtha(50, password)
	holdState(t, ctha, "lan", "BACKUP", masterDownInterval(50, advert)+300*time.Millisecond)
	checkAuthDrops(t, ctha)

	// ctha master, keepalived backup: keepalived accepts ctha's adverts
	// (with AH: those of a ctha started again, whose counter continues
	// above what keepalived sent).
	if err := ctha.proc.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	ctha = startCtha(150, password)
	waitState(t, ctha, "lan", "MASTER", masterDownInterval(150, advert)+3*time.Second)
	if _, err := waitVIP(l, lab.RoleFW2, "lan", vip.Addr(), false, time.Now(), 2*time.Second); err != nil {
		t.Fatalf("keepalived kept the VIP: %v\n%s", err, ka.Tail(30))
	}
	holdState(t, ctha, "lan", "MASTER", masterDownInterval(100, advert)+200*time.Millisecond)
	if fw2HasVIP() {
		t.Fatalf("keepalived took the VIP while ctha was master: it rejects ctha's adverts\n%s", ka.Tail(30))
	}
	for _, line := range regexp.MustCompile(`.*\n`).FindAllString(ka.Log(), -1) {
		if keepalivedComplaint.MatchString(line) || strings.Contains(line, "already processed") {
			t.Errorf("keepalived complained: %s", line)
		}
	}

	if typ == "ah" {
		ctha = ahFastRestart(t, l, ka, ctha, startCtha, password)
	}

	// Another password: each side drops the other's adverts, and both
	// become master.
	if err := ctha.proc.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := waitVIP(l, lab.RoleFW2, "lan", vip.Addr(), true, time.Now(), 3*time.Second); err != nil {
		t.Fatalf("keepalived did not take over from the stopped ctha: %v", err)
	}
	kaLogBefore := len(ka.Log())
	ctha = startCtha(50, "wrong12")
	waitState(t, ctha, "lan", "MASTER", masterDownInterval(50, advert)+3*time.Second)
	if !fw2HasVIP() {
		t.Errorf("keepalived left master: it accepted an advert with another password\n%s", ka.Tail(30))
	}
	if n := vrrpDrops(t, ctha)["auth"]; n == 0 {
		t.Errorf("ctha counted no auth drop of keepalived's adverts")
	}
	if !strings.Contains(ctha.proc.Log(), "failed authentication") {
		t.Errorf("ctha did not log the failed authentication:\n%s", ctha.proc.Tail(30))
	}
	want := map[string]string{"pass": "invalid passwd", "ah": "invalid IPSEC HMAC-MD5"}[typ]
	if err := lab.WaitFor(3*time.Second, 100*time.Millisecond, func() (bool, error) {
		return strings.Contains(ka.Log()[kaLogBefore:], want), nil
	}); err != nil {
		t.Errorf("keepalived did not log %q about ctha's adverts:\n%s", want, ka.Tail(20))
	}
}

// ahFastRestart kills the master ctha (priority 150, its counter at N)
// and starts it again at once, before keepalived's Master_Down_Interval
// ends: ctha's new adverts start at 1, which keepalived drops as replays,
// so keepalived becomes master and sends N+1; ctha accepts that, sends
// above it and is master again. It measures how long keepalived held the
// VIP meanwhile, and that the pair settles.
func ahFastRestart(t *testing.T, l *lab.Lab, ka *lab.Proc, ctha *node, startCtha func(int, string) *node, password string) *node {
	t.Helper()
	const advert = time.Second
	kaLogBefore := len(ka.Log())
	start := time.Now()
	if err := ctha.proc.Kill(); err != nil { // a crash: no priority-0 advert
		t.Fatal(err)
	}
	ctha = startCtha(150, password)
	var vipSince, vipFor time.Duration // when fw2 took the VIP, for how long in all
	held := false
	deadline := start.Add(2*masterDownInterval(100, advert) + 4*time.Second)
	settled := time.Time{}
	for time.Now().Before(deadline) {
		has, _ := l.HasAddr(lab.RoleFW2, "lan", lab.LANVIP.Addr())
		switch {
		case has && !held:
			held, vipSince = true, time.Since(start)
		case !has && held:
			held = false
			vipFor += time.Since(start) - vipSince
		}
		if !has && ctha.states()["lan"] == "MASTER" {
			if settled.IsZero() {
				settled = time.Now()
			} else if time.Since(settled) > 3*advert/2 {
				break
			}
		} else {
			settled = time.Time{}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if held || settled.IsZero() {
		t.Fatalf("after ctha's restart the pair did not settle with ctha master: keepalived holds the VIP %v, ctha %v\n%s\n%s",
			held, ctha.states(), ka.Tail(20), ctha.proc.Tail(20))
	}
	kaLog := ka.Log()[kaLogBefore:]
	replays := strings.Count(kaLog, "already processed")
	t.Logf("figure: AH fast restart: keepalived dropped %d of the new ctha's adverts as replays, became master %d times, held the VIP for %v as seen in 20 ms polls; ctha master and keepalived backup again %v after the kill",
		replays, strings.Count(kaLog, "Entering MASTER STATE"), vipFor.Round(10*time.Millisecond), settled.Sub(start).Round(10*time.Millisecond))
	// Which comes first is a race: ctha's first advert (its
	// Master_Down_Interval after its start), dropped as a replay, or
	// keepalived's timeout (its Master_Down_Interval after the last
	// advert it accepted), after which it is master until ctha hears it
	// and answers above its number. Either way keepalived is master for
	// less than an advert interval or so, never longer than its own
	// Master_Down_Interval.
	if limit := masterDownInterval(100, advert); vipFor > limit {
		t.Errorf("keepalived held the VIP for %v after ctha's restart, more than %v", vipFor, limit)
	}
	return ctha
}

// vrrpDrops returns the node's drop counters of instance "lan".
func vrrpDrops(t *testing.T, n *node) map[string]uint64 {
	t.Helper()
	var st struct {
		VRRP []struct {
			Instance string            `json:"instance"`
			Drops    map[string]uint64 `json:"drops"`
		} `json:"vrrp"`
	}
	if err := n.ctlJSON(&st, "stats", "--json"); err != nil {
		t.Fatal(err)
	}
	for _, s := range st.VRRP {
		if s.Instance == "lan" {
			return s.Drops
		}
	}
	t.Fatalf("no stats for instance lan")
	return nil
}

// checkAuthDrops asserts the node received keepalived's adverts and
// dropped none for a wire-format reason, authentication included, nor
// for an AH sequence number.
func checkAuthDrops(t *testing.T, n *node) {
	t.Helper()
	checkNoProtocolDrops(t, n, "lan")
	if d := vrrpDrops(t, n)["sequence"]; d != 0 {
		t.Errorf("ctha dropped %d of keepalived's adverts for their sequence number", d)
	}
}
