package integration

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/nfqtable"
	"github.com/ctha/ctha/integration/flowgen"
	"github.com/ctha/ctha/integration/lab"
	"github.com/ctha/ctha/internal/control"
)

// Asymmetric paths (multiprimary's defer, README "Asymmetric paths:
// `defer`"): the server answers from asymAddr through group b's WAN VIP
// (fw2), while the client reaches asymAddr through group a's LAN VIP
// (fw1). So every flow's SYN and ACKs cross fw1, its SYN-ACK and the
// server's data fw2, and each node sees one direction.
var asymAddr = netip.MustParsePrefix("10.10.2.102/24")

// asymTable is the server's routing table of the traffic from asymAddr.
const asymTable = "103"

// asymRoutes sets up the asymmetric paths (lab.Options.SplitVIPs gives
// the VIPs).
func asymRoutes(t testing.TB, l *lab.Lab) {
	t.Helper()
	srv, cl := lab.RoleServer, lab.RoleClient
	for _, c := range []struct {
		role string
		argv []string
	}{
		{srv, []string{"addr", "add", asymAddr.String(), "dev", "eth0"}},
		{srv, []string{"route", "add", asymAddr.Masked().String(), "dev", "eth0", "src", asymAddr.Addr().String(), "table", asymTable}},
		{srv, []string{"route", "add", "default", "via", lab.WANVIPB.Addr().String(), "table", asymTable}},
		{srv, []string{"rule", "add", "from", asymAddr.Addr().String(), "table", asymTable}},
		{cl, []string{"route", "add", asymAddr.Addr().String() + "/32", "via", lab.LANVIP.Addr().String()}},
	} {
		l.MustExec(t, c.role, append([]string{"ip"}, c.argv...)...)
	}
}

// asymRun is what one run of asymmetric flows saw.
type asymRun struct {
	rep     flowgen.Report
	invalid map[string]uint64 // INVALID drops on each node during the run
	defers  map[string]*control.DeferStatus
}

func (a asymRun) String() string {
	return fmt.Sprintf("%d/%d flows survived, %d slow handshakes (setup p50 %.1f ms, p99 %.1f ms, max %.1f ms), INVALID drops fw1 %d fw2 %d",
		a.rep.Survived, a.rep.Flows, a.rep.SlowConnects, a.rep.ConnectMs.P50, a.rep.ConnectMs.P99, a.rep.ConnectMs.Max,
		a.invalid[lab.RoleFW1], a.invalid[lab.RoleFW2])
}

