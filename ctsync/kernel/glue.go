package kernel

import "github.com/ctha/ctha/ctsync/ct"

// DecodeFlowAttrs decodes a run of ctnetlink flow attributes
// (CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_STATUS, CTA_PROTOINFO, ...) into f,
// with the same in-place decoder as the event listener. It is for nests
// that carry a flow outside a ctnetlink message: nfnetlink_queue's NFQA_CT
// (the conntrack entry of a queued packet, where the kernel has
// CONFIG_NETFILTER_NETLINK_GLUE_CT) holds exactly these attributes. A tuple
// the attributes lack is protocol 0 between unspecified IPv4 addresses.
func DecodeFlowAttrs(f *ct.Flow, attrs []byte) error { return decodeFlow(f, attrs) }
