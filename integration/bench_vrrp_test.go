package integration

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/bench"
	"github.com/ctha/ctha/integration/lab"
)

// BenchmarkVRRPTakeover measures, for ctha and keepalived 2.2.7 in the same
// run, alternating which goes first, how fast a backup takes over from a
// killed master with nothing to commit:
//
//   - timer -> GARP: from the moment the backup's Master_Down timer fires
//     (the last advert it heard + Master_Down_Interval, both from a capture
//     on its LAN port) to its first gratuitous ARP on the wire;
//   - kill -> GARP and kill -> VIP (the VIP seen on the interface).
//
// The master is killed 50 ms after one of its adverts, the same phase for
// both. Run it with `make bench-vrrp`; with CTHA_BENCH_OUT=DIR it writes
// the results (bench.Run JSON, with the machine and versions) as
// DIR/vrrp-DATE.json.
func BenchmarkVRRPTakeover(b *testing.B) {
	lab.RequireNetns(b)
	lab.RequireCommands(b, "keepalived", "tcpdump")
	const (
		advert = 100 * time.Millisecond
		phase  = 50 * time.Millisecond
		rounds = 5
	)
	run := bench.NewRun("BenchmarkVRRPTakeover", rounds, false)
	run.Settings = []string{
		fmt.Sprintf("one VRRPv3 instance on the LAN (vrid 51, priorities 150/100), advert %v, nothing to replicate; fw1 master is killed %v after one of its adverts (captured on fw2's LAN port), its LAN link set down", advert, phase),
		"ctha: the lan-only pair config of the VRRP tests; keepalived 2.2.7 with the same instance, default global_defs",
		"timer -> first GARP: from the last advert fw2 heard + Master_Down_Interval to fw2's first gratuitous ARP, both on the capture; kill -> VIP: until the VIP is on fw2's interface",
	}
	run.Notes = []string{"the machine has 2 vCPUs shared with other engineers' lab tests: compare stacks within this run only"}
	c := run.Case("vrrp", fmt.Sprintf("takeover, advert %v, kill %v after an advert", advert, phase))
	c.Modes = "VRRP only, no scheduling options set"
	b.Logf("machine: %+v", run.Machine)
	for range b.N {
		for r := range rounds {
			order := []string{bench.Ctha, bench.Keepalived}
			if r%2 == 1 {
				order = []string{bench.Keepalived, bench.Ctha}
			}
			for _, stack := range order {
				s := takeoverRound(b, stack, advert, phase)
				run.SetStack(stack, s.settings...)
				b.Logf("round %d %-10s timer->GARP %7.3f ms  kill->GARP %7.1f ms  kill->VIP %7.1f ms", r, stack,
					ms(s.timerToGARP), ms(s.killToGARP), ms(s.killToVIP))
				c.Add("timer -> first GARP", "ms", stack, ms(s.timerToGARP))
				c.Add("kill -> first GARP", "ms", stack, ms(s.killToGARP))
				c.Add("kill -> VIP present", "ms", stack, ms(s.killToVIP))
			}
		}
	}
	run.Finish()
	b.Logf("%-26s %-26s %-26s %s", "figure (ms, median [range])", "ctha", "keepalived 2.2.7", "ratio ctha/keepalived")
	for _, m := range c.Metrics {
		cs, ks := bench.Summarize(m.Samples[bench.Ctha]), bench.Summarize(m.Samples[bench.Keepalived])
		b.Logf("%-26s %-26s %-26s %s", m.Name, cs.Format(3), ks.Format(3), bench.FormatRatio(m.Ratio(bench.Ctha, bench.Keepalived)))
		metric := strings.NewReplacer(" -> ", "_to_", " ", "_").Replace(m.Name)
		b.ReportMetric(cs.Median, "ctha_"+metric+"_ms")
		b.ReportMetric(ks.Median, "keepalived_"+metric+"_ms")
	}
	if dir := os.Getenv("CTHA_BENCH_OUT"); dir != "" {
		path, err := run.WriteJSONAs(dir, "vrrp")
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("results: %s", path)
	}
}

