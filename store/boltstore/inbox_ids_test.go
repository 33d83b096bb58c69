package boltstore

import (
	"bytes"
	"context"
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
		if err := stripMetaIDs(b); err != nil {
			return err
		}
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

// stripMetaIDs cuts the ids off the meta records of inbox bucket b, as
// versions before ids moved into meta wrote them, and returns them by seq.
func stripMetaIDs(b *bolt.Bucket) error {
	m := b.Bucket(bktMeta)
	type rec struct{ k, v []byte }
	var recs []rec
	if err := m.ForEach(func(k, v []byte) error {
		recs = append(recs, rec{bytes.Clone(k), bytes.Clone(v)})
		return nil
	}); err != nil {
		return err
	}
	for _, r := range recs {
		if err := m.Put(r.k, r.v[:metaLen]); err != nil {
			return err
		}
	}
	return nil
}

// TestBoltIDsInBucketN: messages written when ids lived in buckets i and n
// (meta records without the id) keep their ids, are not stored twice by
// EnqueueID and can be acked and redriven by id.
func TestBoltIDsInBucketN(t *testing.T) {
	t.Parallel()
	s := openBoltT(t, t.TempDir(), queue.Options{MaxDeliveries: 1})
	ctx := context.Background()
	plain := queuetest.MustEnqueue(t, s, "mid", []byte("a"))
	if _, err := s.EnqueueID(ctx, "mid", "keyed-1", []byte("b")); err != nil {
		t.Fatal(err)
	}
	// Rewrite the inbox as that version left it: ids in n (seq → id)
	// and i (id → seq), remembered ids without a seq.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bktRoot).Bucket([]byte("mid"))
		m, i, n := b.Bucket(bktMeta), b.Bucket(bktID), b.Bucket(bktName)
		type rec struct{ k, id []byte }
		var recs []rec
		if err := m.ForEach(func(k, v []byte) error {
			recs = append(recs, rec{bytes.Clone(k), bytes.Clone(metaID(v))})
			return nil
		}); err != nil {
			return err
		}
		for _, r := range recs {
			if err := n.Put(r.k, r.id); err != nil {
				return err
			}
			if err := i.Put(r.id, r.k); err != nil {
				return err
			}
		}
		if err := stripMetaIDs(b); err != nil {
			return err
		}
		tb := tx.Bucket(bktIDs).Bucket([]byte("mid")).Bucket(bktTomb)
		v := bytes.Clone(tb.Get([]byte("keyed-1")))
		return tb.Put([]byte("keyed-1"), v[:8])
	}); err != nil {
		t.Fatal(err)
	}
	if stored, err := s.EnqueueID(ctx, "mid", "keyed-1", []byte("b")); err != nil || stored {
		t.Fatalf("EnqueueID of a stored id: stored %v, %v", stored, err)
	}
	msgs := queuetest.MustPull(t, s, "mid", 10, 0)
	if got := queuetest.IDs(msgs); len(got) != 2 || got[0] != plain || got[1] != "keyed-1" {
		t.Fatalf("ids %v, want [%s keyed-1]", got, plain)
	}
	if n := queuetest.MustAck(t, s, "mid", msgs[0].Receipt); n != 1 {
		t.Fatalf("acked %d, want 1", n)
	}
	// The keyed one goes to the dead letters (MaxDeliveries 1) and back.
	if m := queuetest.MustPull(t, s, "mid", 10, 0); len(m) != 0 {
		t.Fatalf("pulled %v while leased", queuetest.IDs(m))
	}
	if n, err := s.Redrive(ctx, "mid", []string{"keyed-1"}); err != nil || n != 0 {
		t.Fatalf("redrive of a leased message: %d, %v", n, err)
	}
	if n := queuetest.MustAck(t, s, "mid", msgs[1].Receipt); n != 1 {
		t.Fatalf("acked %d keyed, want 1", n)
	}
	if st, err := s.Stats(ctx, "mid"); err != nil || st.Ready+st.Leased+st.DeadLetters != 0 {
		t.Fatalf("after acking everything: %+v, %v", st, err)
	}
}

// TestBoltForgottenIDStillAckable: when the remembered id of a message that
// is still queued is forgotten (its DedupWindow passed, or DedupCapacity
// pushed it out), the message can still be acked by id and EnqueueID still
// does not store it twice.
func TestBoltForgottenIDStillAckable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts queue.Options
	}{
		{"window passed", queue.Options{DedupWindow: time.Millisecond}},
		{"capacity", queue.Options{DedupCapacity: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := openBoltT(t, t.TempDir(), tc.opts)
			ctx := context.Background()
			for _, id := range []string{"k-1", "k-2"} {
				if stored, err := s.EnqueueID(ctx, "fgt", id, []byte(id)); err != nil || !stored {
					t.Fatalf("EnqueueID %s: %v, %v", id, stored, err)
				}
			}
			if tc.opts.DedupWindow > 0 {
				deadline := time.Now().Add(tc.opts.DedupWindow)
				for time.Now().Before(deadline) {
					time.Sleep(tc.opts.DedupWindow / 4) // let the window pass (wall clock)
				}
				if _, err := s.Sweep(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.db.View(func(tx *bolt.Tx) error {
				if u, _, _ := remembered(tx, "fgt", "k-1"); u != 0 {
					t.Errorf("k-1 still remembered")
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if stored, err := s.EnqueueID(ctx, "fgt", "k-1", []byte("again")); err != nil || stored {
				t.Fatalf("EnqueueID of a queued, forgotten id: stored %v, %v", stored, err)
			}
			msgs := queuetest.MustPull(t, s, "fgt", 10, 0)
			if got := queuetest.IDs(msgs); len(got) != 2 || got[0] != "k-1" || got[1] != "k-2" {
				t.Fatalf("ids %v, want [k-1 k-2]", got)
			}
			if n := queuetest.MustAck(t, s, "fgt", msgs[0].Receipt, msgs[1].Receipt); n != 2 {
				t.Fatalf("acked %d, want 2", n)
			}
		})
	}
}
