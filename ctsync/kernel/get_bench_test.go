package kernel

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/internal/nstest"
)

// BenchmarkReadTable: reading some entries of a table of 40 000 by lookup
// (Get) against reading the whole table (Dump). A dump's cost is the
// table's and the hash's (every bucket is walked); a lookup's, the
// entries asked for. It reports the time per pass.
//
//	go test ./ctsync/kernel/ -run '^$' -bench ReadTable
func BenchmarkReadTable(b *testing.B) {
	ns := nstest.New(b, "ctk")
	var c *Conn
	if err := ns.In(func() (err error) { c, err = Dial(); return err }); err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	const size = 40000
	flows := make([]ct.Flow, size)
	keys := make([]ct.Key, size)
	for i := range flows {
		flows[i] = plain(ct.ProtoUDP, "10.1.0.1", fmt.Sprintf("10.2.%d.%d", i/250, i%250+1), uint16(1024+i%60000), 53)
		flows[i].Timeout = 600
		keys[i] = flows[i].Key()
	}
	if res, err := c.Write(context.Background(), Create, flows, WriteOptions{}); err != nil || res.OK != size {
		b.Fatalf("create %d flows: %d written, %v", size, res.OK, err)
	}
	ctx := context.Background()
	b.Run("dump", func(b *testing.B) {
		for b.Loop() {
			if err := c.Dump(ctx, func(ct.Flow) bool { return true }); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, n := range []int{100, 1000, size} {
		b.Run(fmt.Sprintf("get-%d", n), func(b *testing.B) {
			start := time.Now()
			for b.Loop() {
				if _, err := c.Get(ctx, keys[:n], func(ct.Flow) {}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N)/float64(n), "ns/entry")
		})
	}
}
