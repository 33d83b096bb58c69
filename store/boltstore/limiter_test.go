package boltstore

import (
	"github.com/sealrelay/sealrelay/state"
	"testing"
	"time"
)

// TestLocalBuckets: the embedded state's in-memory buckets (x/time/rate).
func TestLocalBuckets(t *testing.T) {
	t.Parallel()
	t0 := time.UnixMilli(1_700_000_000_000)
	type step struct {
		at      time.Duration // after t0
		limit   state.RateLimit
		want    bool
		retryLE time.Duration // when denied: 0 < retry ≤ retryLE
	}
	lim := state.RateLimit{Rate: 2, Burst: 2}
	tests := []struct {
		name  string
		steps []step
	}{
		{"burst then deny", []step{{0, lim, true, 0}, {0, lim, true, 0}, {0, lim, false, 500 * time.Millisecond}}},
		{"refill at rate", []step{{0, lim, true, 0}, {0, lim, true, 0}, {500 * time.Millisecond, lim, true, 0}, {600 * time.Millisecond, lim, false, 400 * time.Millisecond}}},
		{"denied take costs nothing", []step{{0, state.RateLimit{Rate: 1, Burst: 1}, true, 0}, {0, state.RateLimit{Rate: 1, Burst: 1}, false, time.Second},
			{0, state.RateLimit{Rate: 1, Burst: 1}, false, time.Second}, {time.Second, state.RateLimit{Rate: 1, Burst: 1}, true, 0}}},
		{"disabled", []step{{0, state.RateLimit{Rate: 0, Burst: 1}, true, 0}, {0, state.RateLimit{Rate: -1, Burst: 5}, true, 0}, {0, state.RateLimit{Rate: 1, Burst: 0}, true, 0}}},
		{"follows a raised limit", []step{{0, state.RateLimit{Rate: 1, Burst: 1}, true, 0}, {0, state.RateLimit{Rate: 1, Burst: 1}, false, time.Second},
			{0, state.RateLimit{Rate: 1000, Burst: 1}, false, time.Second}, {10 * time.Millisecond, state.RateLimit{Rate: 1000, Burst: 1}, true, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var b localBuckets
			for i, s := range tt.steps {
				ok, retry := b.allow("k", s.limit, t0.Add(s.at))
				if ok != s.want {
					t.Fatalf("step %d: ok=%v, want %v", i, ok, s.want)
				}
				if !ok && (retry <= 0 || retry > s.retryLE) {
					t.Fatalf("step %d: retry %v, want in (0, %v]", i, retry, s.retryLE)
				}
			}
		})
	}
	t.Run("per key and swept when full", func(t *testing.T) {
		t.Parallel()
		var b localBuckets
		b.allow("a", lim, t0)
		if ok, _ := b.allow("b", state.RateLimit{Rate: 1, Burst: 1}, t0); !ok {
			t.Fatal("buckets are not per key")
		}
		b.sweep(t0)
		if n := b.len(); n != 2 {
			t.Fatalf("%d buckets after sweeping none full, want 2", n)
		}
		b.sweep(t0.Add(time.Second))
		if n := b.len(); n != 0 {
			t.Fatalf("%d buckets after sweeping full ones, want 0", n)
		}
	})
}
