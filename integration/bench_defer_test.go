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

	"github.com/ctha/ctha/integration/bench"
	"github.com/ctha/ctha/integration/flowgen"
	"github.com/ctha/ctha/integration/lab"
	"github.com/ctha/ctha/internal/control"
)

// BenchmarkDefer measures what multiprimary's defer costs a new flow,
// with defer off and on in the same run, through the multiprimary pair:
//
//   - the load: new flows at a fixed rate (20k/s by default) for
//     deferRunFor, each a UDP datagram to the next port of a range (each
//     one a new conntrack entry, replicated, and with defer held until the
//     peer has written it);
//   - the probe: TCP handshakes at 500/s, each timed from connect(2) to
//     established (flowgen rate, connections closed by a reset), whose
//     SYN and SYN-ACK defer holds;
//   - symmetric paths (both directions through fw1, group a): the
//     handshake time with defer on against off under the load is what
//     defer adds per new flow (fw1 holds the SYN, then the SYN-ACK, each
//     until fw2 has written its state);
//   - asymmetric paths (SYN through fw1, SYN-ACK through fw2): defer on
//     only, the case it exists for (off, every handshake loses its SYN-ACK);
//   - the highest load, off and on: rates stepped up until the load is no
//     longer sent in full, a probe fails or is slow (a retransmission), or
//     (on) more than 1 % of the held packets wait out the timeout.
//
// A handshake crossing the pair without a hold costs a round trip through
// two veths; a probe is new flow like the load's.
//
// The firewalls' namespaces get short timeouts for UDP, SYN_SENT,
// SYN_RECV, CLOSE and TIME_WAIT, so that the table stays under 200k
// entries (nf_conntrack_max is the host's), and a ruleset that lets the
// load through. Run it with `make bench-defer`; with CTHA_BENCH_OUT=DIR it
// writes DIR/defer/defer-DATE.json.
func BenchmarkDefer(b *testing.B) {
	lab.RequireNetns(b)
	l := lab.New(b, lab.Options{NoIPv6: true, SplitVIPs: true, Ruleset: strings.Replace(lab.DefaultRuleset,
		"\t\tmeta l4proto", "\t\tiifname \"lan\" udp dport 10000-60000 ct state new accept\n\t\tmeta l4proto", 1)})
	asymRoutes(b, l)
	for _, role := range []string{lab.RoleFW1, lab.RoleFW2} {
		l.MustExec(b, role, "sysctl", "-q", "net.netfilter.nf_conntrack_udp_timeout=3",
			"net.netfilter.nf_conntrack_tcp_timeout_syn_sent=5", "net.netfilter.nf_conntrack_tcp_timeout_syn_recv=5",
			"net.netfilter.nf_conntrack_tcp_timeout_close=1", "net.netfilter.nf_conntrack_tcp_timeout_time_wait=1")
	}
	// Ten client addresses: ten times the ephemeral ports and load flows.
	var sources []string
	for i := range 10 {
		a := netip.AddrFrom4([4]byte{10, 10, 1, byte(110 + i)})
		l.MustExec(b, lab.RoleClient, "ip", "addr", "add", a.String()+"/24", "dev", "eth0")
		sources = append(sources, a.String())
	}
	dir := b.TempDir()
	for _, a := range []netip.Addr{lab.ServerAddr.Addr(), asymAddr.Addr()} {
		ready := filepath.Join(dir, "listening-"+a.String())
		l.Start(b, lab.RoleServer, "flowgen-sink-"+a.String(), flowgenBin, "sink",
			"-listen", netip.AddrPortFrom(a, 5001).String(), "-ready", ready)
		waitFile(b, ready, 5*time.Second)
	}

	rate, steps := deferRates(b)
	res := deferResults{Machine: bench.CurrentMachine(), LoadStart: bench.LoadAverage(), RunForS: deferRunFor.Seconds(),
		Rate: rate, ProbeRate: deferProbeRate,
		Settings: "multiprimary pair (split VIPs, 1 s adverts, direct cache, reliable mode); defer = \"20ms\" when on; " +
			"load: new UDP flows (a datagram each, ports 10000-60000, 10 client addresses); " +
			"probe: flowgen rate TCP handshakes at 500/s, connect(2) to established, closed by a reset; " +
			"firewall timeouts UDP 3 s, SYN_SENT/SYN_RECV 5 s, CLOSE/TIME_WAIT 1 s"}
	cell := func(name, server, deferFor string, load int) deferCell {
		c := deferRateCell(b, l, server, deferFor, load, sources)
		c.Name = name
		b.Logf("%-24s load %6d/s: %s", name, load, c)
		res.Cells = append(res.Cells, c)
		return c
	}
	for range b.N {
		off := cell("symmetric, defer off", lab.ServerAddr.Addr().String(), "", rate)
		on := cell("symmetric, defer on", lab.ServerAddr.Addr().String(), "20ms", rate)
		asym := cell("asymmetric, defer on", asymAddr.Addr().String(), "20ms", rate)
		res.AddedP50Us = on.Report.HandshakeUs.P50 - off.Report.HandshakeUs.P50
		res.AddedP99Us = on.Report.HandshakeUs.P99 - off.Report.HandshakeUs.P99
		b.Logf("added per new flow at %d new flows/s (symmetric, on - off): p50 %+.0f us, p99 %+.0f us (off: p50 %.0f us, p99 %.0f us); asymmetric with defer: p50 %.0f us, p99 %.0f us",
			rate, res.AddedP50Us, res.AddedP99Us, off.Report.HandshakeUs.P50, off.Report.HandshakeUs.P99,
			asym.Report.HandshakeUs.P50, asym.Report.HandshakeUs.P99)
		for _, mode := range []struct {
			name, deferFor string
			best           *int
		}{{"off", "", &res.MaxRateOff}, {"on", "20ms", &res.MaxRateOn}} {
			for _, r := range steps {
				c := cell("highest load, defer "+mode.name, lab.ServerAddr.Addr().String(), mode.deferFor, r)
				if !c.kept() {
					break
				}
				*mode.best = r
			}
		}
		b.Logf("highest new-flow rate kept: defer off %d/s, defer on %d/s (ratio on/off %s)", res.MaxRateOff, res.MaxRateOn,
			bench.FormatRatio(float64(res.MaxRateOn)/float64(res.MaxRateOff)))
	}
	res.LoadEnd = bench.LoadAverage()
	b.ReportMetric(res.AddedP50Us, "added_p50_us")
	b.ReportMetric(res.AddedP99Us, "added_p99_us")
	b.ReportMetric(float64(res.MaxRateOn), "max_rate_on/s")
	b.ReportMetric(float64(res.MaxRateOff), "max_rate_off/s")
	if out := os.Getenv("CTHA_BENCH_OUT"); out != "" {
		// A directory of its own: results/*.json are bench.Run files.
		path := filepath.Join(out, "defer", "defer-"+time.Now().UTC().Format("20060102T150405Z")+".json")
		data, _ := json.MarshalIndent(res, "", "  ")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
			b.Fatal(err)
		}
		b.Logf("results: %s", path)
	}
}

