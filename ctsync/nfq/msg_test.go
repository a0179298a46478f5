package nfq

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ctha/ctha/ctsync/ct"
)

// unhex decodes hex with spaces, newlines and `#` comments.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	var clean strings.Builder
	for line := range strings.SplitSeq(s, "\n") {
		line, _, _ = strings.Cut(line, "#")
		clean.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(clean.String())
	if err != nil {
		t.Fatalf("golden hex: %v", err)
	}
	return b
}

// flowCmp compares flows with ct.Flow.Equal (which cmp would call on nil).
var flowCmp = cmp.Comparer(func(a, b *ct.Flow) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(b) && a.Extra == nil == (b.Extra == nil)
})

func littleEndian(t testing.TB) {
	t.Helper()
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the golden messages have little-endian netlink headers")
	}
}

// goldenGlue is a packet message as a kernel with the conntrack glue
// sends it, laid out by hand from the uapi headers
// (nfnetlink_queue.h, nfnetlink_conntrack.h): the SYN of
// 10.10.1.100:50000 -> 10.10.2.100:80, queued in postrouting after source
// NAT to 10.10.2.1:20001, copy range 40 of 60 bytes.
const goldenGlue = `
10 01 00 00  00 03  00 00  00 00 00 00  00 00 00 00   # nlmsghdr: 272 bytes, NFNL_SUBSYS_QUEUE<<8 | NFQNL_MSG_PACKET
02 00 0c 62                                            # nfgenmsg: NFPROTO_IPV4, v0, queue 3170
0b 00 01 00  00 00 00 05  08 00  04  00                # NFQA_PACKET_HDR: id 5, hw_protocol 0x0800, hook 4 (postrouting), pad
08 00 06 00  00 00 00 03                               # NFQA_IFINDEX_OUTDEV 3
ac 00 0b 80                                            # NFQA_CT, nested, 172 bytes
  34 00 01 80                                          #   CTA_TUPLE_ORIG
    14 00 01 80                                        #     CTA_TUPLE_IP
      08 00 01 00  0a 0a 01 64                         #       CTA_IP_V4_SRC 10.10.1.100
      08 00 02 00  0a 0a 02 64                         #       CTA_IP_V4_DST 10.10.2.100
    1c 00 02 80                                        #     CTA_TUPLE_PROTO
      05 00 01 00  06 00 00 00                         #       CTA_PROTO_NUM 6, padded
      06 00 02 00  c3 50 00 00                         #       CTA_PROTO_SRC_PORT 50000
      06 00 03 00  00 50 00 00                         #       CTA_PROTO_DST_PORT 80
  34 00 02 80                                          #   CTA_TUPLE_REPLY
    14 00 01 80
      08 00 01 00  0a 0a 02 64                         #       src 10.10.2.100
      08 00 02 00  0a 0a 02 01                         #       dst 10.10.2.1 (the SNAT address)
    1c 00 02 80
      05 00 01 00  06 00 00 00
      06 00 02 00  00 50 00 00                         #       sport 80
      06 00 03 00  4e 21 00 00                         #       dport 20001 (the SNAT port)
  08 00 03 00  00 00 01 90                             #   CTA_STATUS SRC_NAT | SRC_NAT_DONE | DST_NAT_DONE
  08 00 07 00  00 00 00 78                             #   CTA_TIMEOUT 120
  28 00 04 80                                          #   CTA_PROTOINFO
    24 00 01 80                                        #     CTA_PROTOINFO_TCP
      05 00 01 00  01 00 00 00                         #       STATE 1 (SYN_SENT)
      05 00 02 00  07 00 00 00                         #       WSCALE_ORIGINAL 7
      05 00 03 00  00 00 00 00                         #       WSCALE_REPLY 0
      06 00 04 00  03 03 00 00                         #       FLAGS_ORIGINAL {flags 3, mask 3}
  08 00 0c 00  de ad be ef                             #   CTA_ID
08 00 0c 00  00 00 00 02                               # NFQA_CT_INFO: IP_CT_NEW
08 00 0d 00  00 00 00 3c                               # NFQA_CAP_LEN 60
2c 00 0a 00                                            # NFQA_PAYLOAD, 40 bytes
  45 00 00 3c  12 34 40 00  3f 06 00 00  0a 0a 02 01  0a 0a 02 64
  4e 21 00 50  00 00 00 01  00 00 00 00  a0 02 fa f0  00 00 00 00
`

