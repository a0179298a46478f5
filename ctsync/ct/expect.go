package ct

import "fmt"

// Expect is a conntrack expectation: a connection a helper (FTP, SIP, ...)
// expects as related to its master flow. The kernel identifies it by its
// tuple and zone; the master is found by its original tuple and zone.
type Expect struct {
	Master  Tuple  // the master flow's original tuple
	Tuple   Tuple  // the expected connection's original tuple
	Mask    Tuple  // which bits of Tuple must match (a zero port: any)
	Zone    uint16 // of the expectation and of its master
	Timeout uint32 // seconds left
	Flags   uint32 // NF_CT_EXPECT_* (permanent, inactive, userspace)
	Class   uint32 // the helper's expectation class
	Helper  string // the helper's name ("ftp")
	Fn      string // the expectation function (NAT), "" for none
}

// Key returns the expectation's identity: Key.Expect is set, so it never
// equals a flow's.
func (e *Expect) Key() Key { return Key{Orig: e.Tuple, Zone: e.Zone, Expect: true} }

// MasterKey returns the key of the expectation's master flow.
func (e *Expect) MasterKey() Key { return Key{Orig: e.Master, Zone: e.Zone} }

func (e *Expect) String() string {
	return fmt.Sprintf("expect %v master %v zone %d helper %q timeout %ds", e.Tuple, e.Master, e.Zone, e.Helper, e.Timeout)
}
