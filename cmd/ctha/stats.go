package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/ctha/ctha/cfg"
	"github.com/ctha/ctha/internal/control"
)

func (d *daemonState) stats(ctx context.Context) control.Stats {
	st := control.Stats{VRRP: []control.VRRPStats{}}
	if d.sync != nil {
		s := d.sync.Stats(ctx)
		st.Sync = &s
	}
	if d.vrrp == nil {
		return st
	}
	for _, s := range d.vrrp.Stats() {
		st.VRRP = append(st.VRRP, control.VRRPStats{
			Instance: s.Instance, Group: s.Group,
			AdvertsSent: s.AdvertsSent, AdvertsReceived: s.AdvertsReceived, SendErrors: s.SendErrors,
			AddrMismatch: s.AddrMismatch, Transitions: s.Transitions, VIPErrors: s.VIPErrors,
			VIPsRestored: s.VIPsRestored, VIPsRemoved: s.VIPsRemoved,
			Drops: s.Drops,
		})
	}
	return st
}

func (c *cli) stats(args []string) int {
	fs := c.flags("stats")
	asJSON := fs.Bool("json", false, "print the documented JSON document")
	socket := fs.String("s", cfg.DefaultSocket, "control `SOCKET` of the daemon")
	if code, ok := c.parse(fs, args); !ok {
		return code
	}
	var st control.Stats
	if err := control.Call(context.Background(), *socket, "stats", nil, &st); err != nil {
		return c.failf("stats: %v", err)
	}
	if *asJSON {
		return c.printJSON(st)
	}
	printStats(c.stdout, st)
	return exitOK
}

func printStats(w io.Writer, st control.Stats) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tSENT\tRECEIVED\tSEND ERR\tADDR MISMATCH\tTRANSITIONS\tVIP ERR\tDROPPED")
	for _, s := range st.VRRP {
		var drops []string
		for _, reason := range slices.Sorted(maps.Keys(s.Drops)) {
			if n := s.Drops[reason]; n > 0 {
				drops = append(drops, fmt.Sprintf("%s=%d", reason, n))
			}
		}
		if len(drops) == 0 {
			drops = []string{"0"}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", s.Instance, s.AdvertsSent, s.AdvertsReceived,
			s.SendErrors, s.AddrMismatch, s.Transitions, s.VIPErrors, strings.Join(drops, " "))
	}
	tw.Flush()
	if s := st.Sync; s != nil {
		fmt.Fprintf(w, "\nsync: %d datagrams in, %d out (%d send errors); %d records applied; %d kernel events, %d overruns, %d resyncs\n",
			s.DatagramsIn, s.DatagramsOut, s.SendErrors, s.Records, s.Events, s.Overruns, s.Resyncs)
		fmt.Fprintf(w, "  kernel: %d writes, %d refused; %d commits; bulks %d sent, %d received, %d stale, %d retried; split brains %d\n",
			s.KernelWrites, s.KernelFailures, s.Commits, s.BulksSent, s.BulksReceived, s.BulksStale, s.BulkRetries, s.SplitBrains)
		p := s.Protocol
		fmt.Fprintf(w, "  protocol: %d messages sent, %d resent, %d NACKs, %d duplicates, %d jumps\n",
			p.DataSent, p.Resent, p.NacksSent, p.Duplicates, p.Jumps)
		var drops []string
		for _, r := range slices.Sorted(maps.Keys(s.Drops)) {
			drops = append(drops, fmt.Sprintf("%s=%d", r, s.Drops[r]))
		}
		fmt.Fprintf(w, "  dropped datagrams: %s\n", strings.Join(drops, " "))
	}
}
