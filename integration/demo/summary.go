package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Summary is what the demo measured, printed at the end and written as
// JSON with -json (after the lab is removed, so Cleaned is known).
type Summary struct {
	// Result is "pass" (every flow survived, no INVALID drop), "fail"
	// (the demo ran but the flows did not all survive), "error" (it
	// could not run to the end) or "interrupted" (SIGINT/SIGTERM).
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`

	Prefix     string   `json:"prefix"`     // of the lab's namespaces
	Namespaces []string `json:"namespaces"` // every namespace it made
	Dir        string   `json:"dir"`        // configs, keys, sockets, logs
	AdvertMs   float64  `json:"advert_ms"`

	Flows    int `json:"flows"`
	Survived int `json:"survived"`
	// KillToVIPsMs: from the SIGKILL of the master until the new master
	// holds both VIPs (LAN and WAN), as seen in its kernel.
	KillToVIPsMs   float64 `json:"kill_to_vips_ms"`
	KillToLANVIPMs float64 `json:"kill_to_lan_vip_ms"`
	KillToWANVIPMs float64 `json:"kill_to_wan_vip_ms"`
	// LongestGapMs is the longest time any flow went without an echo.
	LongestGapMs float64 `json:"longest_gap_ms"`
	// StatesReplicated: the backup's copy of the master's states (its
	// external cache) at the moment of the kill.
	StatesReplicated int `json:"states_replicated"`
	// InvalidDrops: the `ct state invalid counter drop` count on the new
	// master, read while the flows still ran: packets of live flows that
	// arrived before their state.
	InvalidDrops uint64 `json:"invalid_drops"`

	// Processes lists every process the demo started, with its pid.
	Processes []ProcInfo `json:"processes"`
	Kept      bool       `json:"kept"` // -keep: the lab ran on until a signal
	// Cleaned: every process stopped and every namespace deleted.
	Cleaned       bool     `json:"cleaned"`
	CleanupErrors []string `json:"cleanup_errors,omitempty"`
	DurationS     float64  `json:"duration_s"`
}

// ProcInfo is one process the demo started.
type ProcInfo struct {
	Name string `json:"name"`
	Pid  int    `json:"pid"`
}

// passed reports whether the flows made it: the point of the demo.
func (s *Summary) passed() bool {
	return s.Flows > 0 && s.Survived == s.Flows && s.InvalidDrops == 0 && s.KillToVIPsMs > 0
}

// print writes the human summary.
func (d *demo) printSummary() {
	s := &d.sum
	p := d.out
	advert := d.advertText()
	p.printf("\n%s\n", p.paint("1", fmt.Sprintf("Summary: %d flows, advert interval %s", s.Flows, advert)))
	row := func(name, value, note string) {
		p.printf("  %-24s %-12s %s\n", name, value, note)
	}
	// Padded before painting: escape sequences have no width.
	survived := fmt.Sprintf("%-12s", fmt.Sprintf("%d/%d", s.Survived, s.Flows))
	if s.Survived == s.Flows {
		survived = p.paint("1;32", survived)
	} else {
		survived = p.paint("1;31", survived)
	}
	row("flows survived", survived, "TCP connections that kept echoing, never reset or re-opened")
	row("kill -> VIPs on fw2", secs(s.KillToVIPsMs),
		fmt.Sprintf("SIGKILL of fw1 until fw2 held both VIPs (LAN %s, WAN %s)", secs(s.KillToLANVIPMs), secs(s.KillToWANVIPMs)))
	row("longest gap", secs(s.LongestGapMs), "the longest pause any flow saw: TCP resends at 0.2, 0.6, 1.4, 3.0, 6.2 s")
	row("states replicated", fmt.Sprint(s.StatesReplicated), "fw1's states that fw2 held when fw1 died")
	row("INVALID drops on fw2", fmt.Sprint(s.InvalidDrops), "packets of live flows fw2 saw before their state (want 0)")
	verdict := p.paint("1;32", "PASS: every flow survived the death of the master, none of their packets was dropped")
	if !s.passed() {
		verdict = p.paint("1;31", "FAIL: not every flow survived cleanly (see above)")
	}
	p.printf("\n  %s\n", verdict)
	if s.KillToVIPsMs > 0 && s.LongestGapMs > s.KillToVIPsMs {
		p.text(fmt.Sprintf("\n\nThe flows resumed at TCP's first retransmission after the takeover (%s after the kill):\n"+
			"the gap is the takeover time rounded up to the next retransmission step.", secs(s.KillToVIPsMs)))
		if d.opts.advert == 0 {
			p.text("With a shorter advert interval both shrink: DEMO_ADVERT=300ms make demo (VRRPv3 allows 10ms steps).")
		}
	}
}

// secs formats milliseconds as seconds.
func secs(ms float64) string {
	if ms <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f s", ms/1000)
}

// advertText says which advert interval runs, and where it comes from.
func (d *demo) advertText() string {
	if d.opts.advert == 0 {
		return "1s, as in examples/fw1.hcl"
	}
	return d.opts.advert.String() + ", set by DEMO_ADVERT (the examples have 1s)"
}

// writeJSON writes the summary to path, atomically.
func (s *Summary) writeJSON(path string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".demo-summary-*")
	if err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("summary: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	return nil
}

// resultLine is the demo's last line: one line to grep.
func (s *Summary) resultLine() string {
	var b strings.Builder
	fmt.Fprintf(&b, "demo: %s", strings.ToUpper(s.Result))
	if s.Flows > 0 {
		fmt.Fprintf(&b, ": %d/%d flows survived, kill -> VIPs %s, longest gap %s, %d states replicated, %d INVALID drops",
			s.Survived, s.Flows, secs(s.KillToVIPsMs), secs(s.LongestGapMs), s.StatesReplicated, s.InvalidDrops)
	}
	if s.Error != "" {
		fmt.Fprintf(&b, " (%s)", firstLine(s.Error))
	}
	fmt.Fprintf(&b, "; lab %s %s in %.0f s", s.Prefix, map[bool]string{true: "removed", false: "NOT fully removed"}[s.Cleaned], s.DurationS)
	return b.String()
}

// ms converts a duration to float milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
