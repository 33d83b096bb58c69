package queuetest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/queue"
)

// MustEnqueueID calls EnqueueID and fails t on an error.
func MustEnqueueID(t *testing.T, s queue.Store, inbox, id string, body []byte) bool {
	t.Helper()
	stored, err := s.EnqueueID(TestCtx(t), inbox, id, body)
	if err != nil {
		t.Fatalf("EnqueueID(%s, %s): %v", inbox, id, err)
	}
	return stored
}

// testRandomIDs: ids chosen by Enqueue are 128-bit random strings, never a
// counter that a restored or new store could hand out again.
func testRandomIDs(t *testing.T, h Harness) {
	stores := h.Open(t, queue.Options{}, 2)
	seen := map[string]bool{}
	for i := range 200 {
		id := MustEnqueue(t, stores[i%2], "rnd", []byte("x"))
		if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
			t.Fatalf("id %q: want 32 lower-case hex digits", id)
		}
		if seen[id] {
			t.Fatalf("id %s handed out twice", id)
		}
		seen[id] = true
	}
}

// testEnqueueIDValidation: EnqueueID rejects ids that are not 1–32 bytes of
// [A-Za-z0-9_-], and stores nothing for them.
func testEnqueueIDValidation(t *testing.T, h Harness) {
	s := h.Open(t, queue.Options{}, 1)[0]
	ctx := TestCtx(t)
	for _, id := range []string{"", "a#1", "a b", "a{b}", strings.Repeat("a", queue.MaxIDLength+1), "é"} {
		if _, err := s.EnqueueID(ctx, "v", id, []byte("x")); !errors.Is(err, queue.ErrInvalidArgument) {
			t.Errorf("EnqueueID(id %q): %v, want ErrInvalidArgument", id, err)
		}
	}
	if _, err := s.EnqueueID(ctx, "v", "ok", make([]byte, queue.MaxMessageSize+1)); !errors.Is(err, queue.ErrTooLarge) {
		t.Errorf("EnqueueID(too large): %v, want ErrTooLarge", err)
	}
	if _, err := s.EnqueueID(ctx, "a b", "ok", []byte("x")); !errors.Is(err, queue.ErrInvalidInbox) {
		t.Errorf("EnqueueID(bad inbox): %v, want ErrInvalidInbox", err)
	}
	if n := h.Residue(t, s); n != 0 {
		t.Errorf("rejected calls left %d keys/buckets behind", n)
	}
}

// testEnqueueIDIdempotent: a repeated EnqueueID is a no-op whatever state
// the first copy is in, and never overwrites its body.
func testEnqueueIDIdempotent(t *testing.T, h Harness) {
	s := h.Open(t, queue.Options{Lease: time.Hour, Capacity: 3}, 1)[0]
	const ib = "idem"
	if !MustEnqueueID(t, s, ib, "ev1", []byte("first")) {
		t.Fatal("first EnqueueID did not store")
	}
	steps := []struct {
		name string
		prep func()
	}{
		{"ready", func() {}},
		{"leased", func() {
			msgs := MustPull(t, s, ib, 10, 0)
			if len(msgs) != 1 || msgs[0].ID != "ev1" || string(msgs[0].Body) != "first" {
				t.Fatalf("pull: %v, want [ev1] with the first body", IDs(msgs))
			}
		}},
		{"acknowledged", func() {
			if n := MustAck(t, s, ib, "ev1"); n != 1 {
				t.Fatalf("ack removed %d", n)
			}
		}},
	}
	for _, st := range steps {
		st.prep()
		if MustEnqueueID(t, s, ib, "ev1", []byte("retry while "+st.name)) {
			t.Fatalf("EnqueueID of a %s id stored a second copy", st.name)
		}
		if d := MustStats(t, s, ib).Depth(); st.name != "acknowledged" && d != 1 {
			t.Fatalf("%s: depth %d, want 1", st.name, d)
		}
	}
	if msgs := MustPull(t, s, ib, 10, 0); len(msgs) != 0 {
		t.Fatalf("a repeated EnqueueID was delivered: %v", IDs(msgs))
	}

	// A full inbox: a repeat is a no-op, not ErrInboxFull; a new id is full.
	for _, id := range []string{"a", "b", "c"} {
		MustEnqueueID(t, s, ib, id, []byte(id))
	}
	for _, id := range []string{"a", "ev1"} {
		if stored, err := s.EnqueueID(TestCtx(t), ib, id, []byte("again")); err != nil || stored {
			t.Fatalf("repeat of %s into a full inbox: %v %v, want false, nil", id, stored, err)
		}
	}
	if _, err := s.EnqueueID(TestCtx(t), ib, "d", []byte("d")); !errors.Is(err, queue.ErrInboxFull) {
		t.Fatalf("new id into a full inbox: %v, want ErrInboxFull", err)
	}
	// "d" was not stored, so it is not remembered either.
	msgs := MustPull(t, s, ib, 10, 0)
	MustAck(t, s, ib, msgs[0].ID)
	if !MustEnqueueID(t, s, ib, "d", []byte("d")) {
		t.Fatal("an id rejected as full was remembered")
	}

	// DeleteInbox forgets the ids.
	if err := s.DeleteInbox(TestCtx(t), ib); err != nil {
		t.Fatal(err)
	}
	if !MustEnqueueID(t, s, ib, "ev1", []byte("after delete")) {
		t.Fatal("DeleteInbox did not forget the ids")
	}
	if err := s.DeleteInbox(TestCtx(t), ib); err != nil {
		t.Fatal(err)
	}
	noResidue(t, h, s, "DeleteInbox")
}

