package flowgen

import (
	"math"
	"slices"
	"time"
)

// Report is the result of a client run. Durations are in milliseconds
// (float, microsecond resolution), times are RFC 3339 with nanoseconds, in
// UTC. Zero times are omitted.
type Report struct {
	Target   string `json:"target"` // server address
	Flows    int    `json:"flows"`
	Survived int    `json:"survived"`
	Failed   int    `json:"failed"` // Flows - Survived
	// Errored counts the flows that ended on an error (a subset of Failed;
	// the others went silent).
	Errored int `json:"errored"`

	// LongestGapMs is the longest gap of any flow (PerFlow[i].LongestGapMs).
	LongestGapMs float64 `json:"longest_gap_ms"`
	// GapsMs summarises the per-flow longest gaps over all flows.
	GapsMs GapStats `json:"gaps_ms"`
	// GapThresholdMs: gaps longer than this are listed per flow and
	// counted below.
	GapThresholdMs float64 `json:"gap_threshold_ms"`
	// FlowsWithGap counts the flows with at least one gap over the
	// threshold.
	FlowsWithGap int `json:"flows_with_gap"`
	// FirstGapStart is the earliest start (last echo before it) of a gap
	// over the threshold, on any flow; LastGapEnd the latest end (the
	// echo that closed it, or End for a gap still open at the end).
	FirstGapStart time.Time `json:"first_gap_start,omitzero"`
	LastGapEnd    time.Time `json:"last_gap_end,omitzero"`

	IntervalMs    float64   `json:"interval_ms"`
	AliveWindowMs float64   `json:"alive_window_ms"`
	Start         time.Time `json:"start"` // traffic started (every flow up)
	End           time.Time `json:"end"`
	DurationMs    float64   `json:"duration_ms"`
	// StopReason is "duration", or "stopped: " and why the context ended
	// (the command: "signal terminated", "stop file FILE").
	StopReason string `json:"stop_reason"`
	Sent       uint64 `json:"sent"`   // messages sent, all flows
	Echoes     uint64 `json:"echoes"` // echoes received, all flows

	// ConnectMs summarises the flows' setup times (dial to the first
	// echo); SlowConnects counts those of SlowConnect or longer: a lost
	// SYN or SYN-ACK (a retransmission after 1 s).
	ConnectMs    GapStats `json:"connect_ms"`
	SlowConnects int      `json:"slow_connects"`

	PerFlow []FlowReport `json:"per_flow"`
}

// GapStats are order statistics (nearest rank) of the flows' longest gaps.
type GapStats struct {
	Min float64 `json:"min"`
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// FlowReport is what was measured on one flow.
type FlowReport struct {
	ID    int    `json:"id"`
	Local string `json:"local"` // local address: the conntrack tuple's source
	// ConnectMs is the flow's setup time: dial to the first echo.
	ConnectMs float64 `json:"connect_ms"`
	// Survived: no error and an echo within AliveWindow before End.
	Survived bool `json:"survived"`
	// LongestGapMs is the longest time between two consecutive echoes,
	// counting the start of traffic as the first and End as the last: for
	// a dead flow, the time from its last echo to End.
	LongestGapMs    float64   `json:"longest_gap_ms"`
	LongestGapStart time.Time `json:"longest_gap_start"`
	Sent            uint64    `json:"sent"`
	Echoes          uint64    `json:"echoes"`
	LastEcho        time.Time `json:"last_echo,omitzero"`
	MaxRTTMs        float64   `json:"max_rtt_ms"`
	// Error is why the flow ended early ("" if it did not): a reset, a
	// timeout (TCP_USER_TIMEOUT), the server closing, a bad echo.
	Error   string    `json:"error"`
	ErrorAt time.Time `json:"error_at,omitzero"`
	// Gaps lists the gaps over the threshold, oldest first, at most 64;
	// GapsDropped counts those not listed.
	Gaps        []Gap `json:"gaps,omitempty"`
	GapsDropped int   `json:"gaps_dropped,omitempty"`
}

// Gap is one pause in a flow's echoes.
type Gap struct {
	Start time.Time `json:"start"` // last echo before the gap (or the start of traffic)
	End   time.Time `json:"end"`   // first echo after it (or the end of the run)
	Ms    float64   `json:"ms"`
	// Ongoing: the gap was still open at the end of the run.
	Ongoing bool `json:"ongoing,omitempty"`
}

// AllSurvived reports whether every flow survived.
func (r Report) AllSurvived() bool { return r.Flows > 0 && r.Survived == r.Flows }

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.Round(0).UTC()
}

