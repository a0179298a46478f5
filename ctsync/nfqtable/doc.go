// Package nfqtable owns ctha's own nftables tables, `table ip ctha_defer`
// and `table ip6 ctha_defer`: each one chain in postrouting, after source
// NAT, with one rule that sends the packets multiprimary's `defer` holds
// to an NFQUEUE, with bypass, so traffic flows whenever ctha is not bound
// to the queue.
//
// The rule uses nftables' native queue expression where the kernel has it
// (CONFIG_NFT_QUEUE), else the xtables NFQUEUE target through nft's compat
// expression, as iptables-nft does; Install tries them in that order and
// Mode reports which one is in use. Check tells whether the tables are still
// as installed (`nft flush ruleset` removes them) and Reinstall puts them back;
// the caller logs that. Watch wakes such a reconcile on every change of the
// ruleset, so nobody polls. Nothing here changes another table.
//
// Table's methods are safe for concurrent use. The package never logs.
package nfqtable