func TestUnmarshalGolden(t *testing.T) {
	littleEndian(t)
	b := unhex(t, goldenGlue)
	if got := binary.NativeEndian.Uint32(b); int(got) != len(b) {
		t.Fatalf("golden message: header says %d bytes, has %d", got, len(b))
	}
	var p Packet
	if err := p.UnmarshalBinary(b); err != nil {
		t.Fatalf("UnmarshalBinary: %v", err)
	}
	a := netip.MustParseAddr
	want := &ct.Flow{
		Orig:    ct.NewTuple(ct.ProtoTCP, a("10.10.1.100"), a("10.10.2.100"), 50000, 80),
		Reply:   ct.NewTuple(ct.ProtoTCP, a("10.10.2.100"), a("10.10.2.1"), 80, 20001),
		Status:  ct.StatusSrcNAT | ct.StatusSrcNATDone | ct.StatusDstNATDone,
		Timeout: 120,
		TCP:     ct.TCPInfo{State: ct.TCPSynSent, WScaleOrig: 7, FlagsOrig: 3},
	}
	if diff := cmp.Diff(want, p.CT, flowCmp); diff != "" {
		t.Errorf("CT (-want +got):\n%s", diff)
	}
	if !p.CT.SrcNAT() || p.CT.DstNAT() {
		t.Errorf("SrcNAT %v DstNAT %v, want source NAT only", p.CT.SrcNAT(), p.CT.DstNAT())
	}
	p.CT, p.CTAttrs = nil, nil
	wantP := Packet{Queue: 3170, Family: 2, ID: 5, HWProto: 0x0800, Hook: HookPostrouting, OutDev: 3,
		CapLen: 60, CTInfo: CTNew, Payload: b[len(b)-40:]}
	if diff := cmp.Diff(wantP, p, flowCmp); diff != "" {
		t.Errorf("packet (-want +got):\n%s", diff)
	}
}

// TestMarshalGolden: AppendBinary lays the golden message out the same
// way, byte for byte.
func TestMarshalGolden(t *testing.T) {
	littleEndian(t)
	b := unhex(t, goldenGlue)
	var p Packet
	if err := p.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	got, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(b, got); diff != "" {
		t.Errorf("MarshalBinary (-golden +got):\n%s", diff)
	}
}

// TestUnmarshalIPv6NoGlue: a packet of a queue bound without the glue
// (this machine's kernel): no NFQA_CT, CT is nil.
func TestUnmarshalIPv6NoGlue(t *testing.T) {
	littleEndian(t)
	b := unhex(t, `
3a 00 00 00  00 03  00 00  00 00 00 00  00 00 00 00   # 58 bytes: the last attribute unpadded, as the kernel sends it
0a 00 00 03                                            # NFPROTO_IPV6, queue 3
0b 00 01 00  00 00 01 00  86 dd  03  00                # id 256, 0x86dd, hook 3 (output)
08 00 03 00  00 00 00 2a                               # NFQA_MARK 42
08 00 0e 00  00 00 00 01                               # NFQA_SKB_INFO CSUMNOTREADY
0a 00 0a 00  60 00 00 00  00 14                        # NFQA_PAYLOAD, 6 bytes
`)
	var p Packet
	if err := p.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	want := Packet{Queue: 3, Family: 10, ID: 256, HWProto: 0x86dd, Hook: HookOutput, Mark: 42, SKBInfo: 1,
		Payload: []byte{0x60, 0, 0, 0, 0, 0x14}}
	if diff := cmp.Diff(want, p, flowCmp); diff != "" {
		t.Errorf("packet (-want +got):\n%s", diff)
	}
}

