package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"

	"github.com/ctha/ctha/cfg"
	"github.com/ctha/ctha/ctsync"
	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/internal/control"
)

// dumpFlow is one flow of `ctha dump --json`.
type dumpFlow struct {
	Proto   uint8             `json:"proto"`
	Orig    control.Tuple     `json:"orig"`
	Reply   control.Tuple     `json:"reply"`
	Zone    uint16            `json:"zone"`
	Status  uint32            `json:"status"`
	Timeout uint32            `json:"timeout"`
	Mark    uint32            `json:"mark"`
	TCP     *control.TCPState `json:"tcp,omitempty"`
}

func tupleOf(t ct.Tuple) control.Tuple {
	return control.Tuple{Src: netip.AddrPortFrom(t.SrcAddr(), t.SrcPort).String(), Dst: netip.AddrPortFrom(t.DstAddr(), t.DstPort).String()}
}

func (d *daemonState) handleDump(ctx context.Context, req control.Request) (any, error) {
	if d.sync == nil {
		return nil, fmt.Errorf("no conntrack_sync in %s", d.path)
	}
	var which string
	if err := json.Unmarshal(req.Args, &which); err != nil {
		return nil, fmt.Errorf("dump: %w", err)
	}
	flows, err := d.sync.Dump(ctx, which)
	if err != nil {
		return nil, err
	}
	out := make([]dumpFlow, 0, len(flows))
	for _, f := range flows {
		df := dumpFlow{Proto: f.Orig.Proto, Orig: tupleOf(f.Orig), Reply: tupleOf(f.Reply), Zone: f.Zone,
			Status: f.Status, Timeout: f.Timeout, Mark: f.Mark}
		if f.Orig.Proto == ct.ProtoTCP {
			df.TCP = &control.TCPState{State: f.TCP.State, WScaleOrig: f.TCP.WScaleOrig, WScaleReply: f.TCP.WScaleRepl}
		}
		out = append(out, df)
	}
	return out, nil
}

func (c *cli) dump(args []string) int {
	fs := c.flags("dump")
	asJSON := fs.Bool("json", false, "print JSON")
	socket := fs.String("s", cfg.DefaultSocket, "control `SOCKET` of the daemon")
	pos, code, ok := c.parseMixed(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 || (pos[0] != ctsync.CacheInternal && pos[0] != ctsync.CacheExternal) {
		fmt.Fprintln(c.stderr, "Usage: ctha dump internal|external [--json] [-s SOCKET]")
		return exitUsage
	}
	var flows []dumpFlow
	if err := control.Call(context.Background(), *socket, "dump", pos[0], &flows); err != nil {
		return c.failf("dump: %v", err)
	}
	if *asJSON {
		return c.printJSON(flows)
	}
	printFlows(c.stdout, flows)
	return exitOK
}

func printFlows(w io.Writer, flows []dumpFlow) {
	for _, f := range flows {
		nat := ""
		if f.Reply.Src != f.Orig.Dst || f.Reply.Dst != f.Orig.Src {
			nat = fmt.Sprintf(" reply %s -> %s", f.Reply.Src, f.Reply.Dst)
		}
		state := ""
		if f.TCP != nil {
			state = fmt.Sprintf(" tcp-state %d", f.TCP.State)
		}
		fmt.Fprintf(w, "proto %d %s -> %s%s zone %d mark %#x timeout %ds%s\n", f.Proto, f.Orig.Src, f.Orig.Dst, nat, f.Zone, f.Mark, f.Timeout, state)
	}
	fmt.Fprintf(w, "%d entries\n", len(flows))
}
