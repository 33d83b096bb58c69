package redisstore

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/queue/queuetest"
)

// idsKey is the EnqueueID index of inbox (K_IDS).
func (s *Inbox) idsKey(inbox string) string { return s.keys(inbox)[7] }

// TestRedisIDIndexBoundedAtCap: the enqueue script trims the id index by
// rank without counting it first; it still holds exactly the newest
// DedupCapacity ids, whether they came one per batch or in one batch.
func TestRedisIDIndexBoundedAtCap(t *testing.T) {
	t.Parallel()
	const dcap, n = 3, 10
	cases := []struct {
		name    string
		enqueue func(ctx context.Context, s *Inbox, inbox string, ids []string) error
	}{
		{"one per batch", func(ctx context.Context, s *Inbox, inbox string, ids []string) error {
			for _, id := range ids {
				if _, err := s.EnqueueID(ctx, inbox, id, []byte(id)); err != nil {
					return err
				}
			}
			return nil
		}},
		{"one batch", func(ctx context.Context, s *Inbox, inbox string, ids []string) error {
			items := make([]queue.Item, len(ids))
			for i, id := range ids {
				items[i] = queue.Item{Inbox: inbox, ID: id, Body: []byte(id)}
			}
			for _, r := range s.EnqueueIDs(ctx, items) {
				if r.Err != nil {
					return r.Err
				}
			}
			return nil
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := openRedisStores(t, InboxOptions{Options: queue.Options{DedupCapacity: dcap}}, 1)[0]
			ctx := queuetest.TestCtx(t)
			const ib = "cap"
			var ids []string
			for i := range n {
				ids = append(ids, fmt.Sprintf("id%02d", i)) // sorts like its arrival
			}
			if err := tc.enqueue(ctx, s, ib, ids); err != nil {
				t.Fatal(err)
			}
			got, err := s.c.ZRange(ctx, s.idsKey(ib), 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			if want := ids[n-dcap:]; !slices.Equal(got, want) {
				t.Fatalf("index holds %v, want the newest %d: %v", got, dcap, want)
			}
			// The oldest forgotten id stores again; a remembered one does not.
			msgs := queuetest.MustPull(t, s, ib, n, 0)
			if len(msgs) != n {
				t.Fatalf("pulled %d, want %d", len(msgs), n)
			}
			for _, m := range msgs {
				queuetest.MustAck(t, s, ib, m.ID)
			}
			if queuetest.MustEnqueueID(t, s, ib, ids[n-1], []byte("again")) {
				t.Fatalf("%s (newest) was forgotten", ids[n-1])
			}
			if !queuetest.MustEnqueueID(t, s, ib, ids[0], []byte("again")) {
				t.Fatalf("%s (oldest, beyond the cap) was remembered", ids[0])
			}
			if err := s.DeleteInbox(ctx, ib); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRedisIDIndexExpiry: the ids key outlives its newest entry by at most
// the slack; its TTL is renewed, and forgotten entries dropped, only when
// the TTL would fall short of the window; forgotten entries left in the
// index meanwhile are not remembered.
func TestRedisIDIndexExpiry(t *testing.T) {
	t.Parallel()
	const window = time.Minute
	slack := window / 16
	s := openRedisStores(t, InboxOptions{Options: queue.Options{DedupWindow: window}}, 1)[0]
	ctx := queuetest.TestCtx(t)
	const ib = "exp"
	key := s.idsKey(ib)
	pttl := func() time.Duration {
		t.Helper()
		d, err := s.c.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	has := func(member string) bool {
		t.Helper()
		_, err := s.c.ZScore(ctx, key, member).Result()
		if err != nil && err != redis.Nil {
			t.Fatal(err)
		}
		return err == nil
	}
	// Forgotten long ago, still in the index (as between renewals).
	plant := func(members ...string) {
		t.Helper()
		for _, m := range members {
			if err := s.c.ZAdd(ctx, key, redis.Z{Score: 1, Member: m}).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	steps := []struct {
		name    string
		prep    func()
		id      string
		kept    []string // members expected in the index afterwards
		dropped []string // members expected gone
	}{
		{name: "first id sets the TTL", id: "a", kept: []string{"a"}},
		{name: "TTL long enough: no renewal, no trim", prep: func() { plant("old1", "old2") },
			id: "b", kept: []string{"a", "b", "old1", "old2"}},
		{name: "a forgotten entry left in the index is not remembered", id: "old1",
			kept: []string{"a", "b", "old1", "old2"}},
		{name: "TTL short of the window: renewal drops forgotten entries", prep: func() {
			if err := s.c.PExpire(ctx, key, window/2).Err(); err != nil {
				t.Fatal(err)
			}
		}, id: "c", kept: []string{"a", "b", "c", "old1"}, dropped: []string{"old2"}},
	}
	for _, st := range steps {
		if st.prep != nil {
			st.prep()
		}
		if !queuetest.MustEnqueueID(t, s, ib, st.id, []byte(st.id)) {
			t.Fatalf("%s: EnqueueID(%s) did not store", st.name, st.id)
		}
		if d := pttl(); d <= window-time.Second || d > window+slack {
			t.Fatalf("%s: ids key TTL %v, want about (%v, %v]: it must outlive the newest entry", st.name, d, window, window+slack)
		}
		for _, m := range st.kept {
			if !has(m) {
				t.Fatalf("%s: %s missing from the index", st.name, m)
			}
		}
		for _, m := range st.dropped {
			if has(m) {
				t.Fatalf("%s: %s still in the index", st.name, m)
			}
		}
	}
	// Every id stored above is remembered.
	for _, id := range []string{"a", "b", "c", "old1"} {
		if queuetest.MustEnqueueID(t, s, ib, id, []byte("again")) {
			t.Fatalf("%s was forgotten within the window", id)
		}
	}
	if err := s.DeleteInbox(ctx, ib); err != nil {
		t.Fatal(err)
	}
}

// TestRedisAckReadyAgain: a bare-id ack removes a delivered message that a
// pull put back in the ready list after its lease lapsed (the ack script
// looks there only for what the lease set did not hold), alone or together
// with a leased one.
func TestRedisAckReadyAgain(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		ack  func(leased, ready string) []string
		left int // messages left afterwards
	}{
		{"ready again alone", func(_, ready string) []string { return []string{ready} }, 1},
		{"with a leased one", func(leased, ready string) []string { return []string{ready, leased} }, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := openRedisStores(t, InboxOptions{Options: queue.Options{Lease: 200 * time.Millisecond}}, 1)[0]
			const ib = "ra"
			a := queuetest.MustEnqueue(t, s, ib, []byte("a"))
			b := queuetest.MustEnqueue(t, s, ib, []byte("b"))
			if msgs := queuetest.MustPull(t, s, ib, 2, 0); len(msgs) != 2 {
				t.Fatalf("pulled %v, want both", queuetest.IDs(msgs))
			}
			queuetest.Eventually(t, 30*time.Second, "both leases to lapse", func() bool {
				return queuetest.MustStats(t, s, ib).Ready == 2
			})
			// Reclaims both, leases a again; b stays ready with one delivery.
			msgs := queuetest.MustPull(t, s, ib, 1, 0)
			if len(msgs) != 1 || msgs[0].ID != a {
				t.Fatalf("pulled %v, want [%s]", queuetest.IDs(msgs), a)
			}
			if n, want := queuetest.MustAck(t, s, ib, tc.ack(a, b)...), len(tc.ack(a, b)); n != want {
				t.Fatalf("ack removed %d, want %d", n, want)
			}
			if d := queuetest.MustStats(t, s, ib).Depth(); d != tc.left {
				t.Fatalf("after the ack: depth %d, want %d", d, tc.left)
			}
			ks := s.keys(ib)
			if n, err := s.c.Exists(queuetest.TestCtx(t), ks[1], ks[2], ks[3]).Result(); err != nil {
				t.Fatal(err)
			} else if _, err := s.c.ZScore(queuetest.TestCtx(t), ks[3], b).Result(); n > 0 && err != redis.Nil {
				t.Fatalf("%s still in the ready list: %v", b, err)
			}
			if err := s.DeleteInbox(queuetest.TestCtx(t), ib); err != nil {
				t.Fatal(err)
			}
		})
	}
}
