package integration

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/integration/flowgen"
	"github.com/ctha/ctha/integration/lab"
	"github.com/ctha/ctha/internal/control"
)

// failRig is the lab of the failover scenarios (issue 6): the example
// pair, fw1 (priority 150) master and fw2 (100) backup, with the strict
// ruleset, background entries in the master's table and 200 live TCP flows
// from the client to the server through the VIPs.
type failRig struct {
	t          *testing.T
	l          *lab.Lab
	cache      string // direct or external
	replicate  bool
	background int
	conf       map[string]string // role -> configuration
	nodes      map[string]*node
	// syncExtra is added to the conntrack_sync block of both nodes.
	syncExtra string
	// env is added to the daemons' environment (startNodeEnv).
	env []string

	client *lab.Proc
	report string
}

const rigFlows = 200

// rigAddrs are the firewalls' own addresses by role and interface: the
// master address their instances advertise.
var rigAddrs = map[string]map[string]netip.Prefix{
	lab.RoleFW1: {"lan": lab.FW1LAN, "wan": lab.FW1WAN},
	lab.RoleFW2: {"lan": lab.FW2LAN, "wan": lab.FW2WAN},
}

// newFailRig starts the pair, fw1 master, and puts background entries in
// fw1's table; with replication it waits until fw2 holds them.
func newFailRig(t *testing.T, cache string, replicate bool, background int) *failRig {
	t.Helper()
	return newFailRigIn(t, newRigLab(t, cache), replicate, background)
}

// newFailRigIn is newFailRig in a lab of the caller's (newRigLabWith).
func newFailRigIn(t *testing.T, r *failRig, replicate bool, background int) *failRig {
	t.Helper()
	r.replicate, r.background = replicate, background
	for _, role := range []string{lab.RoleFW1, lab.RoleFW2} {
		if replicate {
			c := exampleConfig(t, role+".hcl")
			// A restarted node keeps its state directory, as after a reboot.
			r.conf[role] = fmt.Sprintf("state_dir = %q\n", filepath.Join(t.TempDir(), "state")) +
				strings.Replace(c, `cache = "direct"`, fmt.Sprintf("cache = %q\n  %s", r.cache, r.syncExtra), 1)
		} else {
			r.conf[role] = pairOpts{node: role, priority: map[string]int{lab.RoleFW1: 150, lab.RoleFW2: 100}[role], advert: time.Second}.config()
		}
	}
	r.start(lab.RoleFW1)
	waitGroupState(t, r.nodes[lab.RoleFW1], "MASTER", 10*time.Second)
	r.start(lab.RoleFW2)
	waitGroupState(t, r.nodes[lab.RoleFW2], "BACKUP", 5*time.Second)
	if background > 0 {
		c := dialCT(t, r.l.NS(lab.RoleFW1))
		writeFlows(t, c, kernel.Create, backgroundFlows(background))
		if replicate {
			r.waitPeerHolds(lab.RoleFW2, background, 30*time.Second)
		}
	}
	return r
}

// newRigLab makes the rig's lab, with replication in cache mode and no
// node started: for tests that write their own configurations.
func newRigLab(t *testing.T, cache string) *failRig {
	t.Helper()
	return newRigLabWith(t, cache, lab.Options{NoIPv6: true})
}

// newRigLabWith is newRigLab with the lab's options (a ruleset).
func newRigLabWith(t *testing.T, cache string, opts lab.Options) *failRig {
	t.Helper()
	return &failRig{t: t, l: lab.New(t, opts), cache: cache, replicate: true,
		conf: map[string]string{}, nodes: map[string]*node{}}
}

func (r *failRig) start(role string) *node {
	r.t.Helper()
	n := startNodeEnv(r.t, r.l, role, r.conf[role], r.env...)
	r.nodes[role] = n
	return n
}

// backgroundFlows are n established TCP entries of clients that send
// nothing now (table load only): 10.10.1.150+ to 10.10.2.200:80.
func backgroundFlows(n int) []ct.Flow {
	flows := make([]ct.Flow, 0, n)
	const est = ct.StatusConfirmed | ct.StatusSeenReply | ct.StatusAssured
	for i := range n {
		src := netip.AddrFrom4([4]byte{10, 10, 1, byte(150 + i/60000)})
		o := ct.NewTuple(ct.ProtoTCP, src, netip.AddrFrom4([4]byte{10, 10, 2, 200}), uint16(1024+i%60000), 80)
		flows = append(flows, ct.Flow{Orig: o, Reply: o.Reverse(), Status: est, Timeout: 7200,
			TCP: ct.TCPInfo{State: ct.TCPEstablished, WScaleOrig: 7, WScaleRepl: 7,
				FlagsOrig: ct.TCPFlagWindowScale | ct.TCPFlagSACKPerm, FlagsRepl: ct.TCPFlagWindowScale | ct.TCPFlagSACKPerm}})
	}
	return flows
}

