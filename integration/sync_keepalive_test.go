package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/lab"
)

// TestSyncDirectKeepsPeerStatesAlive: traffic refreshes a flow's timeout
// on the master without any event, so its replicated copy would expire on
// the backup after the replicated timeout (ICMP: 15 s here, 30 s by
// default) while the master still has it. In direct mode the backup keeps
// it alive.
func TestSyncDirectKeepsPeerStatesAlive(t *testing.T) {
	lab.RequireNetns(t)
	l := lab.New(t, lab.Options{NoIPv6: true})
	for _, role := range []string{lab.RoleFW1, lab.RoleFW2} {
		l.MustExec(t, role, "sysctl", "-q", "net.netfilter.nf_conntrack_icmp_timeout=15")
	}
	fw1 := startNode(t, l, lab.RoleFW1, exampleConfig(t, "fw1.hcl"))
	waitGroupState(t, fw1, "MASTER", 10*time.Second)
	fw2 := startNode(t, l, lab.RoleFW2, exampleConfig(t, "fw2.hcl"))
	waitGroupState(t, fw2, "BACKUP", 5*time.Second)

	timeout := strings.TrimSpace(l.MustExec(t, lab.RoleFW1, "cat", "/proc/sys/net/netfilter/nf_conntrack_icmp_timeout"))
	ping := l.Start(t, lab.RoleClient, "ping", "ping", "-i", "0.5", "-w", "30", lab.ServerAddr.Addr().String())
	has := func(role string) bool {
		out, _ := l.Exec(role, "conntrack", "-L", "-p", "icmp", "-s", lab.ClientAddr.Addr().String())
		return strings.Contains(out, "dst="+lab.ServerAddr.Addr().String())
	}
	if err := lab.WaitFor(5*time.Second, 100*time.Millisecond, func() (bool, error) { return has(lab.RoleFW2), nil }); err != nil {
		t.Fatalf("the ping's state never reached fw2")
	}
	time.Sleep(25 * time.Second) // past the ICMP timeout, the ping still running
	if !has(lab.RoleFW1) {
		t.Fatalf("the master lost the ping's state: the test is broken")
	}
	if !has(lab.RoleFW2) {
		t.Errorf("fw2's copy of a live flow expired after the ICMP timeout (%s s) while the master still has it", timeout)
	}
	ping.Stop(time.Second)
}
