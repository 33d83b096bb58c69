package inboxutil

import (
	"strings"
	"testing"
)

// FuzzParseReceipts: whatever the input, a parsed receipt names an id of
// bounded length with a non-negative delivery count.
func FuzzParseReceipts(f *testing.F) {
	f.Add("1#1,2,,x#y," + strings.Repeat("9", 70))
	f.Fuzz(func(t *testing.T, joined string) {
		in := strings.Split(joined, ",")
		for _, r := range ParseReceipts(in) {
			if r.ID == "" || r.Deliveries < 0 || len(r.ID) > 64 {
				t.Fatalf("ParseReceipts accepted %+v from %q", r, joined)
			}
		}
	})
}
