package main

import (
	"strings"
	"testing"
)

// FuzzReadSSE: the stream parser never panics and hands out bounded data.
func FuzzReadSSE(f *testing.F) {
	f.Add("id: 1\ndata: {\"a\":1}\n\n")
	f.Add(": c\n\nevent: dropped\ndata: {\"dropped\":3}\n\ndata: a\ndata: b\n\n")
	f.Add("data\n\nid\n:\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		_ = readSSE(strings.NewReader(in), func(fr sseFrame) error {
			if len(fr.Data) > maxDeliveryBody {
				t.Fatalf("frame of %d bytes", len(fr.Data))
			}
			_, _ = sseEventID(fr.Data)
			_ = droppedCount(fr.Data)
			return nil
		})
	})
}

// FuzzDeliveredEventID: a forwarded body never panics the parser, and an
// id it returns is not empty.
func FuzzDeliveredEventID(f *testing.F) {
	f.Add([]byte(`{"type":"event_callback","event_id":"Ev1"}`))
	f.Add([]byte(`{"type":"block_actions"}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if id, err := deliveredEventID(b); err == nil && id == "" {
			t.Fatal("empty id without an error")
		}
	})
}

// FuzzParseStat: a /proc stat line never panics the parser or yields a
// negative CPU time.
func FuzzParseStat(f *testing.F) {
	f.Add("1 (x) S 1 2 3 4 5 6 7 8 9 10 150 25 0")
	f.Add("1 (a) b)) S 1 2 3 4 5 6 7 8 9 10 18446744073709551615 1 0")
	f.Fuzz(func(t *testing.T, s string) {
		if d, err := parseStat([]byte(s)); err == nil && d < 0 {
			t.Fatalf("negative CPU time %v", d)
		}
	})
}

// FuzzConsumerFromPath: any path maps to a consumer in range or is refused.
func FuzzConsumerFromPath(f *testing.F) {
	f.Add("/c/1/slack/events")
	f.Add("/c/99999999999999999999/x")
	f.Fuzz(func(t *testing.T, p string) {
		if n, ok := consumerFromPath(p, 4); ok && (n < 0 || n >= 4) {
			t.Fatalf("consumer %d out of range", n)
		}
	})
}