// waitPeerHolds waits until role's node holds at least n of its peer's
// states (external cache; in direct mode they are in its kernel too).
func (r *failRig) waitPeerHolds(role string, n int, timeout time.Duration) {
	r.t.Helper()
	err := lab.WaitFor(timeout, 50*time.Millisecond, func() (bool, error) {
		st, err := r.nodes[role].status()
		return err == nil && st.Sync != nil && st.Sync.ExternalEntries >= n, err
	})
	if err != nil {
		st, _ := r.nodes[role].status()
		r.t.Fatalf("%s never held %d of its peer's states: %v (sync %+v)", role, n, err, st.Sync)
	}
}

// startFlows opens the live flows for d and waits until the backup holds
// their states.
func (r *failRig) startFlows(d time.Duration) {
	r.t.Helper()
	dir := r.t.TempDir()
	ready := filepath.Join(dir, "ready")
	r.report = filepath.Join(dir, "report.json")
	r.l.Start(r.t, lab.RoleServer, "flowgen-server", flowgenBin, "server", "-listen", lab.ServerAddr.Addr().String()+":5001")
	time.Sleep(200 * time.Millisecond)
	r.client = r.l.Start(r.t, lab.RoleClient, "flowgen-client", flowgenBin, "client",
		"-connect", lab.ServerAddr.Addr().String()+":5001", "-flows", fmt.Sprint(rigFlows), "-interval", "50ms",
		"-duration", d.String(), "-ready", ready, "-json", r.report)
	if err := lab.WaitFor(15*time.Second, 20*time.Millisecond, func() (bool, error) {
		_, err := os.Stat(ready)
		return err == nil, nil
	}); err != nil {
		r.t.Fatalf("flows not up: %v\n%s", err, r.client.Log())
	}
	if r.replicate {
		r.waitPeerHolds(lab.RoleFW2, r.background+rigFlows, 15*time.Second)
	}
	time.Sleep(300 * time.Millisecond)
}

// afterAdvert waits until phase after the next advert of role's node heard
// on fw2's LAN (or fw1's when role is fw2), as bench.md says: where the
// kill falls between two adverts decides which TCP retransmission step
// the flows hit.
func (r *failRig) afterAdvert(role string, phase time.Duration) {
	r.t.Helper()
	other := map[string]string{lab.RoleFW1: lab.RoleFW2, lab.RoleFW2: lab.RoleFW1}[role]
	src := map[string]netip.Prefix{lab.RoleFW1: lab.FW1LAN, lab.RoleFW2: lab.FW2LAN}[role].Addr()
	r.afterAdvertFrom(role, src, other, phase)
}

// afterAdvertFrom waits until phase after the next advert of role's node,
// sent from src, that observer's LAN captures.
func (r *failRig) afterAdvertFrom(role string, src netip.Addr, observer string, phase time.Duration) {
	r.t.Helper()
	from := src.String() + " >"
	capture := r.l.Start(r.t, observer, "tcpdump-"+role, "tcpdump", "-i", "lan", "-n", "-tt", "-l", "-U", "ip proto 112")
	defer capture.Stop(time.Second)
	var seen time.Time
	if err := lab.WaitFor(5*time.Second, time.Millisecond, func() (bool, error) {
		last := lastCaptured(capture.Log(), "> 224.0.0.18: VRRP", from)
		if seen.IsZero() {
			seen = last
			if seen.IsZero() {
				seen = time.Unix(1, 0) // capture not started yet
			}
			return false, nil
		}
		if last.After(seen) {
			seen = last
			return true, nil
		}
		return false, nil
	}); err != nil {
		r.t.Fatalf("no advert of %s captured in %s: %v\n%s", role, observer, err, capture.Log())
	}
	time.Sleep(time.Until(seen.Add(phase)))
}

// crash kills role's daemon and takes its LAN and WAN links down, as a
// dead machine would; it returns when.
func (r *failRig) crash(role string) time.Time {
	at := time.Now()
	r.nodes[role].proc.Kill()
	r.l.SetLink(role, "lan", false)
	r.l.SetLink(role, "wan", false)
	return at
}

// waitVIPs waits until role holds both VIPs and returns how long after
// from that took.
func (r *failRig) waitVIPs(role string, from time.Time, timeout time.Duration) time.Duration {
	r.t.Helper()
	var took time.Duration
	for _, v := range []struct {
		iface string
		vip   netip.Addr
	}{{"lan", lab.LANVIP.Addr()}, {"wan", lab.WANVIP.Addr()}} {
		d, err := waitVIP(r.l, role, v.iface, v.vip, true, from, timeout)
		if err != nil {
			r.t.Fatalf("%s: %v\n%s", role, err, r.nodes[role].proc.Tail(30))
		}
		took = max(took, d)
	}
	return took
}

