package lab

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ErrNoInvalidRule is returned by InvalidDrops when the ruleset has no
// `ct state invalid counter drop` rule.
var ErrNoInvalidRule = errors.New("no `ct state invalid counter drop` rule")

// Nft loads an nftables script (`nft -f -`) in role's namespace, for
// example a rule that injects loss: `numgen random mod 100 < 10 drop`.
func (l *Lab) Nft(role, script string) error {
	if err := checkRole(role); err != nil {
		return err
	}
	if _, err := run(DefaultTimeout, script, nsArgv(l.NS(role), "nft", "-f", "-")...); err != nil {
		return fmt.Errorf("nft in %s: %w", role, err)
	}
	return nil
}

// InvalidDrops reads the packet count of the `ct state invalid counter
// drop` rule of a firewall (fw1 or fw2): how many packets of live flows
// arrived before their conntrack state did.
// It lists the forward chain only (nft 1.0.6 aborts listing in JSON a set
// with concatenated elements, should a ruleset hold one).
func (l *Lab) InvalidDrops(role string) (uint64, error) {
	out, err := l.Exec(role, "nft", "-j", "list", "chain", "inet", "fw", "forward")
	if err != nil {
		return 0, fmt.Errorf("invalid drops of %s: %w", role, err)
	}
	n, err := parseInvalidDrops([]byte(out))
	if err != nil {
		return 0, fmt.Errorf("invalid drops of %s: %w", role, err)
	}
	return n, nil
}

// nftExpr is the part of an `nft -j` rule expression InvalidDrops reads.
type nftExpr struct {
	Match *struct {
		Left struct {
			Ct *struct {
				Key string `json:"key"`
			} `json:"ct"`
		} `json:"left"`
		Right json.RawMessage `json:"right"`
	} `json:"match"`
	Counter *struct {
		Packets uint64 `json:"packets"`
	} `json:"counter"`
	Drop json.RawMessage `json:"drop"`
}

// parseInvalidDrops finds the first rule matching ct state invalid, with a
// counter and a drop verdict, in `nft -j list ruleset` output.
func parseInvalidDrops(data []byte) (uint64, error) {
	var doc struct {
		Nftables []struct {
			Rule *struct {
				Expr []nftExpr `json:"expr"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return 0, fmt.Errorf("decode nft json: %w", err)
	}
	for _, obj := range doc.Nftables {
		if obj.Rule == nil {
			continue
		}
		var invalid, drop bool
		var packets *uint64
		for _, e := range obj.Rule.Expr {
			switch {
			case e.Match != nil && e.Match.Left.Ct != nil && e.Match.Left.Ct.Key == "state":
				invalid = invalid || matchesInvalid(e.Match.Right)
			case e.Counter != nil:
				packets = &e.Counter.Packets
			case e.Drop != nil:
				drop = true
			}
		}
		if invalid && drop && packets != nil {
			return *packets, nil
		}
	}
	return 0, ErrNoInvalidRule
}

// matchesInvalid reports whether the right-hand side of a ct state match
// ("invalid", ["invalid", ...] or {"set": [...]}) includes invalid.
func matchesInvalid(right json.RawMessage) bool {
	var one string
	if json.Unmarshal(right, &one) == nil {
		return one == "invalid"
	}
	var list []string
	if json.Unmarshal(right, &list) == nil {
		for _, s := range list {
			if s == "invalid" {
				return true
			}
		}
		return false
	}
	var set struct {
		Set []string `json:"set"`
	}
	if json.Unmarshal(right, &set) == nil {
		for _, s := range set.Set {
			if s == "invalid" {
				return true
			}
		}
	}
	return false
}
