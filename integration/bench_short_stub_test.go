package integration

// TEMPORARY until h-bench's startHA lands: delete this file on merging it.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ctha/ctha/integration/bench"
)

const rtPriority = 50

func cthaConfig(tb testing.TB, stack, role string, advert time.Duration) string {
	tb.Helper()
	conf := exampleConfig(tb, role+".hcl")
	conf = strings.ReplaceAll(conf, `advert_interval = "1s"`, fmt.Sprintf("advert_interval = %q", advert.String()))
	if stack == bench.CthaRT {
		conf = fmt.Sprintf("realtime_priority = %d\n", rtPriority) + conf
	}
	return conf
}