// outcome is what the flows saw.
type outcome struct {
	flowgen.Report
	invalid uint64 // INVALID drops on the new master
}

// finish reads the INVALID counter of the new master once the flows have
// had time to recover (their retransmission steps up to 6.6 s), then waits
// for the client and reads its report.
func (r *failRig) finish(newMaster string, event time.Time) outcome {
	r.t.Helper()
	time.Sleep(time.Until(event.Add(9 * time.Second)))
	invalid, err := r.l.InvalidDrops(newMaster)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.client.Wait(); err != nil {
		r.t.Fatalf("flowgen client: %v\n%s", err, r.client.Log())
	}
	b, err := os.ReadFile(r.report)
	if err != nil {
		r.t.Fatal(err)
	}
	var o outcome
	if err := json.Unmarshal(b, &o.Report); err != nil {
		r.t.Fatal(err)
	}
	o.invalid = invalid
	return o
}

// expectSurvived fails the test unless every flow survived and the new
// master dropped none of their packets as INVALID.
func (r *failRig) expectSurvived(o outcome) {
	r.t.Helper()
	if o.Flows != rigFlows || o.Survived != o.Flows {
		r.t.Errorf("%d of %d flows survived, want all %d", o.Survived, o.Flows, rigFlows)
	}
	if o.invalid != 0 {
		r.t.Errorf("the new master dropped %d packets of live flows as INVALID, want none", o.invalid)
	}
}

// retransmitSteps are when a TCP flow that lost packets retransmits,
// after its first loss (bench.md), with the upper ends measured here.
var retransmitSteps = []time.Duration{200 * time.Millisecond, 600 * time.Millisecond, 1400 * time.Millisecond,
	3200 * time.Millisecond, 6600 * time.Millisecond, 13400 * time.Millisecond}

// stepSpread: a step comes up to this much before its upper end (3.0-3.2
// s), so VIPs that move just before the upper end may miss it.
const stepSpread = 200 * time.Millisecond

// firstStepAfter is the first retransmission step the flows can take
// after d (VIPs moved then): the first whose upper end is at least
// stepSpread after d.
func firstStepAfter(d time.Duration) time.Duration {
	for _, s := range retransmitSteps {
		if s >= d+stepSpread {
			return s
		}
	}
	return retransmitSteps[len(retransmitSteps)-1]
}

// checkStatus asserts the fields of `ctha status --json` that the pair's
// state decides: the group's and instances' states and VIP holders, the
// sync peer and its role, the links, no split brain.
func (r *failRig) checkStatus(role, want, peerRole string) control.Status {
	r.t.Helper()
	st, err := r.nodes[role].status()
	if err != nil {
		r.t.Fatalf("%s status: %v", role, err)
	}
	var errs []string
	if st.Node != role {
		errs = append(errs, fmt.Sprintf("node %q", st.Node))
	}
	if len(st.Groups) != 1 || st.Groups[0].Name != "fw" || st.Groups[0].State != want {
		errs = append(errs, fmt.Sprintf("groups %+v, want fw %s", st.Groups, want))
	}
	if len(st.Instances) != 2 {
		errs = append(errs, fmt.Sprintf("%d instances", len(st.Instances)))
	}
	for _, in := range st.Instances {
		if in.State != want {
			errs = append(errs, fmt.Sprintf("instance %s %s", in.Name, in.State))
		}
		mine := rigAddrs[role][in.Name].Addr().String()
		if want == "MASTER" && in.Master != mine || want == "BACKUP" && in.Master == mine {
			errs = append(errs, fmt.Sprintf("instance %s master %q (own address %s)", in.Name, in.Master, mine))
		}
	}
	if r.replicate {
		switch s := st.Sync; {
		case s == nil:
			errs = append(errs, "no sync status")
		default:
			if s.Cache != r.cache || s.Mode != "reliable" {
				errs = append(errs, fmt.Sprintf("sync mode %s cache %s", s.Mode, s.Cache))
			}
			if peerRole != "" && (!s.PeerUp || s.PeerRole != peerRole) {
				errs = append(errs, fmt.Sprintf("peer_up %v peer_role %q, want %s", s.PeerUp, s.PeerRole, peerRole))
			}
			if peerRole == "" && s.PeerUp {
				errs = append(errs, "peer_up with the peer gone")
			}
			if s.SplitBrain {
				errs = append(errs, "split_brain")
			}
			if len(s.Links) != 1 || s.Links[0].Name != "sync0" {
				errs = append(errs, fmt.Sprintf("links %+v", s.Links))
			}
		}
	}
	if len(errs) > 0 {
		r.t.Errorf("%s status: %s", role, strings.Join(errs, "; "))
	}
	return st
}