// testEnqueueIDForgets: ids are forgotten after DedupWindow and beyond
// DedupCapacity (oldest first).
func testEnqueueIDForgets(t *testing.T, h Harness) {
	t.Run("window", func(t *testing.T) {
		t.Parallel()
		s := h.Open(t, queue.Options{DedupWindow: 200 * time.Millisecond}, 1)[0]
		MustEnqueueID(t, s, "win", "e", []byte("1"))
		MustAck(t, s, "win", MustPull(t, s, "win", 1, 0)[0].ID)
		Eventually(t, 30*time.Second, "the id to be forgotten", func() bool {
			return MustEnqueueID(t, s, "win", "e", []byte("2"))
		})
		if msgs := MustPull(t, s, "win", 10, 0); len(msgs) != 1 || string(msgs[0].Body) != "2" {
			t.Fatalf("after the window: %v", IDs(msgs))
		}
	})
	t.Run("capacity", func(t *testing.T) {
		t.Parallel()
		s := h.Open(t, queue.Options{DedupCapacity: 2}, 1)[0]
		for _, id := range []string{"x1", "x2", "x3"} {
			MustEnqueueID(t, s, "cap", id, []byte(id))
		}
		MustPull(t, s, "cap", 10, 0)
		if n := MustAck(t, s, "cap", "x1", "x2", "x3"); n != 3 {
			t.Fatalf("ack removed %d", n)
		}
		cases := []struct {
			id   string
			want bool
		}{{"x3", false}, {"x2", false}, {"x1", true}}
		for _, tc := range cases {
			if got := MustEnqueueID(t, s, "cap", tc.id, []byte("again")); got != tc.want {
				t.Errorf("EnqueueID(%s) after capacity 2: stored %v, want %v", tc.id, got, tc.want)
			}
		}
	})
}

// testEnqueueIDConcurrent: 2 instances × 8 goroutines enqueue the same ids
// at once; each id is stored exactly once.
func testEnqueueIDConcurrent(t *testing.T, h Harness) {
	stores := h.Open(t, queue.Options{}, 2)
	const ids, callers = 20, 16
	var stored [ids]atomic.Int32
	var wg sync.WaitGroup
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ids {
				ok, err := stores[c%2].EnqueueID(TestCtx(t), "conc", fmt.Sprint("id", i), []byte("x"))
				if err != nil {
					t.Errorf("EnqueueID: %v", err)
					return
				}
				if ok {
					stored[i].Add(1)
				}
			}
		}()
	}
	wg.Wait()
	for i := range stored {
		if n := stored[i].Load(); n != 1 {
			t.Errorf("id%d: stored %d times, want once", i, n)
		}
	}
	if d := MustStats(t, stores[0], "conc").Depth(); d != ids {
		t.Fatalf("depth %d, want %d", d, ids)
	}
}
