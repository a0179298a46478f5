package proc

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunCommand: a command's output is kept up to MaxOutput and the rest
// counted; a command past its timeout is killed with its children.
func TestRunCommand(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	loud := script("loud", "head -c 1000000 /dev/zero | tr '\\0' x; echo \"$CTHA_STATE\" >&2; exit 3")
	out, err := Run(context.Background(), []string{loud}, []string{"CTHA_STATE=MASTER"}, 10*time.Second)
	if err == nil {
		t.Error("a command that exits 3 gave no error")
	}
	if len(out) > MaxOutput+100 || !strings.Contains(out, fmt.Sprintf("output truncated: %d more bytes", 1_000_007-MaxOutput)) {
		t.Errorf("output of %d bytes, ending %q; want %d kept and the rest counted", len(out), out[max(0, len(out)-60):], MaxOutput)
	}

	hang := script("hang", "sleep 30 & sleep 30")
	start := time.Now()
	_, err = Run(context.Background(), []string{hang}, nil, 100*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("a hanging command gave %v, want its timeout", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the hanging command took %v to be stopped (timeout 100ms)", took)
	}
}
