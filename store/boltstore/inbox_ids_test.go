package boltstore

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/queue/queuetest"
)

func openBoltT(t *testing.T, dir string, opts queue.Options) *Inbox {
	t.Helper()
	s, err := OpenInbox(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestBoltRestoreNeverReusesIDs: restoring an older queue.db (or starting
// over with an empty one) rewinds the internal sequence, but the ids handed
// out afterwards are new, so a bridge that delivered the earlier ones does
// not mistake new messages for duplicates. Ids remembered by EnqueueID come
// back with the restored file.
func TestBoltRestoreNeverReusesIDs(t *testing.T) {
	t.Parallel()
	dir, backup := t.TempDir(), t.TempDir()
	s := openBoltT(t, dir, queue.Options{})
	queuetest.MustEnqueueID(t, s, "ib", "slack-event", []byte("0"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, InboxFileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(backup, InboxFileName), b, 0o600); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	cases := []struct {
		name string
		prep func()
	}{
		{"original", func() {}},
		{"restored backup", func() {
			if err := os.WriteFile(filepath.Join(dir, InboxFileName), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"lost data directory", func() {
			if err := os.Remove(filepath.Join(dir, InboxFileName)); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		tc.prep()
		s := openBoltT(t, dir, queue.Options{})
		for range 20 {
			id := queuetest.MustEnqueue(t, s, "ib", []byte("x"))
			if seen[id] {
				t.Fatalf("%s: id %s handed out again", tc.name, id)
			}
			seen[id] = true
		}
		msgs := queuetest.MustPull(t, s, "ib", queue.MaxPull, 0)
		for _, m := range msgs {
			queuetest.MustAck(t, s, "ib", m.ID)
		}
		if stored := queuetest.MustEnqueueID(t, s, "ib", "slack-event", []byte("again")); stored != (tc.name == "lost data directory") {
			t.Fatalf("%s: EnqueueID of the remembered id stored %v", tc.name, stored)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBoltLegacyDecimalIDs: messages written before ids were random (no
// id maps in the inbox bucket) keep their decimal ids and can be pulled,
// acked and redriven by them.
func TestBoltLegacyDecimalIDs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openBoltT(t, dir, queue.Options{})
	queuetest.MustEnqueue(t, s, "old", []byte("a"))
	queuetest.MustEnqueue(t, s, "old", []byte("b"))
	// Rewrite the inbox as an older version left it.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bktRoot).Bucket([]byte("old"))
		if err := b.DeleteBucket(bktID); err != nil {
			return err
		}
		return b.DeleteBucket(bktName)
	}); err != nil {
		t.Fatal(err)
	}
	msgs := queuetest.MustPull(t, s, "old", 10, 0)
	if got := queuetest.IDs(msgs); len(got) != 2 || got[0] != "1" || got[1] != "2" {
		t.Fatalf("legacy ids %v, want [1 2]", got)
	}
	fresh := queuetest.MustEnqueue(t, s, "old", []byte("c"))
	if len(fresh) != 32 {
		t.Fatalf("new id %q in a legacy inbox", fresh)
	}
	if n := queuetest.MustAck(t, s, "old", "1", msgs[1].Receipt); n != 2 {
		t.Fatalf("acked %d legacy messages, want 2", n)
	}
	if m := queuetest.MustPull(t, s, "old", 10, 0); len(m) != 1 || m[0].ID != fresh {
		t.Fatalf("after acking the legacy ones: %v", queuetest.IDs(m))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestBoltSweepForgetsIDs: the sweeper forgets remembered ids of inboxes
// nobody enqueues into any more, and leaves no bucket behind.
func TestBoltSweepForgetsIDs(t *testing.T) {
	t.Parallel()
	s := openBoltT(t, t.TempDir(), queue.Options{DedupWindow: 100 * time.Millisecond})
	t.Cleanup(func() { _ = s.Close() })
	queuetest.MustEnqueueID(t, s, "idle", "e1", []byte("x"))
	queuetest.MustAck(t, s, "idle", queuetest.MustPull(t, s, "idle", 1, 0)[0].ID)
	remembered := func() int {
		n := 0
		if err := s.db.View(func(tx *bolt.Tx) error {
			return tx.Bucket(bktIDs).ForEachBucket(func([]byte) error { n++; return nil })
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if remembered() != 1 {
		t.Fatal("the id is not remembered")
	}
	queuetest.Eventually(t, 30*time.Second, "the sweeper to forget the id", func() bool {
		if _, err := s.Sweep(queuetest.TestCtx(t)); err != nil {
			t.Fatal(err)
		}
		return remembered() == 0
	})
}
