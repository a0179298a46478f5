package nfqtable

import (
	"errors"
	"fmt"
	"reflect"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// TableName is the name of ctha's own tables, one of family ip and one of
// family ip6. The table `ctha` belongs to examples/ctha.nft, the
// administrator's file. Not one inet table: nft cannot show the compat
// target in an inet table ("unhandled NFPROTO"), while in ip and ip6 it
// shows it as `queue num N bypass`.
const TableName = "ctha_defer"

// families are those of ctha's tables.
var families = []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6}

// ChainName is the table's only chain.
const ChainName = "postrouting"

// Priority is the chain's priority in postrouting: after source NAT
// (srcnat, 100), so that a queued packet's tuple is final, and after the
// administrator's usual filter and NAT chains, so that packets they drop
// are never queued.
const Priority = 200

// Mode is how the rule sends packets to the queue.
type Mode int

// The modes.
const (
	// ModeNone: no rule installed yet.
	ModeNone Mode = iota
	// ModeNative: nftables' queue expression (CONFIG_NFT_QUEUE).
	ModeNative
	// ModeCompat: the xtables NFQUEUE target (revision 3) through nft's
	// compat expression, as iptables-nft installs it
	// (CONFIG_NETFILTER_XT_TARGET_NFQUEUE and CONFIG_NFT_COMPAT).
	ModeCompat
)

func (m Mode) String() string {
	switch m {
	case ModeNone:
		return "none"
	case ModeNative:
		return "native"
	case ModeCompat:
		return "compat"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// Options tune New.
type Options struct {
	// NetNS is a file descriptor of the network namespace to work in; 0 is
	// the calling thread's.
	NetNS int
	// ForceMode installs the rule only this way (tests); ModeNone tries
	// native, then compat.
	ForceMode Mode
}

// Table installs, checks and removes ctha's tables (ip and ip6): each one
// chain in postrouting with one rule, `<match> queue num N bypass`. It
// never touches another table. Its methods are safe for concurrent use.
type Table struct {
	conn  *nftables.Conn
	netns int // 0: the calling thread's
	force Mode

	mu      sync.Mutex // guards the fields below
	mode    Mode
	queue   uint16
	matches []Match
}

// New returns a Table; it talks to the kernel only when used.
func New(opts Options) (*Table, error) {
	var copts []nftables.ConnOption
	if opts.NetNS != 0 {
		copts = append(copts, nftables.WithNetNSFd(opts.NetNS))
	}
	c, err := nftables.New(copts...)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return &Table{conn: c, netns: opts.NetNS, force: opts.ForceMode}, nil
}

// ErrUnsupported is wrapped by Install's error when the kernel lacks every
// queue expression tried (native, compat, or the one forced).
var ErrUnsupported = errors.New("the kernel lacks the queue expression tried")

// Install replaces ctha's tables, in one transaction, with ones that send
// the packets each match selects (a rule per match; none: every packet) to
// queue num, with bypass: while no process is bound to the queue they
// pass. It tries the native queue expression, then the compat target, and
// remembers which one works (Mode).
func (t *Table) Install(queue uint16, matches ...Match) error {
	if len(matches) == 0 {
		matches = []Match{nil}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	modes := []Mode{ModeNative, ModeCompat}
	switch {
	case t.force != ModeNone:
		modes = []Mode{t.force}
	case t.mode != ModeNone:
		modes = []Mode{t.mode} // known to work here
	}
	var errs []error
	for _, m := range modes {
		err := t.installLocked(queue, matches, m)
		if err == nil {
			t.mode, t.queue, t.matches = m, queue, matches
			return nil
		}
		errs = append(errs, fmt.Errorf("%v: %w", m, err))
		if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EOPNOTSUPP) {
			break // not a missing expression
		}
	}
	err := errors.Join(errs...)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EOPNOTSUPP) {
		err = fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	return fmt.Errorf("install tables %s: %w", TableName, err)
}

// Reinstall installs the table again as the last Install did, if Check
// finds it missing or changed (after `nft flush ruleset`, say), and
// reports whether it did.
func (t *Table) Reinstall() (bool, error) {
	ok, err := t.Check()
	if err != nil || ok {
		return false, err
	}
	t.mu.Lock()
	queue, matches, mode := t.queue, t.matches, t.mode
	t.mu.Unlock()
	if mode == ModeNone {
		return false, fmt.Errorf("reinstall tables %s: never installed", TableName)
	}
	return true, t.Install(queue, matches...)
}

func (t *Table) installLocked(queue uint16, matches []Match, m Mode) error {
	for _, fam := range families {
		tab := table(fam)
		// Create, delete, create: replaces the table whether or not it
		// exists, in the same transaction as the rest.
		t.conn.AddTable(tab)
		t.conn.DelTable(tab)
		t.conn.AddTable(tab)
		ch := t.conn.AddChain(chain(tab))
		for _, match := range matches {
			t.conn.AddRule(&nftables.Rule{Table: tab, Chain: ch, Exprs: Rule(queue, match, m), UserData: comment(queue)})
		}
	}
	return t.conn.Flush()
}

// Mode returns how the installed rule queues packets (ModeNone before the
// first Install).
func (t *Table) Mode() Mode {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.mode
}

// Remove deletes ctha's tables if they exist.
func (t *Table) Remove() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var errs []error
	for _, fam := range families {
		// One transaction per table: deleting a missing one fails its
		// transaction (ENOENT), which is what removed means.
		t.conn.DelTable(table(fam))
		if err := t.conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove table %s %s: %w", famName(fam), TableName, err))
		}
	}
	return errors.Join(errs...)
}

