package boltstore

import (
	"errors"
	"testing"

	"github.com/sealrelay/sealrelay/queue"
)

// TestOneLockPerDataDir: while a store is open, a second Open of the same
// data directory fails at once with ErrInUse; after Close it opens.
func TestOneLockPerDataDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, err := Open(dir, queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, queue.Options{}); !errors.Is(err, ErrInUse) {
		t.Fatalf("second Open = %v, want ErrInUse", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(dir, queue.Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
}
