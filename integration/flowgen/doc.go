// Package flowgen generates long-lived TCP flows and measures, per flow,
// whether it survives a firewall failover and how long its traffic
// stopped. It is the traffic of ctha's failover tests and of the demo: a
// client in the lab's "cl" namespace opens N connections through the VIPs
// to a server in "srv" (spec/lab.md), the test kills the master firewall,
// and the report says how many flows survived and the longest gap the
// application saw (spec/bench.md: that gap comes in TCP retransmission
// steps of about 0.2, 0.6, 1.4, 3.0-3.2 and 6.2-6.6 s).
//
// # How it measures
//
// The server echoes every byte back as soon as it reads it. Each client
// flow sends a 32-byte message (magic "FGE1", flow id, sequence number,
// send time) every Interval and reads the echoes in another goroutine,
// checking the flow id and that sequence numbers follow each other. Every
// arriving echo closes a gap: the time since the previous echo (or since
// traffic started). Per flow the client keeps the longest gap, its start,
// and every gap longer than GapThreshold (default max(5*Interval, 150 ms),
// below TCP's 200 ms minimum retransmission timeout, so any loss shows).
// When the run ends, the time from the last echo to the end counts as a
// gap too, so a dead flow's longest gap is its outage so far.
//
// A flow survived if, at the end, it had no error (no reset, no EOF, no
// timeout, no bad echo) and its last echo came at most AliveWindow
// (default 2 s) before the end. A flow that errors is closed and never
// re-established: a new connection would be a new flow with a new
// conntrack entry, which is exactly what a failover test must not count
// as survival.
//
// Dead flows are noticed two ways. Silently dropped packets (a new master
// without the flow's state drops them as ct state invalid) show as no
// echo within AliveWindow. And every socket has TCP_USER_TIMEOUT (default
// 15 s, longer than the 6.6 s retransmission step a surviving flow may
// need): the kernel aborts a connection whose data stays unacknowledged
// that long, and the flow reports "connection timed out". TCP_NODELAY is
// set on both sides so every message leaves at once; keepalive (5 s idle,
// 1 s interval) only matters for an idle connection.
//
// Setup is bounded by ConnectTimeout (default 10 s): every flow must be
// connected and have exchanged a first echo, proving the path and the
// firewall state in both directions, before traffic starts (Client.Ready,
// the command's ready line or file). If any flow cannot be set up, Run
// fails and closes them all.
//
// # Library
//
// [Server] (or [Listen] and [EchoServer.Serve]) runs the echo server;
// [EchoServer.PauseEchoes] and [EchoServer.Kill] are hooks for tests.
// [Client.Run] runs the flows and returns a [Report], which marshals to the
// JSON the command prints. Tests running in the host namespace may use the
// library on loopback; tests in the lab run the command with
// `ip netns exec`, since a Go test process must not switch namespaces.
//
// # Command
//
//	flowgen server -listen ADDR [-user-timeout D] [-ready FILE]
//	flowgen client -connect ADDR [-flows N] [-interval D] [-duration D]
//	               [-json FILE] [-ready FILE] [-stop-file FILE] [-progress] ...
//
// The server prints "listening ADDR" on stdout once it listens (and writes
// the same line to -ready FILE) and runs until SIGTERM or SIGINT.
//
// The client prints "ready N flows to ADDR" on stdout (or writes that line
// to -ready FILE, atomically; a ready file left by an earlier run is
// removed at start) once every flow is up; traffic, and -duration, start
// then. It stops after -duration (0: no limit), on
// SIGTERM or SIGINT, or when -stop-file appears (polled every 50 ms), and
// then writes the report: indented JSON to -json FILE (atomically), or one
// line of JSON on stdout. A summary line goes to stderr, and with
// -progress one line per second while traffic runs, for example
//
//	flowgen: t=12.0s alive=200/200 stalled=0 echo/s=10000 cur_gap=21ms longest_gap=3210ms
//
// Exit status: 0 when the run completed and the report was written,
// whatever the flows' fate (the test judges the report); 1 on any error:
// bad command line, cannot listen, a flow cannot be set up within
// -connect-timeout, the report cannot be written. Run
// `flowgen client -h` for every flag.
package flowgen
