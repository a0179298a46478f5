package auth_test

import (
	"errors"
	"fmt"

	"github.com/ctha/ctha/ctsync/auth"
)

// A datagram's journey: sealed by one node, opened and checked for replays
// by the other.
func Example() {
	key := auth.Key{1, 2, 3} // in the daemon: auth.ParseKey of the key file

	// Sender: the epoch comes from auth.NextEpoch at start.
	h := auth.Header{Sender: auth.NewSenderID(), Epoch: 4, Seq: 1}
	buf := make([]byte, 0, 1500)
	datagram := auth.Seal(buf, &key, h, []byte("records"))

	// Receiver: the minimum epoch comes from auth.LoadPeerEpoch.
	guard := auth.NewReplayGuard(3)
	guard.SetSelf(auth.NewSenderID())
	for range 2 {
		got, payload, err := auth.Open(&key, datagram)
		if err == nil {
			err = guard.Check(got)
		}
		if errors.Is(err, auth.ErrReplay) {
			fmt.Println("replay rejected")
			continue
		}
		guard.Accept(got) // after the payload was handled
		fmt.Printf("epoch %d seq %d: %s\n", got.Epoch, got.Seq, payload)
	}
	// Output:
	// epoch 4 seq 1: records
	// replay rejected
}
