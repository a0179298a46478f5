// Package hexfile reads the golden files of the codec tests: hexadecimal
// digits, with blanks and '#' comments to the end of the line.
package hexfile

import (
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// Read returns the bytes of golden file path, failing t if it cannot.
func Read(t testing.TB, path string) []byte {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var digits strings.Builder
	for line := range strings.Lines(string(text)) {
		line, _, _ = strings.Cut(line, "#")
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(digits.String())
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b
}
