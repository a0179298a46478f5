package lab_test

import (
	"testing"

	"github.com/ctha/ctha/integration/lab"
)

// TestLabSecondSyncLink: Options.SecondSyncLink adds a working second
// sync cable (IPv4 and IPv6), and SetLink cuts it.
func TestLabSecondSyncLink(t *testing.T) {
	lab.RequireNetns(t)
	lab.RequireCommands(t, "ping")
	l := lab.New(t, lab.Options{SecondSyncLink: true, NoRuleset: true})
	ping(t, l, lab.RoleFW1, lab.FW2Sync2.Addr())
	ping(t, l, lab.RoleFW2, lab.FW1Sync26.Addr())
	ping(t, l, lab.RoleFW1, lab.FW2Sync.Addr()) // the first one is still there
	if err := l.SetLink(lab.RoleFW1, "sync2", false); err != nil {
		t.Fatal(err)
	}
	if out, err := l.Exec(lab.RoleFW1, "ping", "-c", "1", "-W", "1", lab.FW2Sync2.Addr().String()); err == nil {
		t.Errorf("ping over sync2 after SetLink down succeeded:\n%s", out)
	}
}