func (r *run) report(flows []*flow, start, end time.Time, reason string) Report {
	rep := Report{
		Target:         r.c.Addr,
		Flows:          len(flows),
		GapThresholdMs: ms(r.threshold),
		IntervalMs:     ms(r.c.Interval),
		AliveWindowMs:  ms(r.c.AliveWindow),
		Start:          utc(start),
		End:            utc(end),
		DurationMs:     ms(end.Sub(start)),
		StopReason:     reason,
		PerFlow:        make([]FlowReport, 0, len(flows)),
	}
	longest := make([]float64, 0, len(flows))
	var firstGap, lastGap time.Time
	for _, f := range flows {
		f.mu.Lock()
		hadEcho := f.echoes > 0
		lastEcho := f.last
		// The time from the last echo to the end is a gap too (still
		// open): for a dead flow, the outage seen so far.
		f.gap(f.last, end, r.threshold, true)
		fr := FlowReport{
			ID:              f.id,
			Local:           f.local,
			ConnectMs:       ms(f.setup),
			LongestGapMs:    ms(f.longest),
			LongestGapStart: utc(f.longestStart),
			Sent:            f.sent,
			Echoes:          f.echoes,
			MaxRTTMs:        ms(f.maxRTT),
			Gaps:            f.gaps,
			GapsDropped:     f.gapsDropped,
		}
		if hadEcho {
			fr.LastEcho = utc(lastEcho)
		}
		if f.err != nil {
			fr.Error = f.err.Error()
			fr.ErrorAt = utc(f.errAt)
			rep.Errored++
		}
		fr.Survived = f.err == nil && hadEcho && end.Sub(lastEcho) <= r.c.AliveWindow
		f.mu.Unlock()

		for i := range fr.Gaps {
			g := &fr.Gaps[i]
			if firstGap.IsZero() || g.Start.Before(firstGap) {
				firstGap = g.Start
			}
			if g.End.After(lastGap) {
				lastGap = g.End
			}
			g.Start, g.End = utc(g.Start), utc(g.End)
		}
		if len(fr.Gaps) > 0 {
			rep.FlowsWithGap++
		}
		if fr.Survived {
			rep.Survived++
		}
		rep.Sent += fr.Sent
		rep.Echoes += fr.Echoes
		longest = append(longest, fr.LongestGapMs)
		rep.PerFlow = append(rep.PerFlow, fr)
	}
	rep.Failed = rep.Flows - rep.Survived
	setups := make([]float64, 0, len(flows))
	for _, f := range flows {
		setups = append(setups, ms(f.setup))
		if f.setup >= SlowConnect {
			rep.SlowConnects++
		}
	}
	rep.ConnectMs = gapStats(setups)
	rep.FirstGapStart, rep.LastGapEnd = utc(firstGap), utc(lastGap)
	rep.GapsMs = gapStats(longest)
	rep.LongestGapMs = rep.GapsMs.Max
	return rep
}

func gapStats(v []float64) GapStats {
	if len(v) == 0 {
		return GapStats{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return GapStats{
		Min: s[0],
		P50: percentile(s, 50),
		P90: percentile(s, 90),
		P99: percentile(s, 99),
		Max: s[len(s)-1],
	}
}

// percentile is the nearest-rank percentile p (0 < p <= 100) of sorted s.
func percentile(s []float64, p float64) float64 {
	if len(s) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}
