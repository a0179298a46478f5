package integration

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// logRecord is one line of a daemon's text log (log/slog's text
// handler): its time and its key=value attributes, msg included.
type logRecord struct {
	at    time.Time
	attrs map[string]string
}

// parseLog reads the records of a text log; lines that are not records
// (a tail's indentation aside) are skipped.
func parseLog(log string) []logRecord {
	var recs []logRecord
	for _, line := range strings.Split(log, "\n") {
		attrs := logfmt(strings.TrimSpace(line))
		at, err := time.Parse(time.RFC3339Nano, attrs["time"])
		if err != nil {
			continue
		}
		recs = append(recs, logRecord{at: at, attrs: attrs})
	}
	return recs
}

// logfmt splits key=value pairs, values bare or quoted as Go strings.
func logfmt(line string) map[string]string {
	m := map[string]string{}
	for line != "" {
		eq := strings.IndexByte(line, '=')
		if eq <= 0 {
			break
		}
		key, rest := line[:eq], line[eq+1:]
		var val string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				break
			}
			val, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			end := strings.IndexByte(rest, ' ')
			if end < 0 {
				end = len(rest)
			}
			val, rest = rest[:end], rest[end:]
		}
		m[key] = val
		line = strings.TrimLeft(rest, " ")
	}
	return m
}

// firstLog is the time of the first record whose attributes include
// every pair of want; ok false if none does.
func firstLog(recs []logRecord, want map[string]string) (at time.Time, ok bool) {
	for _, r := range recs {
		match := true
		for k, v := range want {
			if r.attrs[k] != v {
				match = false
				break
			}
		}
		if match {
			return r.at, true
		}
	}
	return time.Time{}, false
}

func TestParseLog(t *testing.T) {
	log := `        time=2026-12-07T13:19:19.116Z level=INFO msg="complete copy from the peer received" sync=sync0 peer=fw3 entries=36
time=2026-12-07T13:19:19.131Z level=INFO msg="preemption allowed" group=a reason="bulk copy complete" took=53.5ms
not a record
time=bad level=INFO msg=x
time=2026-12-07T13:19:19.763Z level=INFO msg="group transition" group=a from=BACKUP to=MASTER err="x \"y\""`
	recs := parseLog(log)
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3: %+v", len(recs), recs)
	}
	want := map[string]string{"time": "2026-12-07T13:19:19.763Z", "level": "INFO", "msg": "group transition",
		"group": "a", "from": "BACKUP", "to": "MASTER", "err": `x "y"`}
	if d := cmp.Diff(want, recs[2].attrs); d != "" {
		t.Errorf("attributes (-want +got):\n%s", d)
	}
	for _, tc := range []struct {
		name string
		want map[string]string
		at   string
		ok   bool
	}{
		{"copy", map[string]string{"msg": "complete copy from the peer received", "peer": "fw3"}, "2026-12-07T13:19:19.116Z", true},
		{"preempt", map[string]string{"msg": "preemption allowed", "group": "a", "reason": "bulk copy complete"}, "2026-12-07T13:19:19.131Z", true},
		{"none", map[string]string{"msg": "preemption allowed", "group": "b"}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at, ok := firstLog(recs, tc.want)
			if ok != tc.ok || ok && at.Format(time.RFC3339Nano) != tc.at {
				t.Errorf("firstLog = %v, %v; want %s, %v", at, ok, tc.at, tc.ok)
			}
		})
	}
}