// deferProbeRate is the rate of the timed handshakes.
const deferProbeRate = 500

// deferRates returns the load of the added-latency cells and the loads
// the highest-rate search steps through: CTHA_DEFER_RATE (default 20000)
// and CTHA_DEFER_STEPS (default 2500,5000,10000,20000,40000), new flows
// a second.
func deferRates(b *testing.B) (int, []int) {
	rate, steps := 20000, []int{2500, 5000, 10000, 20000, 40000}
	if s := os.Getenv("CTHA_DEFER_RATE"); s != "" {
		if _, err := fmt.Sscan(s, &rate); err != nil {
			b.Fatalf("CTHA_DEFER_RATE: %v", err)
		}
	}
	if s := os.Getenv("CTHA_DEFER_STEPS"); s != "" {
		steps = nil
		for _, f := range strings.Split(s, ",") {
			var r int
			if _, err := fmt.Sscan(f, &r); err != nil {
				b.Fatalf("CTHA_DEFER_STEPS: %v", err)
			}
			steps = append(steps, r)
		}
	}
	return rate, steps
}

// deferRunFor is how long each cell opens connections.
const deferRunFor = 10 * time.Second

// deferResults is BenchmarkDefer's results file.
type deferResults struct {
	Machine    bench.Machine `json:"machine"`
	LoadStart  string        `json:"load_start"`
	LoadEnd    string        `json:"load_end"`
	Settings   string        `json:"settings"`
	RunForS    float64       `json:"run_for_s"`
	Cells      []deferCell   `json:"cells"`
	Rate       int           `json:"rate"`       // the load of the added-latency cells, new flows/s
	ProbeRate  int           `json:"probe_rate"` // handshakes/s
	AddedP50Us float64       `json:"added_p50_us"`
	AddedP99Us float64       `json:"added_p99_us"`
	MaxRateOff int           `json:"max_rate_off"`
	MaxRateOn  int           `json:"max_rate_on"`
}

// deferCell is one run of connections at a rate.
type deferCell struct {
	Name    string                          `json:"name"`
	Defer   string                          `json:"defer"`
	Load    int                             `json:"load"` // new flows/s
	Report  flowgen.RateReport              `json:"report"`
	Invalid map[string]uint64               `json:"invalid"`
	Status  map[string]*control.DeferStatus `json:"defer_status"`
	Entries map[string]int                  `json:"entries_after"` // each kernel's table
}

