package nfqtable

import (
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
)

func unhex(t *testing.T, s string) []byte {
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

func littleEndian(t *testing.T) {
	t.Helper()
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the golden bytes have little-endian netlink headers")
	}
}

// TestQueueExprGolden: the two encodings of `queue num 3170 bypass`, laid
// out by hand from linux/netfilter/nf_tables.h and xt_NFQUEUE.h. The
// native one cannot run on a kernel without CONFIG_NFT_QUEUE, so this is
// its test; the compat one also runs in TestTableQueueNetns.
func TestQueueExprGolden(t *testing.T) {
	littleEndian(t)
	tests := []struct {
		name string
		mode Mode
		want string
	}{
		{name: "native", mode: ModeNative, want: `
0a 00 01 00  71 75 65 75 65 00 00 00       # NFTA_EXPR_NAME "queue", padded
1c 00 02 80                                # NFTA_EXPR_DATA, nested, 28 bytes
  06 00 01 00  0c 62 00 00                 #   NFTA_QUEUE_NUM 3170 (big-endian), padded
  06 00 02 00  00 01 00 00                 #   NFTA_QUEUE_TOTAL 1
  06 00 03 00  00 01 00 00                 #   NFTA_QUEUE_FLAGS NFT_QUEUE_FLAG_BYPASS
`},
		{name: "compat", mode: ModeCompat, want: `
0b 00 01 00  74 61 72 67 65 74 00 00       # NFTA_EXPR_NAME "target", padded
24 00 02 80                                # NFTA_EXPR_DATA, nested, 36 bytes
  0c 00 01 00  4e 46 51 55 45 55 45 00     #   NFTA_TARGET_NAME "NFQUEUE"
  08 00 02 00  00 00 00 03                 #   NFTA_TARGET_REV 3 (big-endian)
  0c 00 03 00                              #   NFTA_TARGET_INFO: struct xt_NFQ_info_v3, host order, XT_ALIGNed to 8
    62 0c  01 00  01 00  00 00             #     queuenum 3170, queues_total 1, flags NFQ_FLAG_BYPASS, padding
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := QueueExpr(3170, tt.mode)
			got, err := expr.Marshal(unix.NFPROTO_IPV4, e)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(unhex(t, tt.want), got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestNFQInfoV3(t *testing.T) {
	littleEndian(t)
	if diff := cmp.Diff([]byte{0xff, 0xff, 1, 0, 1, 0, 0, 0}, NFQInfoV3(65535)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// What nftables' decoder makes of it: an opaque blob, kept as is.
	info := xt.Unknown(NFQInfoV3(7))
	b, err := xt.Marshal(unix.NFPROTO_IPV4, xtNFQueueRev, &info)
	if err != nil {
		t.Fatal(err)
	}
	back, err := xt.Unmarshal(xtNFQueueName, unix.NFPROTO_IPV4, xtNFQueueRev, b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&info, back); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestMatchTCPSynGolden: `tcp flags & (fin|syn|rst|ack) == syn` as nft
// encodes it (`nft --debug=netlink`): meta l4proto, cmp, payload of the
// transport header's byte 13, bitwise, cmp.
func TestMatchTCPSynGolden(t *testing.T) {
	littleEndian(t)
	var got []byte
	for _, e := range MatchTCPSyn() {
		b, err := expr.Marshal(unix.NFPROTO_IPV4, e)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, b...)
	}
	want := unhex(t, `
09 00 01 00  6d 65 74 61 00 00 00 00       # "meta"
14 00 02 80                                #   data
  08 00 02 00  00 00 00 10                 #   NFTA_META_KEY NFT_META_L4PROTO (16)
  08 00 01 00  00 00 00 01                 #   NFTA_META_DREG 1
08 00 01 00  63 6d 70 00                   # "cmp"
20 00 02 80
  08 00 01 00  00 00 00 01                 #   NFTA_CMP_SREG 1
  08 00 02 00  00 00 00 00                 #   NFTA_CMP_OP NFT_CMP_EQ
  0c 00 03 80  05 00 01 00  06 00 00 00    #   NFTA_CMP_DATA { NFTA_DATA_VALUE 6 (tcp), padded }
0c 00 01 00  70 61 79 6c 6f 61 64 00       # "payload"
24 00 02 80
  08 00 01 00  00 00 00 01                 #   NFTA_PAYLOAD_DREG 1
  08 00 02 00  00 00 00 02                 #   NFTA_PAYLOAD_BASE transport header
  08 00 03 00  00 00 00 0d                 #   NFTA_PAYLOAD_OFFSET 13
  08 00 04 00  00 00 00 01                 #   NFTA_PAYLOAD_LEN 1
0c 00 01 00  62 69 74 77 69 73 65 00       # "bitwise"
`)
	if len(got) < len(want) {
		t.Fatalf("encoded %d bytes, want at least %d", len(got), len(want))
	}
	if diff := cmp.Diff(want, got[:len(want)]); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
