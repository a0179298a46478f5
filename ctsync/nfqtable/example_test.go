package nfqtable_test

import (
	"fmt"
	"log"

	"github.com/ctha/ctha/ctsync/nfq"
	"github.com/ctha/ctha/ctsync/nfqtable"
)

// Queue the SYNs that leave the node, after source NAT, to queue 3170, and
// let each pass after a look at its headers. Not run: it needs root.
func Example() {
	tab, err := nfqtable.New(nfqtable.Options{})
	if err != nil {
		log.Fatal(err)
	}
	if err := tab.Install(3170, nfqtable.MatchTCPSyn()); err != nil {
		log.Fatal(err)
	}
	defer tab.Remove()
	fmt.Println("queue rule:", tab.Mode()) // native or compat

	q, err := nfq.Open(3170, nfq.Options{Conntrack: true})
	if err != nil {
		log.Fatal(err) // nfq.ErrQueueTaken: another process has the queue
	}
	defer q.Close() // accepts what is still held, then unbinds
	fmt.Println("conntrack glue:", q.Glue())

	for p := range q.Packets() {
		if p.CT != nil {
			fmt.Println("flow", p.CT.Orig, "reply", p.CT.Reply)
		}
		if err := q.Verdict(p.ID, nfq.Accept); err != nil {
			log.Print(err)
		}
		// After `nft flush ruleset`: put the table back (and log it).
		if restored, err := tab.Reinstall(); err != nil || restored {
			log.Printf("queue table restored %v: %v", restored, err)
		}
	}
}