// kept reports whether the pair kept up with the cell's load: sent in
// full, every probe's handshake done without a retransmission, and with
// defer on at most 1 % of the held packets released at the timeout.
func (c deferCell) kept() bool {
	r := c.Report
	if float64(r.UDPSent) < 0.95*float64(c.Load)*r.DurationMs/1000 || r.Failed+r.Skipped+r.Slow > 0 {
		return false
	}
	for _, d := range c.Status {
		if d != nil && float64(d.ReleasedTimeout) > 0.01*float64(d.Held) {
			return false
		}
	}
	return true
}

func (c deferCell) String() string {
	r := c.Report
	s := fmt.Sprintf("%d load flows sent; probes %d connected, %d failed, %d skipped, %d slow; handshake p50 %5.0f us p90 %5.0f us p99 %6.0f us max %7.0f us; INVALID fw1 %d fw2 %d",
		r.UDPSent, r.Connected, r.Failed, r.Skipped, r.Slow, r.HandshakeUs.P50, r.HandshakeUs.P90, r.HandshakeUs.P99, r.HandshakeUs.Max,
		c.Invalid[lab.RoleFW1], c.Invalid[lab.RoleFW2])
	for _, role := range []string{lab.RoleFW1, lab.RoleFW2} {
		if d := c.Status[role]; d != nil {
			s += fmt.Sprintf("; %s held %d acked %d timeout %d not %d p99 %.0f us", role, d.Held, d.ReleasedAcked, d.ReleasedTimeout, d.NotDeferred, d.P99US)
		}
	}
	if r.FirstError != "" {
		s += "; first error: " + r.FirstError
	}
	return s
}

// deferRateCell starts the pair (defer as deferFor says), sends the load
// of new flows and the probes to server for deferRunFor, and stops the
// pair.
func deferRateCell(b *testing.B, l *lab.Lab, server, deferFor string, load int, sources []string) deferCell {
	nodes := map[string]*node{}
	for _, role := range []string{lab.RoleFW1, lab.RoleFW2} {
		conf := mpConfig(role)
		if deferFor != "" {
			conf = strings.Replace(conf, `cache    = "direct"`, `cache    = "direct"
  defer    = "`+deferFor+`"`, 1)
		}
		conf = strings.Replace(conf, `level = "debug"`, `level = "info"`, 1)
		nodes[role] = startNode(b, l, role, conf)
	}
	// Each group on its master, the VIPs settled, both copies complete.
	for role, n := range nodes {
		for _, g := range mpGroups {
			want := "BACKUP"
			if g.master == role {
				want = "MASTER"
			}
			waitState(b, n, "group:"+g.name, want, 20*time.Second)
		}
		err := lab.WaitFor(20*time.Second, 50*time.Millisecond, func() (bool, error) {
			s, err := syncStatus(n)
			return err == nil && s.PeerUp && s.BulkComplete, err
		})
		if err != nil {
			b.Fatalf("%s: not ready: %v", role, err)
		}
	}
	time.Sleep(time.Second) // the gratuitous ARPs heard
	invalid := func() map[string]uint64 {
		m := map[string]uint64{}
		for role := range nodes {
			n, err := l.InvalidDrops(role)
			if err != nil {
				b.Fatal(err)
			}
			m[role] = n
		}
		return m
	}
	before := invalid()
	out := filepath.Join(b.TempDir(), "rate.json")
	if _, err := l.ExecTimeout(deferRunFor+time.Minute, lab.RoleClient, flowgenBin, "rate", "-connect", server+":5001",
		"-rate", fmt.Sprint(deferProbeRate), "-udp-rate", fmt.Sprint(load), "-duration", deferRunFor.String(),
		"-sources", strings.Join(sources, ","), "-json", out); err != nil {
		b.Fatalf("flowgen rate: %v", err)
	}
	c := deferCell{Defer: deferFor, Load: load, Invalid: invalid(), Status: map[string]*control.DeferStatus{}, Entries: map[string]int{}}
	data, err := os.ReadFile(out)
	if err != nil {
		b.Fatal(err)
	}
	if err := json.Unmarshal(data, &c.Report); err != nil {
		b.Fatal(err)
	}
	for role, n := range nodes {
		c.Invalid[role] -= before[role]
		if s, err := syncStatus(n); err == nil {
			c.Status[role] = s.Defer
			c.Entries[role] = s.InternalEntries + s.ExternalEntries
		}
		if err := n.proc.Stop(10 * time.Second); err != nil {
			b.Errorf("%s: stop: %v", role, err)
		}
	}
	return c
}
