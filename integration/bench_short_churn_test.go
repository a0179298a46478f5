package integration

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ctha/ctha/ctsync/ct"
	"github.com/ctha/ctha/ctsync/kernel"
)

// shortChurner creates shortChurn entries in the master's kernel every
// shortChurnEvery, deleting the previous burst's first, so that the table
// holds at most the background plus one burst.
type shortChurner struct {
	c    *kernel.Conn
	quit chan struct{}
	done chan struct{}

	// Owned by run while it runs, then by the caller of stop.
	sets    [2][]ct.Flow
	created [2]int // entries of each set created and not deleted, a prefix

	bursts, late, failed atomic.Int64
}

func (s *shortChurner) start() {
	s.quit, s.done = make(chan struct{}), make(chan struct{})
	for i, net := range shortChurnNets {
		s.sets[i] = estFlows(net, shortChurn)
	}
	go s.run()
}

// stop ends the churn after the chunk being written; idempotent.
func (s *shortChurner) stop() {
	if s.quit == nil {
		return
	}
	select {
	case <-s.quit:
	default:
		close(s.quit)
	}
	<-s.done
}

func (s *shortChurner) quitting() bool {
	select {
	case <-s.quit:
		return true
	default:
		return false
	}
}

func (s *shortChurner) run() {
	defer close(s.done)
	tick := time.NewTicker(shortChurnEvery)
	defer tick.Stop()
	for burst := 0; ; burst++ {
		began := time.Now()
		cur, prev := burst%2, (burst+1)%2
		if !s.deleteSet(prev) || !s.createSet(cur) {
			return
		}
		s.bursts.Add(1)
		if time.Since(began) > shortChurnEvery {
			s.late.Add(1)
		}
		select {
		case <-s.quit:
			return
		case <-tick.C:
		}
	}
}

// createSet creates set i chunk by chunk; false if told to quit.
func (s *shortChurner) createSet(i int) bool {
	for s.created[i] < len(s.sets[i]) {
		if s.quitting() {
			return false
		}
		chunk := s.sets[i][s.created[i]:min(s.created[i]+shortChurnChunk, len(s.sets[i]))]
		res, _ := s.c.Write(context.Background(), kernel.Create, chunk, kernel.WriteOptions{BatchSize: 512})
		s.failed.Add(int64(len(res.Failed)))
		s.created[i] += len(chunk)
	}
	return true
}

// deleteSet deletes what set i has created, from its end; false if told
// to quit.
func (s *shortChurner) deleteSet(i int) bool {
	for s.created[i] > 0 {
		if s.quitting() {
			return false
		}
		from := max(0, s.created[i]-shortChurnChunk)
		res, _ := s.c.Write(context.Background(), kernel.Delete, s.sets[i][from:s.created[i]], kernel.WriteOptions{BatchSize: 512})
		s.failed.Add(int64(len(res.Failed)))
		s.created[i] = from
	}
	return true
}

// clear deletes every entry of both churn sets once the churn has
// stopped, those it knows it created and any that came back (keepalived +
// conntrackd after a false takeover: the new master's bulk update writes
// entries already deleted back into the old master's kernel). Missing
// entries (ENOENT) are no failure.
func (s *shortChurner) clear(tb testing.TB) {
	tb.Helper()
	s.stop()
	for i := range s.sets {
		res, err := s.c.Write(context.Background(), kernel.Delete, s.sets[i], kernel.WriteOptions{BatchSize: 512})
		if err != nil {
			tb.Fatalf("delete the churn's entries: %v", err)
		}
		for _, f := range res.Failed {
			if !errors.Is(f.Err, unix.ENOENT) {
				s.failed.Add(1)
			}
		}
		s.created[i] = 0
	}
}
