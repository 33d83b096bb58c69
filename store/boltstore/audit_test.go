package boltstore_test

import (
	"context"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/sealrelay/sealrelay/audit"
	"github.com/sealrelay/sealrelay/audit/audittest"
	"github.com/sealrelay/sealrelay/store/boltstore"
)

func openAuditDB(t *testing.T) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func TestAuditStoreConformance(t *testing.T) {
	t.Parallel()
	audittest.Run(t, func(t *testing.T) audit.Store {
		st, err := boltstore.NewAuditStore(openAuditDB(t), "audit")
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

// TestAuditRangeAfterDelete: positions still count stored entries when one
// was deleted (the Seek shortcut must not be taken then), so Verify sees the
// gap as a gap.
func TestAuditRangeAfterDelete(t *testing.T) {
	t.Parallel()
	db := openAuditDB(t)
	st, err := boltstore.NewAuditStore(db, "audit")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, r := range []string{"r0", "r1", "r2", "r3"} {
		if err := st.Append(ctx, "c", []byte(r)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("audit")).Bucket([]byte("c")).Bucket([]byte("rec")).Delete([]byte{0, 0, 0, 0, 0, 0, 0, 2})
	}); err != nil {
		t.Fatal(err)
	}
	got, err := st.Range(ctx, "c", 1, 10)
	if err != nil || len(got) != 2 || string(got[0]) != "r2" || string(got[1]) != "r3" {
		t.Fatalf("Range(1) after deleting r1 = %q, %v; want [r2 r3]", got, err)
	}
	if n, err := st.Len(ctx, "c"); err != nil || n != 3 {
		t.Fatalf("Len = %d, %v; want 3", n, err)
	}
}
