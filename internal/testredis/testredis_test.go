package testredis

import (
	"strings"
	"testing"
)

func TestMain(m *testing.M) { Main(m) }

// TestCheckLeftovers: keys under a prefix are reported by name and count,
// then removed, so a second check passes; a clean prefix passes.
func TestCheckLeftovers(t *testing.T) {
	t.Parallel()
	c := Client(t)
	ctx := t.Context()
	prefix := NewPrefix("leftover")
	if !strings.HasPrefix(prefix, RunPrefix()) {
		t.Fatalf("prefix %q does not start with the run prefix %q", prefix, RunPrefix())
	}
	if err := checkLeftovers(ctx, c, prefix); err != nil {
		t.Fatalf("clean prefix: %v", err)
	}
	for _, k := range []string{"a", "b"} {
		if err := c.Set(ctx, prefix+k, "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	err := checkLeftovers(ctx, c, prefix)
	if err == nil || !strings.Contains(err.Error(), "2 keys") ||
		!strings.Contains(err.Error(), prefix+"a") || !strings.Contains(err.Error(), prefix+"b") {
		t.Fatalf("leftovers reported as %v", err)
	}
	if n, err := c.Exists(ctx, prefix+"a", prefix+"b").Result(); err != nil || n != 0 {
		t.Fatalf("%d leftover keys still there (%v)", n, err)
	}
	if err := checkLeftovers(ctx, c, prefix); err != nil {
		t.Fatalf("after removal: %v", err)
	}
}

// TestPrefixCleanup: the keys a test writes under Prefix are gone once the
// test's cleanups ran (the client is closed after).
func TestPrefixCleanup(t *testing.T) {
	t.Parallel()
	var prefix string
	t.Run("writer", func(t *testing.T) {
		c := Client(t)
		prefix = Prefix(t, c, "cleanup")
		if err := c.Set(t.Context(), prefix+"k", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	})
	c := Client(t)
	if n, err := c.Exists(t.Context(), prefix+"k").Result(); err != nil || n != 0 {
		t.Fatalf("key under %s survived the test's cleanup: %d (%v)", prefix, n, err)
	}
}
