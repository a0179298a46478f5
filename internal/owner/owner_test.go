package owner

import (
	"context"
	"errors"
	"testing"
	"time"
)

// loop owns n: it runs what it is handed until stop is closed.
func loop(ctl chan func(), stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case f := <-ctl:
			f()
		case <-stop:
			return
		}
	}
}

func TestDo(t *testing.T) {
	ctl, stop, done := make(chan func()), make(chan struct{}), make(chan struct{})
	go loop(ctl, stop, done)
	n := 0
	for range 3 {
		if err := Do(context.Background(), ctl, done, func() { n++ }); err != nil {
			t.Fatal(err)
		}
	}
	if n != 3 { // read after Do returned: the loop ran it before
		t.Fatalf("ran %d times, want 3", n)
	}

	// The owner is busy: the caller's context bounds the wait.
	block, busy := make(chan struct{}), make(chan struct{})
	go func() { _ = Do(context.Background(), ctl, done, func() { close(busy); <-block }) }()
	<-busy
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := Do(ctx, ctl, done, func() { n++ }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("busy owner: got %v, want the deadline", err)
	}
	close(block)

	close(stop)
	<-done
	if err := Do(context.Background(), ctl, done, func() { n++ }); !errors.Is(err, ErrStopped) {
		t.Fatalf("ended owner: got %v, want ErrStopped", err)
	}
	if n != 3 {
		t.Fatalf("a function ran after its caller gave up or the owner ended: n = %d", n)
	}
}
