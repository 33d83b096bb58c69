package broker

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestKeyedLock: one holder per key, other keys independent, a wait ends
// with its context, and no entry outlives its holders and waiters.
func TestKeyedLock(t *testing.T) {
	t.Parallel()
	var k keyedLock
	ctx := context.Background()
	unlockA, err := k.lock(ctx, "A")
	if err != nil {
		t.Fatal(err)
	}
	unlockB, err := k.lock(ctx, "B")
	if err != nil {
		t.Fatalf("other key blocked: %v", err)
	}
	unlockB()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := k.lock(cctx, "A"); !errors.Is(err, context.Canceled) {
		t.Fatalf("lock of a held key with a cancelled context: %v", err)
	}
	// Waiters run one at a time once the holder unlocks.
	const n = 4
	var wg sync.WaitGroup
	var inside, maxInside atomic.Int32
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock, err := k.lock(ctx, "A")
			if err != nil {
				t.Error(err)
				return
			}
			v := inside.Add(1)
			for m := maxInside.Load(); v > m && !maxInside.CompareAndSwap(m, v); m = maxInside.Load() {
			}
			runtime.Gosched()
			inside.Add(-1)
			unlock()
		}()
	}
	unlockA()
	wg.Wait()
	if m := maxInside.Load(); m != 1 {
		t.Fatalf("%d holders at once", m)
	}
	k.mu.Lock()
	left := len(k.m)
	k.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d entries left", left)
	}
}
