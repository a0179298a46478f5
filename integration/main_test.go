package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/lab"
	"github.com/ctha/ctha/internal/control"
)

// cthaBin is the ctha binary under test and flowgen the live-flow
// generator, built once by TestMain.
var cthaBin, flowgenBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ctha-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cthaBin = filepath.Join(dir, "ctha")
	flowgenBin = filepath.Join(dir, "flowgen")
	for bin, pkg := range map[string]string{cthaBin: "github.com/ctha/ctha/cmd/ctha", flowgenBin: "github.com/ctha/ctha/integration/flowgen/cmd/flowgen"} {
		build := exec.Command("go", "build", "-o", bin, pkg)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// node is one ctha daemon running in a lab namespace.
type node struct {
	lab    *lab.Lab
	role   string
	dir    string // its configuration, key and socket
	config string
	socket string
	proc   *lab.Proc
}

// testKey is the sync key both nodes of a test share.
const testKey = "# test key\n00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n"

// startNode writes config (and the shared key beside it) and runs
// `ctha run` in role's namespace; it returns once the daemon answers.
func startNode(t testing.TB, l *lab.Lab, role, config string) *node {
	t.Helper()
	return startNodeEnv(t, l, role, config)
}

// startNodeEnv is startNode with variables (NAME=VALUE) added to the
// daemon's environment through env(1), which execs ctha: its pid stays
// the one the lab knows.
func startNodeEnv(t testing.TB, l *lab.Lab, role, config string, env ...string) *node {
	t.Helper()
	n := &node{lab: l, role: role, dir: t.TempDir()}
	n.config = filepath.Join(n.dir, "ctha.hcl")
	n.socket = filepath.Join(n.dir, "ctha.sock")
	if err := os.WriteFile(filepath.Join(n.dir, "sync.key"), []byte(testKey), 0o600); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(config, "state_dir") {
		// Never the host's /var/lib/ctha, and one per node: both nodes of
		// the lab share the filesystem.
		config = fmt.Sprintf("state_dir = %q\n", filepath.Join(n.dir, "state")) + config
	}
	if err := os.WriteFile(n.config, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	argv := []string{cthaBin, "run", "-c", n.config, "-s", n.socket}
	if len(env) > 0 {
		argv = append(append([]string{"env"}, env...), argv...)
	}
	n.proc = l.Start(t, role, "ctha-"+role, argv...)
	err := lab.WaitFor(10*time.Second, 20*time.Millisecond, func() (bool, error) {
		if n.proc.Exited() {
			return false, fmt.Errorf("ctha exited: %v\n%s", n.proc.Wait(), n.proc.Log())
		}
		_, err := n.status()
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("ctha in %s does not answer: %v", role, err)
	}
	return n
}

// status runs `ctha status --json` inside the node's namespace, as an
// administrator would.
func (n *node) status() (control.Status, error) {
	out, err := n.ctl("status", "--json")
	if err != nil {
		return control.Status{}, err
	}
	var st control.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return control.Status{}, fmt.Errorf("status --json: %w\n%s", err, out)
	}
	return st, nil
}

// ctlJSON runs a ctha command that prints JSON and decodes it into v.
func (n *node) ctlJSON(v any, args ...string) error {
	out, err := n.ctl(args...)
	if err != nil {
		return fmt.Errorf("ctha %v: %w\n%s", args, err, out)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("ctha %v: %w\n%s", args, err, out)
	}
	return nil
}

// ctl runs a ctha command against the node's socket inside its namespace.
func (n *node) ctl(args ...string) (string, error) {
	return n.lab.ExecTimeout(20*time.Second, n.role, append(append([]string{cthaBin}, args...), "-s", n.socket)...)
}

// exampleConfig returns an example configuration from examples/.
func exampleConfig(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// callStatus asks the daemon over its socket directly from the test.
func callStatus(ctx context.Context, socket string) (control.Status, error) {
	var st control.Status
	err := control.Call(ctx, socket, "status", nil, &st)
	return st, err
}