func TestUnmarshalErrors(t *testing.T) {
	littleEndian(t)
	golden := unhex(t, goldenGlue)
	tests := []struct {
		name   string
		b      []byte
		err    error
		wantID uint32 // the id is still read when the header is sound
	}{
		{name: "empty", b: nil, err: ErrMalformed},
		{name: "short header", b: golden[:10], err: ErrMalformed},
		{name: "length past the end", b: golden[:100], err: ErrMalformed},
		{name: "verdict message", b: unhex(t, "14 00 00 00 01 03 00 00 00 00 00 00 00 00 00 00 00 00 00 00"), err: ErrNotPacket},
		{name: "no packet header", b: unhex(t, "1c 00 00 00 00 03 00 00 00 00 00 00 00 00 00 00 02 00 00 00 08 00 03 00 00 00 00 01"), err: ErrMalformed},
		{name: "short packet header", b: unhex(t, "1c 00 00 00 00 03 00 00 00 00 00 00 00 00 00 00 02 00 00 00 08 00 01 00 00 00 00 01"), err: ErrMalformed},
		{name: "attribute past the end", b: unhex(t, "1c 00 00 00 00 03 00 00 00 00 00 00 00 00 00 00 02 00 00 00 0c 00 03 00 00 00 00 01"), err: ErrMalformed},
		{name: "mark of 2 bytes", b: unhex(t, `
24 00 00 00  00 03 00 00  00 00 00 00  00 00 00 00  02 00 00 00
0b 00 01 00  00 00 00 07  08 00 04 00
06 00 03 00  00 01 00 00`), err: ErrMalformed, wantID: 7},
		{name: "conntrack without ctinfo", b: func() []byte {
			b := append([]byte(nil), golden...)
			b[16+4+12+8+172+2] = 0x0e // NFQA_CT_INFO becomes NFQA_SKB_INFO
			return b
		}(), err: ErrMalformed, wantID: 5},
		{name: "broken conntrack nest", b: func() []byte {
			b := append([]byte(nil), golden...)
			b[16+4+12+8+4] = 0xff // CTA_TUPLE_ORIG's length past the nest
			return b
		}(), err: ErrMalformed, wantID: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Packet
			err := p.UnmarshalBinary(tt.b)
			if !errors.Is(err, tt.err) {
				t.Fatalf("UnmarshalBinary = %v, want %v", err, tt.err)
			}
			if p.ID != tt.wantID {
				t.Errorf("ID = %d, want %d", p.ID, tt.wantID)
			}
		})
	}
}

func TestAppendVerdict(t *testing.T) {
	littleEndian(t)
	tests := []struct {
		name  string
		batch bool
		v     Verdict
		want  string
	}{
		{name: "accept", v: Accept, want: `
20 00 00 00  01 03  01 00  00 00 00 00  00 00 00 00   # 32 bytes, NFQNL_MSG_VERDICT, NLM_F_REQUEST
00 00 0c 62                                            # queue 3170
0c 00 02 00  00 00 00 01  00 00 01 00                  # NFQA_VERDICT_HDR: NF_ACCEPT, id 256
`},
		{name: "batch drop", batch: true, v: Drop, want: `
20 00 00 00  03 03  01 00  00 00 00 00  00 00 00 00   # NFQNL_MSG_VERDICT_BATCH
00 00 0c 62
0c 00 02 00  00 00 00 00  00 00 01 00                  # NF_DROP, every id up to 256
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := appendVerdict(nil, 3170, 256, tt.v, tt.batch, 0, 0)
			if diff := cmp.Diff(unhex(t, tt.want), got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestAppendConfig(t *testing.T) {
	littleEndian(t)
	maxLen := uint32(8192)
	got := appendConfig(nil, 3170, config{cmd: cmdBind, copyMode: copyPacket, copyRange: 128, maxLen: &maxLen,
		mask: flagFailOpen | flagGSO | flagConntrack, flags: flagFailOpen | flagGSO}, 7)
	want := unhex(t, `
40 00 00 00  02 03  05 00  07 00 00 00  00 00 00 00   # 64 bytes, NFQNL_MSG_CONFIG, NLM_F_REQUEST|NLM_F_ACK, seq 7
00 00 0c 62                                            # queue 3170
08 00 01 00  01 00 00 00                               # NFQA_CFG_CMD: NFQNL_CFG_CMD_BIND
09 00 02 00  00 00 00 80  02 00 00 00                  # NFQA_CFG_PARAMS: range 128, NFQNL_COPY_PACKET (packed), padded
08 00 03 00  00 00 20 00                               # NFQA_CFG_QUEUE_MAXLEN 8192
08 00 04 00  00 00 00 07                               # NFQA_CFG_MASK: FAIL_OPEN | CONNTRACK | GSO
08 00 05 00  00 00 00 05                               # NFQA_CFG_FLAGS: FAIL_OPEN | GSO
`)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestParseError(t *testing.T) {
	littleEndian(t)
	// NLMSG_ERROR -EPERM answering seq 9 (NETLINK_CAP_ACK: the request's
	// header only).
	b := unhex(t, `
24 00 00 00  02 00  00 01  09 00 00 00  00 00 00 00
ff ff ff ff
3c 00 00 00  02 03  05 00  09 00 00 00  00 00 00 00`)
	_, _, _, body, err := splitMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	errno, seq, err := parseError(body)
	if err != nil || errno != 1 || seq != 9 {
		t.Errorf("parseError = errno %d, seq %d, %v; want 1 (EPERM), 9, nil", errno, seq, err)
	}
}
