package linkwatch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os/exec"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"go.uber.org/goleak"

	"github.com/ctha/ctha/integration/lab"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// watchIn runs Watch in namespace ns on a goroutine of its own (a locked
// thread moved into ns), reporting on updates; stop ends it and waits.
func watchIn(t *testing.T, ns netns.NsHandle, updates chan<- Update, onErr func(error)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread stays in ns when Watch returns: it is not unlocked,
		// so the runtime ends it with the goroutine.
		if err := netns.Set(ns); err != nil {
			done <- err
			return
		}
		done <- Watch(ctx, func(u Update) { updates <- u }, onErr)
	}()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	}
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %v: %v: %s", args, err, out)
	}
}

// TestWatch: the existing links come first, then changes; a second
// watcher in the namespace costs the first nothing (with a dump request
// on the subscription socket, as vishvananda/netlink's ListExisting
// sends it, the first saw "Wrong sender portid": issue 13, row 10).
func TestWatch(t *testing.T) {
	lab.RequireNetns(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "ctlw" + hex.EncodeToString(b[:])
	ip(t, "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	// A veth pair (this kernel has no dummy links): an end has carrier
	// while both are up.
	ip(t, "-n", name, "link", "add", "name", "lw0", "type", "veth", "peer", "name", "lw1")
	ip(t, "-n", name, "link", "set", "lw0", "up")
	ip(t, "-n", name, "link", "set", "lw1", "up")
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()

	var mu sync.Mutex
	var errs []error
	first := make(chan Update, 64)
	stopFirst := watchIn(t, ns, first, func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() })
	defer stopFirst()
	wait := func(what string, cond func(Update) bool) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case u := <-first:
				if cond(u) {
					return
				}
			case <-deadline:
				t.Fatalf("%s: not reported within 5 s", what)
			}
		}
	}
	wait("the existing lw0, up", func(u Update) bool { return u.Name == "lw0" && u.Up })

	second := make(chan Update, 64)
	stopSecond := watchIn(t, ns, second, nil)
	select {
	case <-second:
	case <-time.After(5 * time.Second):
		t.Fatal("the second watcher listed nothing")
	}
	stopSecond()

	ip(t, "-n", name, "link", "set", "lw1", "down")
	wait("lw0 without carrier", func(u Update) bool { return u.Name == "lw0" && !u.Up })
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(errs) > 0 {
		t.Errorf("the first watcher saw errors when a second one started: %v", errs)
	}
}
