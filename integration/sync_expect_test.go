package integration

import (
	"context"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
	"github.com/ctha/ctha/integration/lab"
)

// ftpRuleset is the lab's ruleset with the FTP helper assigned to port 21
// (kernels since 6.0 assign none by themselves) and FTP let through.
const ftpRuleset = `table inet fw {
	ct helper ftp-standard { type "ftp" protocol tcp; }
	chain pre {
		type filter hook prerouting priority 0;
		tcp dport 21 ct helper set "ftp-standard"
	}
	chain forward {
		type filter hook forward priority 0; policy drop;
		ct state established,related accept
		iifname "lan" tcp dport { 21, 5001 } ct state new tcp flags syn accept
		meta l4proto { icmp, ipv6-icmp } accept
		ct state invalid counter drop
	}
}
`

// ftpDataPort is the port the fake FTP server announces for passive mode.
const ftpDataPort = 50000

// fakeFTP opens an FTP control connection from cl to srv through fw1 (it
// is given the gateway addresses) and asks for a passive data connection:
// fw1's FTP helper makes an expectation of a data connection to
// srv:50000 from the server's answer. The connection stays open until the
// test ends.
func fakeFTP(t *testing.T, l *lab.Lab) {
	t.Helper()
	for _, a := range []struct{ iface, addr string }{{"lan", lab.LANVIP.String()}, {"wan", lab.WANVIP.String()}} {
		l.MustExec(t, lab.RoleFW1, "ip", "addr", "add", a.addr, "dev", a.iface)
	}
	if port := startFTP(t, l, ftpDataPort).pasv(); port != ftpDataPort {
		t.Fatalf("PASV announced port %d, want %d", port, ftpDataPort)
	}
}

// ftpExpectation returns the FTP data expectation in c's table, if any.
func ftpExpectation(t *testing.T, c *kernel.Conn) (ct.Expect, bool) {
	t.Helper()
	exps, err := c.DumpExpect(context.Background())
	if err != nil {
		t.Fatalf("dump expectations: %v", err)
	}
	for _, x := range exps {
		if x.Tuple.DstPort == ftpDataPort && x.Master.DstPort == 21 {
			return x, true
		}
	}
	return ct.Expect{}, false
}

func waitExpectation(t *testing.T, what string, c *kernel.Conn, timeout time.Duration) ct.Expect {
	t.Helper()
	var x ct.Expect
	err := lab.WaitFor(timeout, 100*time.Millisecond, func() (bool, error) {
		var ok bool
		x, ok = ftpExpectation(t, c)
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%s: no FTP data expectation after %v", what, timeout)
	}
	return x
}

// TestSyncExpectationFTP: the FTP helper's expectation of a passive data
// connection, made in fw1's kernel, reaches fw2's kernel at once in direct
// mode, and after `ctha sync commit` in external mode, with its master
// flow; when it goes in fw1, it goes in fw2.
func TestSyncExpectationFTP(t *testing.T) {
	lab.RequireNetns(t)
	for _, mode := range []string{"direct", "external"} {
		t.Run(mode, func(t *testing.T) {
			p := newSyncPairWith(t, mode, mode, lab.Options{Ruleset: ftpRuleset}, "")
			fakeFTP(t, p.lab)
			x1 := waitExpectation(t, "fw1's kernel", p.c1, 5*time.Second)
			t.Logf("fw1: %v", &x1)
			if x1.Helper != "ftp" || x1.Tuple.SrcAddr().String() != "10.10.1.100" || x1.Tuple.DstAddr().String() != "10.10.2.100" {
				t.Fatalf("fw1's expectation is %v", &x1)
			}
			if mode == "external" {
				time.Sleep(500 * time.Millisecond)
				if x, ok := ftpExpectation(t, p.c2); ok {
					t.Fatalf("external mode: fw2's kernel has %v before a commit", &x)
				}
				if out, err := p.fw2.ctl("sync", "commit"); err != nil {
					t.Fatalf("ctha sync commit: %v: %s", err, out)
				}
			}
			x2 := waitExpectation(t, "fw2's kernel", p.c2, 5*time.Second)
			if x2.Key() != x1.Key() || x2.Master != x1.Master || x2.Mask != x1.Mask || x2.Helper != x1.Helper {
				t.Errorf("fw2's expectation %v, want %v", &x2, &x1)
			}
			master, ok := dumpTable(t, p.c2)[x1.MasterKey()]
			if !ok || master.Extra == nil || master.Extra.Helper != "ftp" {
				t.Errorf("fw2's master flow: %v (present %v), want it with the ftp helper", &master, ok)
			}

			// Deletions follow: the expectation goes with its master.
			writeFlows(t, p.c1, kernel.Delete, []ct.Flow{{Orig: x1.Master, Reply: x1.Master.Reverse(), Zone: x1.Zone}})
			err := lab.WaitFor(5*time.Second, 100*time.Millisecond, func() (bool, error) {
				_, ok := ftpExpectation(t, p.c2)
				return !ok || mode == "external", nil
			})
			if err != nil {
				t.Errorf("fw2 keeps the expectation after fw1 lost it: %v", err)
			}
			if mode == "direct" {
				if _, ok := dumpTable(t, p.c2)[x1.MasterKey()]; ok {
					t.Errorf("fw2 keeps the master flow after fw1 deleted it")
				}
			}
		})
	}
}

// TestSyncExpectationRestart: an expectation made while fw1's ctha was
// down (no event will ever tell of it) reaches fw2 from fw1's first dump
// after its restart, with its master flow: the dumps cover expectations.
func TestSyncExpectationRestart(t *testing.T) {
	lab.RequireNetns(t)
	p := newSyncPairWith(t, "direct", "direct", lab.Options{Ruleset: ftpRuleset}, "")
	p.fw1.proc.Kill()
	fakeFTP(t, p.lab)
	x1 := waitExpectation(t, "fw1's kernel", p.c1, 5*time.Second)
	time.Sleep(500 * time.Millisecond)
	if x, ok := ftpExpectation(t, p.c2); ok {
		t.Fatalf("fw2's kernel has %v while fw1's ctha is down", &x)
	}
	p.fw1 = startNode(t, p.lab, lab.RoleFW1, p.cfg1)
	x2 := waitExpectation(t, "fw2's kernel after fw1's restart", p.c2, 15*time.Second)
	if x2.Key() != x1.Key() || x2.Master != x1.Master || x2.Helper != x1.Helper {
		t.Errorf("fw2's expectation %v, want %v", &x2, &x1)
	}
}
