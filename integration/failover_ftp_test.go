package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/lab"
)

// ftpSession is a passive-mode FTP conversation, as far as the kernel's
// FTP helper cares: the client sends PASV on the control connection, the
// server answers with the address and port of a data connection, and the
// client opens it.
type ftpSession struct {
	t    *testing.T
	l    *lab.Lab
	ctl  net.Conn
	r    *bufio.Reader
	srv  string // the server's address
	next int    // the next data port the server announces
}

// startFTP runs a minimal FTP server in srv (control on port 21; each PASV
// announces the next data port from first, where the server sends
// "data <port>" and closes) and opens the client's control connection
// through the VIPs.
func startFTP(t *testing.T, l *lab.Lab, first int) *ftpSession {
	t.Helper()
	s := &ftpSession{t: t, l: l, srv: "10.10.2.100", next: first}
	listen := func(port int) net.Listener {
		var ln net.Listener
		if err := inNS(l.NS(lab.RoleServer), func() (err error) { ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", port)); return err }); err != nil {
			t.Fatalf("listen on srv:%d: %v", port, err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln
	}
	ctlLn := listen(21)
	go func() {
		c, err := ctlLn.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprintf(c, "220 ctha test server\r\n")
		port := first
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) != "PASV" {
				fmt.Fprintf(c, "502 not implemented\r\n")
				continue
			}
			ln := listen(port)
			go func(port int) {
				d, err := ln.Accept()
				if err != nil {
					return
				}
				fmt.Fprintf(d, "data %d\r\n", port)
				d.Close()
			}(port)
			fmt.Fprintf(c, "227 Entering Passive Mode (10,10,2,100,%d,%d).\r\n", port>>8, port&0xff)
			port++
		}
	}()
	err := inNS(l.NS(lab.RoleClient), func() (err error) {
		s.ctl, err = net.DialTimeout("tcp4", s.srv+":21", 5*time.Second)
		return err
	})
	if err != nil {
		t.Fatalf("FTP control connection from cl: %v", err)
	}
	t.Cleanup(func() { s.ctl.Close() })
	s.r = bufio.NewReader(s.ctl)
	if line := s.reply(); !strings.HasPrefix(line, "220") {
		t.Fatalf("FTP greeting %q", line)
	}
	return s
}

func (s *ftpSession) reply() string {
	s.t.Helper()
	_ = s.ctl.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := s.r.ReadString('\n')
	if err != nil {
		s.t.Fatalf("FTP control connection: %v", err)
	}
	return strings.TrimSpace(line)
}

// pasv asks for a data connection and returns the port the server
// announced.
func (s *ftpSession) pasv() int {
	s.t.Helper()
	if _, err := fmt.Fprintf(s.ctl, "PASV\r\n"); err != nil {
		s.t.Fatalf("FTP control connection: %v", err)
	}
	line := s.reply()
	open, end := strings.IndexByte(line, '('), strings.IndexByte(line, ')')
	if !strings.HasPrefix(line, "227 ") || open < 0 || end < open {
		s.t.Fatalf("PASV answered %q", line)
	}
	f := strings.Split(line[open+1:end], ",")
	hi, err1 := strconv.Atoi(f[len(f)-2])
	lo, err2 := strconv.Atoi(f[len(f)-1])
	if len(f) != 6 || err1 != nil || err2 != nil {
		s.t.Fatalf("PASV answered %q", line)
	}
	return hi<<8 | lo
}

// fetch opens a connection from the client to the server's port and
// returns what it read, or the error.
func (s *ftpSession) fetch(port int, timeout time.Duration) (string, error) {
	var c net.Conn
	err := inNS(s.l.NS(lab.RoleClient), func() (err error) {
		c, err = net.DialTimeout("tcp4", fmt.Sprintf("%s:%d", s.srv, port), timeout)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(c)
	return strings.TrimSpace(string(b)), err
}

// TestFailoverFTPData: an FTP client asks for a passive data connection
// through the master, which then crashes. The data connection opens
// through the new master all the same: the FTP helper's expectation of it
// was replicated with its master flow, and the ruleset lets a new
// connection to that port through only as RELATED to it (a port nobody
// announced is dropped). The control connection survives, and the next
// PASV on it, through the new master, opens a data connection too: the
// control flow's helper was replicated with it.
func TestFailoverFTPData(t *testing.T) {
	lab.RequireNetns(t)
	r := newFailRigIn(t, newRigLabWith(t, "direct", lab.Options{NoIPv6: true, Ruleset: ftpRuleset}), true, 0)
	s := startFTP(t, r.l, ftpDataPort)
	port := s.pasv()
	if port != ftpDataPort {
		t.Fatalf("PASV announced port %d, want %d", port, ftpDataPort)
	}
	x := waitExpectation(t, "fw2's kernel", dialCT(t, r.l.NS(lab.RoleFW2)), 5*time.Second)
	t.Logf("fw2 holds %v", &x)

	at := r.crash(lab.RoleFW1)
	took := r.waitVIPs(lab.RoleFW2, at, 10*time.Second)
	t.Logf("figure: FTP: fw1 killed, VIPs on fw2 after %.2f s", took.Seconds())

	got, err := s.fetch(port, 5*time.Second)
	if err != nil || got != fmt.Sprintf("data %d", port) {
		t.Fatalf("data connection announced before the failover, through fw2: %q, %v", got, err)
	}
	// The control connection survived; fw2's own helper follows it.
	port2 := s.pasv()
	got, err = s.fetch(port2, 5*time.Second)
	if err != nil || got != fmt.Sprintf("data %d", port2) {
		t.Fatalf("data connection announced after the failover, through fw2: %q, %v", got, err)
	}
	// The control case: the server listens on a port it never announced,
	// and fw2 drops the connection.
	closed := port2 + 10
	var ln net.Listener
	if err := inNS(r.l.NS(lab.RoleServer), func() (err error) { ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", closed)); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if got, err := s.fetch(closed, 2*time.Second); err == nil {
		t.Fatalf("a connection to the unannounced port %d went through fw2 (read %q): the ruleset is not strict", closed, got)
	}
	if n, err := r.l.InvalidDrops(lab.RoleFW2); err != nil || n != 0 {
		t.Errorf("fw2 dropped %d packets as INVALID (%v), want none", n, err)
	}
}
