package lab_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/lab"
)

// helperArg makes the test binary act as a tiny TCP tool inside a lab
// namespace (a Go test process must not switch namespaces itself):
//
//	lab.test lab-helper listen ADDR   echo server
//	lab.test lab-helper dial ADDR     one echo, then one more on SIGUSR1
const helperArg = "lab-helper"

func TestMain(m *testing.M) {
	if len(os.Args) == 4 && os.Args[1] == helperArg {
		if err := helper(os.Args[2], os.Args[3]); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func helper(mode, addr string) error {
	switch mode {
	case "listen":
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		fmt.Println("listening")
		for {
			c, err := ln.Accept()
			if err != nil {
				return err
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintln(c, sc.Text())
				}
			}()
		}
	case "dial":
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for i := 1; ; i++ {
			fmt.Fprintf(c, "ping %d\n", i)
			timeout := 5 * time.Second
			if i > 1 {
				timeout = time.Second // the test expects this one to fail
			}
			c.SetReadDeadline(time.Now().Add(timeout))
			line, err := r.ReadString('\n')
			if err != nil {
				return fmt.Errorf("echo %d: %w", i, err)
			}
			fmt.Printf("echo %d ok: %s", i, line)
			<-usr1
		}
	}
	return fmt.Errorf("unknown helper mode %q", mode)
}

func TestLab(t *testing.T) {
	lab.RequireNetns(t)
	lab.RequireCommands(t, "ping", "conntrack")
	start := time.Now()
	l := lab.New(t, lab.Options{})
	t.Logf("lab %s built in %v", l.Prefix, time.Since(start))

	t.Run("namespaces", func(t *testing.T) {
		out, err := exec.Command("ip", "netns", "list").CombinedOutput()
		if err != nil {
			t.Fatalf("ip netns list: %v: %s", err, out)
		}
		for _, role := range lab.Roles {
			if !strings.Contains(string(out), l.NS(role)) {
				t.Errorf("namespace %s missing from:\n%s", l.NS(role), out)
			}
		}
	})

	t.Run("ping", func(t *testing.T) {
		tests := []struct {
			name string
			from string
			to   netip.Prefix
		}{
			{"fw1 to fw2 lan", lab.RoleFW1, lab.FW2LAN},
			{"fw1 to fw2 wan", lab.RoleFW1, lab.FW2WAN},
			{"fw1 to fw2 sync", lab.RoleFW1, lab.FW2Sync},
			{"fw1 to fw2 lan v6", lab.RoleFW1, lab.FW2LAN6},
			{"fw1 to fw2 wan v6", lab.RoleFW1, lab.FW2WAN6},
			{"fw1 to fw2 sync v6", lab.RoleFW1, lab.FW2Sync6},
			{"client to fw1 lan", lab.RoleClient, lab.FW1LAN},
			{"client to fw1 lan v6", lab.RoleClient, lab.FW1LAN6},
			{"server to fw2 wan", lab.RoleServer, lab.FW2WAN},
			{"server to fw2 wan v6", lab.RoleServer, lab.FW2WAN6},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ping(t, l, tt.from, tt.to.Addr())
			})
		}
	})

	t.Run("sysctls", func(t *testing.T) {
		tests := []struct{ key, want string }{
			{"net.netfilter.nf_conntrack_tcp_loose", "0"},
			{"net.netfilter.nf_conntrack_tcp_be_liberal", "0"},
			{"net.netfilter.nf_conntrack_events", "1"},
			{"net.ipv4.ip_forward", "1"},
			{"net.ipv6.conf.all.forwarding", "1"},
		}
		for _, fw := range []string{lab.RoleFW1, lab.RoleFW2} {
			for _, tt := range tests {
				got := strings.TrimSpace(l.MustExec(t, fw, "sysctl", "-n", tt.key))
				if got != tt.want {
					t.Errorf("%s: %s = %s, want %s", fw, tt.key, got, tt.want)
				}
			}
		}
	})

	t.Run("ruleset", func(t *testing.T) {
		out := l.MustExec(t, lab.RoleFW1, "nft", "list", "ruleset")
		if !strings.Contains(out, "ct state invalid counter") {
			t.Errorf("fw1 ruleset has no invalid counter:\n%s", out)
		}
		if n, err := l.InvalidDrops(lab.RoleFW2); err != nil || n != 0 {
			t.Errorf("InvalidDrops(fw2) = %d, %v; want 0, nil", n, err)
		}
	})

	t.Run("link down and up keeps addresses", func(t *testing.T) {
		for _, up := range []bool{false, true} {
			if err := l.SetLink(lab.RoleFW2, "lan", up); err != nil {
				t.Fatal(err)
			}
		}
		ping(t, l, lab.RoleFW1, lab.FW2LAN6.Addr())
	})

	t.Run("forwarding through fw1", func(t *testing.T) {
		for _, vip := range []netip.Prefix{lab.LANVIP, lab.LANVIP6} {
			l.MustExec(t, lab.RoleFW1, "ip", "addr", "add", vip.String(), "dev", "lan", "nodad")
		}
		for _, vip := range []netip.Prefix{lab.WANVIP, lab.WANVIP6} {
			l.MustExec(t, lab.RoleFW1, "ip", "addr", "add", vip.String(), "dev", "wan", "nodad")
		}
		ping(t, l, lab.RoleClient, lab.ServerAddr.Addr())
		ping(t, l, lab.RoleClient, lab.ServerAddr6.Addr())
		testTCPAndInvalidDrops(t, l)
	})

	t.Run("cleanup", func(t *testing.T) {
		if err := l.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		out, err := exec.Command("ip", "netns", "list").CombinedOutput()
		if err != nil {
			t.Fatalf("ip netns list: %v: %s", err, out)
		}
		if strings.Contains(string(out), l.Prefix) {
			t.Errorf("namespaces of %s left after Close:\n%s", l.Prefix, out)
		}
		if err := l.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

// testTCPAndInvalidDrops opens a TCP flow from the client to the server
// through fw1, flushes fw1's conntrack table and checks that the flow's
// next packet is counted as invalid and dropped: the strict ruleset works.
func testTCPAndInvalidDrops(t *testing.T, l *lab.Lab) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dst := netip.AddrPortFrom(lab.ServerAddr.Addr(), 5001).String()
	srv := l.Start(t, lab.RoleServer, "listener", self, helperArg, "listen", dst)
	waitLog(t, srv, "listening")
	cl := l.Start(t, lab.RoleClient, "dialer", self, helperArg, "dial", dst)
	waitLog(t, cl, "echo 1 ok")

	before, err := l.InvalidDrops(lab.RoleFW1)
	if err != nil {
		t.Fatal(err)
	}
	l.MustExec(t, lab.RoleFW1, "conntrack", "-F")
	if err := cl.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	err = lab.WaitFor(5*time.Second, 100*time.Millisecond, func() (bool, error) {
		n, err := l.InvalidDrops(lab.RoleFW1)
		return n > before, err
	})
	if err != nil {
		t.Fatalf("no invalid drop on fw1 after a conntrack flush: %v", err)
	}
	if err := cl.Wait(); err == nil || !strings.Contains(cl.Log(), "echo 2") {
		t.Errorf("dialer: exit %v, want an error on echo 2; log:\n%s", err, cl.Log())
	}
	if err := srv.Stop(5 * time.Second); err != nil {
		t.Errorf("stop listener: %v", err)
	}
}

func ping(t *testing.T, l *lab.Lab, from string, to netip.Addr) {
	t.Helper()
	if out, err := l.Exec(from, "ping", "-c", "1", "-W", "2", to.String()); err != nil {
		t.Errorf("ping %v from %s: %v\n%s", to, from, err, out)
	}
}

func waitLog(t *testing.T, p *lab.Proc, want string) {
	t.Helper()
	err := lab.WaitFor(10*time.Second, 50*time.Millisecond, func() (bool, error) {
		if p.Exited() {
			return false, errors.New("exited")
		}
		return strings.Contains(p.Log(), want), nil
	})
	if err != nil {
		t.Fatalf("%s: no %q in log: %v\n%s", p.Name, want, err, p.Log())
	}
}

func TestProc(t *testing.T) {
	lab.RequireNetns(t)
	l := lab.New(t, lab.Options{NoIPv6: true, NoRuleset: true})

	p := l.Start(t, lab.RoleFW1, "sleep", "sleep", "100")
	if p.Exited() {
		t.Fatalf("sleep exited at once: %v\n%s", p.Wait(), p.Log())
	}
	if err := p.Stop(5 * time.Second); err != nil {
		t.Errorf("Stop = %v, want nil (killed by our SIGTERM)", err)
	}
	if err := p.Stop(5 * time.Second); err != nil {
		t.Errorf("second Stop = %v, want nil", err)
	}
	if err := p.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("Signal after exit = %v, want os.ErrProcessDone", err)
	}

	p = l.Start(t, lab.RoleFW1, "exit3", "sh", "-c", "echo bye; exit 3")
	var ee *exec.ExitError
	if err := p.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("Wait = %v, want exit status 3", err)
	}
	if got := p.Log(); got != "bye\n" {
		t.Errorf("Log = %q, want %q", got, "bye\n")
	}

	// Kill reaches the whole group, like a crash.
	p = l.Start(t, lab.RoleFW1, "group", "sh", "-c", "sleep 100 & echo $!; wait")
	waitLog(t, p, "\n")
	child := strings.TrimSpace(p.Log())
	if err := p.Kill(); err != nil {
		t.Errorf("Kill = %v, want nil", err)
	}
	err := lab.WaitFor(5*time.Second, 50*time.Millisecond, func() (bool, error) {
		// Gone, or a zombie waiting for init to reap it.
		stat, err := os.ReadFile(filepath.Join("/proc", child, "stat"))
		if errors.Is(err, os.ErrNotExist) {
			return true, nil
		}
		return strings.Contains(string(stat), ") Z "), err
	})
	if err != nil {
		t.Errorf("child %s of the group still alive after Kill: %v", child, err)
	}
}
