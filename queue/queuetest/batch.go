package queuetest

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/queue"
)

// testEnqueueIDs: a batch behaves item by item as Enqueue/EnqueueID would —
// per-item validation errors, a full inbox fails only its own items, a
// repeated id is a no-op, empty ids get fresh random ids, and the items of
// one inbox keep their order.
func testEnqueueIDs(t *testing.T, h Harness) {
	s := h.Open(t, queue.Options{Capacity: 2}, 1)[0]
	b, ok := s.(queue.BatchEnqueuer)
	if !ok {
		t.Fatalf("%T does not implement BatchEnqueuer", s)
	}
	ctx := TestCtx(t)
	MustEnqueue(t, s, "bfull", []byte("f1"))
	MustEnqueue(t, s, "bfull", []byte("f2"))
	if !MustEnqueueID(t, s, "bdup", "known", []byte("old")) {
		t.Fatal("first EnqueueID did not store")
	}
	tests := []struct {
		item   queue.Item
		stored bool
		err    error
	}{
		{queue.Item{Inbox: "ba", ID: "a1", Body: []byte("a-1")}, true, nil},
		{queue.Item{Inbox: "bfull", ID: "x1", Body: []byte("x")}, false, queue.ErrInboxFull},
		{queue.Item{Inbox: "ba", ID: "a2", Body: []byte("a-2")}, true, nil},
		{queue.Item{Inbox: "bb", Body: []byte("b-random")}, true, nil},
		{queue.Item{Inbox: "bdup", ID: "known", Body: []byte("new")}, false, nil},
		{queue.Item{Inbox: "ba", ID: "a1", Body: []byte("a-1 again")}, false, nil},
		{queue.Item{Inbox: "a b", ID: "ok", Body: []byte("x")}, false, queue.ErrInvalidInbox},
		{queue.Item{Inbox: "bb", ID: "a#1", Body: []byte("x")}, false, queue.ErrInvalidArgument},
		{queue.Item{Inbox: "bb", ID: "big", Body: make([]byte, queue.MaxMessageSize+1)}, false, queue.ErrTooLarge},
		{queue.Item{Inbox: "bfull", Body: []byte("y")}, false, queue.ErrInboxFull},
	}
	items := make([]queue.Item, len(tests))
	for i, tc := range tests {
		items[i] = tc.item
	}
	res := b.EnqueueIDs(ctx, items)
	if len(res) != len(items) {
		t.Fatalf("%d results for %d items", len(res), len(items))
	}
	for i, tc := range tests {
		r := res[i]
		if r.Stored != tc.stored || !errors.Is(r.Err, tc.err) || (tc.err == nil) != (r.Err == nil) {
			t.Errorf("item %d (%s/%s): stored %v err %v, want %v %v", i, tc.item.Inbox, tc.item.ID, r.Stored, r.Err, tc.stored, tc.err)
		}
		if tc.err == nil && tc.item.ID != "" && r.ID != tc.item.ID {
			t.Errorf("item %d: id %q, want %q", i, r.ID, tc.item.ID)
		}
	}
	if id := res[3].ID; len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		t.Errorf("fresh id %q: want 32 lower-case hex digits", id)
	}
	want := map[string][]string{
		"ba":    {"a1:a-1", "a2:a-2"},
		"bb":    {res[3].ID + ":b-random"},
		"bdup":  {"known:old"},
		"bfull": {"?:f1", "?:f2"},
	}
	for ib, w := range want {
		var got []string
		for _, m := range MustPull(t, s, ib, 10, 0) {
			id := m.ID
			if ib == "bfull" {
				id = "?"
			}
			got = append(got, id+":"+string(m.Body))
		}
		if fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("inbox %s holds %v, want %v", ib, got, w)
		}
	}
	// Replaying the whole batch (a lost reply) stores nothing new.
	for i, r := range b.EnqueueIDs(ctx, items[:3]) {
		if r.Stored {
			t.Errorf("replayed item %d stored again", i)
		}
	}
}