// TestDeferAsymmetric: 200 flows without NAT whose SYN crosses fw1 and
// SYN-ACK fw2. With defer, every flow opens without a slow handshake and
// survives, with no INVALID drop on either node: fw1 holds each SYN until
// fw2 has written the state, fw2 each SYN-ACK until fw1 has written
// SYN_RECV. Without defer, the same flows meet INVALID drops and slow
// handshakes (counted and shown). ctha's own nftables table is put back
// when deleted, and removed when ctha stops.
func TestDeferAsymmetric(t *testing.T) {
	lab.RequireNetns(t)
	r := newRigLabWith(t, "direct", lab.Options{NoIPv6: true, SplitVIPs: true})
	asymRoutes(t, r.l)
	dir := t.TempDir()
	r.l.Start(t, lab.RoleServer, "flowgen-server-asym", flowgenBin, "server",
		"-listen", netip.AddrPortFrom(asymAddr.Addr(), 5001).String(), "-ready", filepath.Join(dir, "listening"))
	waitFile(t, filepath.Join(dir, "listening"), 5*time.Second)
	nodes := []string{lab.RoleFW1, lab.RoleFW2}

	run := func(name, deferFor string, check func(asymRun)) {
		for _, role := range nodes {
			conf := mpConfig(role)
			if deferFor != "" {
				conf = strings.Replace(conf, `cache    = "direct"`, `cache    = "direct"
  defer    = "`+deferFor+`"`, 1)
			}
			r.conf[role] = conf
			r.start(role)
		}
		waitMPReady(t, r, nodes, mpGroups)
		before := r.mpInvalid(nodes)
		out := filepath.Join(t.TempDir(), name+".json")
		c := r.l.Start(t, lab.RoleClient, "flowgen-client-asym-"+name, flowgenBin, "client",
			"-connect", netip.AddrPortFrom(asymAddr.Addr(), 5001).String(), "-flows", "200", "-interval", "50ms",
			"-duration", "3s", "-connect-timeout", "20s", "-json", out)
		f := &mpFlows{group: mpGroup{name: "asym"}, client: c, report: out}
		run := asymRun{rep: f.result(t), invalid: r.mpInvalid(nodes), defers: map[string]*control.DeferStatus{}}
		for _, role := range nodes {
			run.invalid[role] -= before[role]
			s, err := syncStatus(r.nodes[role])
			if err != nil {
				t.Fatal(err)
			}
			run.defers[role] = s.Defer
		}
		t.Logf("%s: %v", name, run)
		check(run)
		for _, role := range nodes {
			if err := r.nodes[role].proc.Stop(10 * time.Second); err != nil {
				t.Errorf("%s: stop: %v", role, err)
			}
		}
	}

	run("without defer", "", func(a asymRun) {
		// The paths are asymmetric, and that hurts: otherwise the run
		// with defer proves nothing.
		if a.invalid[lab.RoleFW1]+a.invalid[lab.RoleFW2] == 0 && a.rep.SlowConnects == 0 {
			t.Errorf("without defer no INVALID drop and no slow handshake: are the paths asymmetric?")
		}
		if a.defers[lab.RoleFW1] != nil {
			t.Errorf("sync.defer %+v with defer off, want null", a.defers[lab.RoleFW1])
		}
	})

	// The timeout is a safety net here, generous for a loaded machine: a
	// packet released by it could meet an INVALID drop, which the test
	// would count against defer. What a hold costs, bench-defer measures.
	run("with defer", "100ms", func(a asymRun) {
		if a.rep.Survived != 200 || a.rep.SlowConnects != 0 || a.invalid[lab.RoleFW1] != 0 || a.invalid[lab.RoleFW2] != 0 {
			t.Errorf("with defer: %v; want 200 survived, no slow handshake, no INVALID drop", a)
		}
		for _, role := range nodes {
			d := a.defers[role]
			if d == nil {
				t.Fatalf("%s: no sync.defer in the status", role)
			}
			t.Logf("%s: sync.defer %+v", role, *d)
			// fw1 held the SYNs, fw2 the SYN-ACKs: 200 each at least.
			if d.Held < 200 || d.ReleasedAcked+d.ReleasedTimeout != d.Held || d.ReleasedTimeout != 0 || d.Pending != 0 ||
				d.Queue != 3170 || d.TimeoutMS != 100 || d.P99US <= 0 || d.P99US >= 100000 {
				t.Errorf("%s: sync.defer %+v: want 200 held or more, all released by the peer's answer", role, *d)
			}
		}
		// Every metric of defer the monitoring examples name.
		checkScrapeNames(t, r.l.MustExec(t, lab.RoleFW1, "curl", "-sf", "http://127.0.0.1:9477/metrics"), deferMetrics)

		// An administrator deletes ctha's table: it is put back.
		r.l.MustExec(t, lab.RoleFW1, "nft", "delete", "table", "ip", nfqtable.TableName)
		err := lab.WaitFor(5*time.Second, 20*time.Millisecond, func() (bool, error) {
			s, err := syncStatus(r.nodes[lab.RoleFW1])
			if err != nil || s.Defer == nil || s.Defer.Reinstalls == 0 {
				return false, err
			}
			_, err = r.l.Exec(lab.RoleFW1, "nft", "list", "table", "ip", nfqtable.TableName)
			return err == nil, nil
		})
		if err != nil {
			t.Errorf("ctha's table not put back after its deletion: %v", err)
		}
	})
	// Stopped, ctha leaves no table behind.
	for _, role := range nodes {
		if out := r.l.MustExec(t, role, "nft", "list", "tables"); strings.Contains(out, nfqtable.TableName) {
			t.Errorf("%s: ctha stopped but its table remains:\n%s", role, out)
		}
	}
}