// Check reports whether ctha's tables are in the kernel as Install left
// them: each with the chain in postrouting at Priority and its rules, each
// carrying its comment and ending with the queue expression. False after
// `nft flush ruleset` or an administrator's change.
func (t *Table) Check() (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mode == ModeNone {
		return false, nil
	}
	for _, fam := range families {
		ok, err := t.checkLocked(fam)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

func (t *Table) checkLocked(fam nftables.TableFamily) (bool, error) {
	tab := table(fam)
	// A dump, not a get: a missing table or chain is then an empty
	// answer, not an error to recognise.
	chains, err := t.conn.ListChainsOfTableFamily(fam)
	if err != nil {
		return false, fmt.Errorf("check table %s %s: list chains: %w", famName(fam), TableName, err)
	}
	var ch *nftables.Chain
	for _, c := range chains {
		if c.Table != nil && c.Table.Name == TableName && c.Name == ChainName {
			ch = c
		}
	}
	if ch == nil || ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookPostrouting ||
		ch.Priority == nil || *ch.Priority != Priority {
		return false, nil
	}
	rules, err := t.conn.GetRules(tab, ch)
	if err != nil {
		return false, fmt.Errorf("check table %s %s: rules: %w", famName(fam), TableName, err)
	}
	if len(rules) != len(t.matches) {
		return false, nil
	}
	want, _ := userdata.GetString(comment(t.queue), userdata.TypeComment)
	for _, r := range rules {
		if len(r.Exprs) == 0 {
			return false, nil
		}
		got, _ := userdata.GetString(r.UserData, userdata.TypeComment)
		if got != want || !reflect.DeepEqual(r.Exprs[len(r.Exprs)-1], QueueExpr(t.queue, t.mode)) {
			return false, nil
		}
	}
	return true, nil
}

func famName(fam nftables.TableFamily) string {
	if fam == nftables.TableFamilyIPv6 {
		return "ip6"
	}
	return "ip"
}

func table(fam nftables.TableFamily) *nftables.Table {
	return &nftables.Table{Name: TableName, Family: fam}
}

func chain(tab *nftables.Table) *nftables.Chain {
	accept := nftables.ChainPolicyAccept
	return &nftables.Chain{
		Name:     ChainName,
		Table:    tab,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookPostrouting,
		Priority: nftables.ChainPriorityRef(Priority),
		Policy:   &accept,
	}
}

// comment is the rule's user data: a comment `nft list` shows, which
// Check looks for.
func comment(queue uint16) []byte {
	return userdata.AppendString(nil, userdata.TypeComment, fmt.Sprintf("ctha defer: queue %d", queue))
}

// Rule returns the expressions of the rule: match, then the queue
// expression of mode m (with bypass).
func Rule(queue uint16, match Match, m Mode) []expr.Any {
	exprs := append([]expr.Any(nil), match...)
	return append(exprs, QueueExpr(queue, m))
}
