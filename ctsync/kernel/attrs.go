package kernel

// Message types and attribute types of ctnetlink, from
// include/uapi/linux/netfilter/nfnetlink_conntrack.h (ti-mo keeps its own
// copies unexported).

// Subsystems of nfnetlink: the high byte of a message's nlmsg_type.
const (
	subsysCT    = 1 // NFNL_SUBSYS_CTNETLINK
	subsysCTExp = 2 // NFNL_SUBSYS_CTNETLINK_EXP
)

// enum cntl_msg_types
const (
	msgCTNew    = 0 // IPCTNL_MSG_CT_NEW
	msgCTGet    = 1 // IPCTNL_MSG_CT_GET
	msgCTDelete = 2 // IPCTNL_MSG_CT_DELETE
)

// enum ctattr_type
const (
	ctaTupleOrig   = 1  // CTA_TUPLE_ORIG
	ctaTupleReply  = 2  // CTA_TUPLE_REPLY
	ctaStatus      = 3  // CTA_STATUS
	ctaProtoInfo   = 4  // CTA_PROTOINFO
	ctaHelp        = 5  // CTA_HELP
	ctaNATSrc      = 6  // CTA_NAT_SRC
	ctaTimeout     = 7  // CTA_TIMEOUT
	ctaMark        = 8  // CTA_MARK
	ctaNATDst      = 13 // CTA_NAT_DST
	ctaSeqAdjOrig  = 15 // CTA_SEQ_ADJ_ORIG
	ctaSeqAdjReply = 16 // CTA_SEQ_ADJ_REPLY
	ctaZone        = 18 // CTA_ZONE
	ctaLabels      = 22 // CTA_LABELS
	ctaLabelsMask  = 23 // CTA_LABELS_MASK
)

// enum ctattr_tuple, ctattr_ip, ctattr_l4proto
const (
	ctaTupleIP    = 1 // CTA_TUPLE_IP
	ctaTupleProto = 2 // CTA_TUPLE_PROTO

	ctaIPv4Src = 1 // CTA_IP_V4_SRC
	ctaIPv4Dst = 2 // CTA_IP_V4_DST
	ctaIPv6Src = 3 // CTA_IP_V6_SRC
	ctaIPv6Dst = 4 // CTA_IP_V6_DST

	ctaProtoNum        = 1 // CTA_PROTO_NUM
	ctaProtoSrcPort    = 2 // CTA_PROTO_SRC_PORT
	ctaProtoDstPort    = 3 // CTA_PROTO_DST_PORT
	ctaProtoICMPID     = 4 // CTA_PROTO_ICMP_ID
	ctaProtoICMPType   = 5 // CTA_PROTO_ICMP_TYPE
	ctaProtoICMPCode   = 6 // CTA_PROTO_ICMP_CODE
	ctaProtoICMPv6ID   = 7 // CTA_PROTO_ICMPV6_ID
	ctaProtoICMPv6Type = 8 // CTA_PROTO_ICMPV6_TYPE
	ctaProtoICMPv6Code = 9 // CTA_PROTO_ICMPV6_CODE
)

// enum ctattr_protoinfo and its protocol nests
const (
	ctaProtoInfoTCP  = 1 // CTA_PROTOINFO_TCP
	ctaProtoInfoDCCP = 2 // CTA_PROTOINFO_DCCP
	ctaProtoInfoSCTP = 3 // CTA_PROTOINFO_SCTP

	ctaTCPState      = 1 // CTA_PROTOINFO_TCP_STATE
	ctaTCPWScaleOrig = 2 // CTA_PROTOINFO_TCP_WSCALE_ORIGINAL
	ctaTCPWScaleRepl = 3 // CTA_PROTOINFO_TCP_WSCALE_REPLY
	ctaTCPFlagsOrig  = 4 // CTA_PROTOINFO_TCP_FLAGS_ORIGINAL
	ctaTCPFlagsRepl  = 5 // CTA_PROTOINFO_TCP_FLAGS_REPLY

	ctaDCCPState        = 1 // CTA_PROTOINFO_DCCP_STATE
	ctaDCCPRole         = 2 // CTA_PROTOINFO_DCCP_ROLE
	ctaDCCPHandshakeSeq = 3 // CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ

	ctaSCTPState    = 1 // CTA_PROTOINFO_SCTP_STATE
	ctaSCTPVTagOrig = 2 // CTA_PROTOINFO_SCTP_VTAG_ORIGINAL
	ctaSCTPVTagRepl = 3 // CTA_PROTOINFO_SCTP_VTAG_REPLY
)

// enum ctattr_help, ctattr_seqadj, ctattr_nat, ctattr_protonat
const (
	ctaHelpName = 1 // CTA_HELP_NAME

	ctaSeqAdjCorrectionPos = 1 // CTA_SEQADJ_CORRECTION_POS
	ctaSeqAdjOffsetBefore  = 2 // CTA_SEQADJ_OFFSET_BEFORE
	ctaSeqAdjOffsetAfter   = 3 // CTA_SEQADJ_OFFSET_AFTER

	ctaNATV4MinIP = 1 // CTA_NAT_V4_MINIP
	ctaNATV4MaxIP = 2 // CTA_NAT_V4_MAXIP
	ctaNATProto   = 3 // CTA_NAT_PROTO
	ctaNATV6MinIP = 4 // CTA_NAT_V6_MINIP
	ctaNATV6MaxIP = 5 // CTA_NAT_V6_MAXIP

	ctaProtoNATPortMin = 1 // CTA_PROTONAT_PORT_MIN
	ctaProtoNATPortMax = 2 // CTA_PROTONAT_PORT_MAX
)