type takeoverSample struct {
	timerToGARP, killToGARP, killToVIP time.Duration
	settings                           []string // the stack's, as observed
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// takeoverRound runs one kill of a master (fw1, priority 150) in a fresh
// lab and measures the backup's (fw2, priority 100) takeover.
func takeoverRound(b *testing.B, stack string, advert, phase time.Duration) takeoverSample {
	l := lab.New(b, lab.Options{NoIPv6: true})
	vip := lab.LANVIP.Addr()
	var master, backup *lab.Proc
	for _, n := range []struct {
		role string
		prio int
		proc **lab.Proc
	}{{lab.RoleFW1, 150, &master}, {lab.RoleFW2, 100, &backup}} {
		if stack == bench.Ctha {
			*n.proc = startNode(b, l, n.role, pairOpts{node: n.role, priority: n.prio, advert: advert, lanOnly: true}.config()).proc
		} else {
			*n.proc = l.StartKeepalived(b, n.role, lab.KeepalivedConfig{Instances: []lab.KeepalivedInstance{{
				Name: "lan", Interface: "lan", VRID: 51, Priority: n.prio, Version: 3,
				AdvertInterval: advert, VIPs: []netip.Prefix{lab.LANVIP},
			}}})
		}
		if n.role == lab.RoleFW1 {
			if _, err := waitVIP(l, lab.RoleFW1, "lan", vip, true, time.Now(), 10*time.Second); err != nil {
				b.Fatalf("%s master: %v\n%s", stack, err, master.Tail(20))
			}
		}
	}
	time.Sleep(4 * advert) // the backup is settled
	var settings []string
	if stack == bench.Ctha {
		settings = []string{"ctha: main thread " + chrt(backup.Pid()), "ctha: threads by scheduling class (/proc/PID/task/*/stat) " + threadClasses(backup.Pid())}
	} else if b, err := os.ReadFile(filepath.Join(backup.Dir, "vrrp.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			settings = []string{"keepalived VRRP process: " + chrt(pid)}
		}
		if conf, err := os.ReadFile(filepath.Join(backup.Dir, "keepalived.conf")); err == nil {
			settings = append(settings, "keepalived: "+globalDefs(string(conf)))
		}
	}
	capture := l.Start(b, lab.RoleFW2, "tcpdump", "tcpdump", "-i", "lan", "-n", "-tt", "-l", "-U", "ip proto 112 or arp")

	// Kill at a fixed phase after one of the master's adverts.
	lastAdvert := func() time.Time {
		return lastCaptured(capture.Log(), "> 224.0.0.18: VRRP", lab.FW1LAN.Addr().String()+" >")
	}
	var seen time.Time
	if err := lab.WaitFor(5*time.Second, time.Millisecond, func() (bool, error) {
		t := lastAdvert()
		if seen.IsZero() {
			seen = t
			if seen.IsZero() {
				seen = time.Unix(1, 0) // capture not started yet: wait for the first advert
			}
			return false, nil
		}
		return t.After(seen), nil
	}); err != nil {
		b.Fatalf("no advert captured: %v\n%s", err, capture.Log())
	}
	time.Sleep(time.Until(lastAdvert().Add(phase)))
	kill := time.Now()
	master.Kill()
	l.SetLink(lab.RoleFW1, "lan", false)
	killToVIP, err := waitVIP(l, lab.RoleFW2, "lan", vip, true, kill, 10*time.Second)
	if err != nil {
		b.Fatalf("%s takeover: %v\n%s", stack, err, backup.Tail(20))
	}
	time.Sleep(100 * time.Millisecond)
	capture.Stop(time.Second)

	log := capture.Log()
	heard := lastBefore(log, kill, "> 224.0.0.18: VRRP", lab.FW1LAN.Addr().String()+" >")
	// A gratuitous ARP names the VIP as its sender: "Request who-has VIP
	// [(MAC)] tell VIP" or "Reply VIP is-at MAC".
	garp := firstAfter(log, kill, "tell "+vip.String()+",", "ARP, Reply "+vip.String()+" is-at")
	if heard.IsZero() || garp.IsZero() {
		b.Fatalf("%s: capture lacks the last advert (%v) or the first GARP (%v):\n%s", stack, heard, garp, log)
	}
	timerFires := heard.Add(masterDownInterval(100, advert))
	return takeoverSample{timerToGARP: garp.Sub(timerFires), killToGARP: garp.Sub(kill), killToVIP: killToVIP, settings: settings}
}

// capturedLines yields tcpdump -tt lines as (time, text).
func capturedLines(log string, yield func(time.Time, string) bool) {
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		ts, rest, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(ts, 64)
		if err != nil {
			continue
		}
		sec := int64(f)
		t := time.Unix(sec, int64((f-float64(sec))*1e9)).Round(time.Microsecond)
		if !yield(t, rest) {
			return
		}
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// lastCaptured is the time of the last line holding every sub.
func lastCaptured(log string, subs ...string) time.Time {
	return lastBefore(log, time.Now().Add(time.Hour), subs...)
}

// lastBefore is the time of the last line before t holding every sub.
func lastBefore(log string, t time.Time, subs ...string) time.Time {
	var last time.Time
	capturedLines(log, func(ts time.Time, line string) bool {
		if ts.Before(t) && containsAll(line, subs...) {
			last = ts
		}
		return true
	})
	return last
}

// firstAfter is the time of the first line after t holding any of subs.
func firstAfter(log string, t time.Time, subs ...string) time.Time {
	var first time.Time
	capturedLines(log, func(ts time.Time, line string) bool {
		if ts.After(t) && containsAny(line, subs...) {
			first = ts
			return false
		}
		return true
	})
	return first
}
