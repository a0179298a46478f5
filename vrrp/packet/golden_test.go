package packet

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestKeepalivedGolden decodes adverts captured from keepalived 2.2.7
// (testdata/keepalived, tcpdump -xx output) and checks that the checksum
// verifies, the fields are right, and that encoding the decoded advert
// gives back the captured bytes exactly.
func TestKeepalivedGolden(t *testing.T) {
	tests := []struct {
		file string
		want Advert
	}{
		{"v2-ipv4.txt", Advert{Version: 2, VRID: 53, Priority: 100, Interval: time.Second, Addrs: addrs("10.10.2.1")}},
		{"v3-ipv4.txt", Advert{Version: 3, VRID: 51, Priority: 150, Interval: time.Second, Addrs: addrs("10.10.1.1", "10.10.1.50")}},
		{"v3-ipv6.txt", Advert{Version: 3, VRID: 52, Priority: 120, Interval: 300 * time.Millisecond, Addrs: addrs("fd00:10:1::1")}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			src, dst, payload := readCapture(t, filepath.Join("testdata", "keepalived", tt.file))
			got, err := Parse(payload, src, dst, false)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpAddr); diff != "" {
				t.Errorf("decoded (-want +got):\n%s", diff)
			}
			out, err := tt.want.Append(nil, src, dst)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, payload) {
				t.Errorf("encoding differs from keepalived's:\n got %x\nwant %x", out, payload)
			}
		})
	}
}

// readCapture returns the addresses and IP payload of the Ethernet frame
// printed in a tcpdump -xx capture.
func readCapture(t *testing.T, path string) (src, dst netip.Addr, payload []byte) {
	t.Helper()
	ip := readIPPacket(t, path)
	switch ip[0] >> 4 {
	case 4:
		ihl := int(ip[0]&0x0f) * 4
		return netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20])), ip[ihl:]
	case 6:
		if ip[6] != Protocol {
			t.Fatalf("%s: IPv6 next header %d, want VRRP directly", path, ip[6])
		}
		return netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40])), ip[40:]
	}
	t.Fatalf("%s: not an IP packet", path)
	return
}

// readIPPacket returns the IP packet of the Ethernet frame printed in a
// tcpdump -xx capture.
func readIPPacket(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var frame []byte
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "0x") {
			continue
		}
		_, hexPart, _ := strings.Cut(line, ":")
		b, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(hexPart), " ", ""))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		frame = append(frame, b...)
	}
	const ethLen = 14
	if len(frame) <= ethLen {
		t.Fatalf("%s: no frame", path)
	}
	return frame[ethLen:]
}
