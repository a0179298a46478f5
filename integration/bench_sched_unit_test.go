package integration

import (
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ctha/ctha/integration/lab"
)

// TestStackSettingsExcerpts: the settings recorded for the baselines come
// from the configs the lab renders.
func TestStackSettingsExcerpts(t *testing.T) {
	conf, err := lab.ConntrackdConfig{DisableExternalCache: true, SchedulerFIFO: 50}.Render(lab.RoleFW2, "/d")
	if err != nil {
		t.Fatal(err)
	}
	got := conntrackdExcerpt(conf)
	for _, want := range []string{
		"Mode FTFW", "DisableExternalCache on", "transport UDP", "SndSocketBuffer 4194304", "RcvSocketBuffer 4194304",
		"NetlinkBufferSize 8388608", "NetlinkBufferSizeMaxGrowth 67108864", "Scheduler Type FIFO", "Scheduler Priority 50",
		"NetlinkEventsReliable not set (off, the default)", "Filter From Userspace: Protocol Accept TCP UDP Address Ignore IPv4_address 127.0.0.1",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("conntrackd excerpt lacks %q:\n%s", want, got)
		}
	}
	if conf, _ := (lab.ConntrackdConfig{}).Render(lab.RoleFW2, "/d"); !strings.Contains(conntrackdExcerpt(conf), "no Scheduler block") {
		t.Errorf("default config: no mention of the default scheduling:\n%s", conntrackdExcerpt(conf))
	}

	ka, err := lab.KeepalivedConfig{RouterID: "fw1", RealtimePriority: 50, NoSwap: true,
		Instances: []lab.KeepalivedInstance{{Name: "lan", Interface: "lan", VRID: 51, Priority: 150, VIPs: []netip.Prefix{lab.LANVIP}}}}.Render()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := globalDefs(ka), "global_defs { router_id fw1 script_user root enable_script_security vrrp_rt_priority 50 vrrp_no_swap }"; got != want {
		t.Errorf("global_defs %q, want %q", got, want)
	}
}

// TestThreadClasses reads this test process's own threads.
func TestThreadClasses(t *testing.T) {
	got := threadClasses(os.Getpid())
	if !regexp.MustCompile(`^\d+ SCHED_OTHER`).MatchString(got) {
		t.Errorf("threads of the test process: %q, want some SCHED_OTHER", got)
	}
	stats, _ := filepath.Glob("/proc/self/task/*/stat")
	if len(stats) == 0 {
		t.Skip("no /proc/self/task")
	}
	if _, err := threadClass(stats[0]); err != nil {
		t.Error(err)
	}
	if got := threadClasses(1 << 30); got != "unreadable" {
		t.Errorf("missing process: %q", got)
	}
}
