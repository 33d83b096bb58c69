package queuetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/queue"
)

// Harness adapts one queue.Store engine to the conformance suite.
type Harness struct {
	// Open returns n store instances sharing one fresh, isolated backing
	// store (for the embedded store all n may be the same instance). The
	// stores are closed and the backing store removed when t ends. Waiting
	// pulls must not rely on a periodic safety-net poll shorter than a
	// minute, so that a wake-up test proves the wake-up.
	Open func(t *testing.T, opts queue.Options, n int) []queue.Store
	// Residue counts what the store keeps for any inbox (keys, buckets,
	// registry entries); zero means nothing was left behind.
	Residue func(t *testing.T, s queue.Store) int
	// Waiting reports how many Pulls of this process wait on inbox of s
	// (past their first look at it); an engine exposes it to its tests
	// (export_test.go).
	Waiting func(s queue.Store, inbox string) int
}

// Run runs the contract of the queue package doc against h.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		run  func(t *testing.T, h Harness)
	}{
		{"FIFO", testFIFO},
		{"Validation", testValidation},
		{"LeaseExclusivity", testLeaseExclusivity},
		{"ExpiryRedelivery", testExpiryRedelivery},
		{"Receipts", testReceipts},
		{"DeadLetters", testDeadLetters},
		{"Retention", testRetention},
		{"Capacity", testCapacity},
		{"Isolation", testIsolation},
		{"LargePayload", testLargePayload},
		{"PullByteBudget", testPullByteBudget},
		{"CancelWaitingPull", testCancelWaitingPull},
		{"CrossInstanceWakeUp", testCrossInstanceWakeUp},
		{"RedriveWakesWaiter", testRedriveWakesWaiter},
		{"CloseWakesWaiters", testCloseWakesWaiters},
		{"Stats", testStats},
		{"RandomIDs", testRandomIDs},
		{"EnqueueIDValidation", testEnqueueIDValidation},
		{"EnqueueIDIdempotent", testEnqueueIDIdempotent},
		{"EnqueueIDForgets", testEnqueueIDForgets},
		{"EnqueueIDConcurrent", testEnqueueIDConcurrent},
		{"EnqueueIDs", testEnqueueIDs},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, h) })
	}
}

// admin returns s's dead-letter administration, failing t when s has none.
func admin(t *testing.T, s queue.Store) queue.DeadLetterAdmin {
	t.Helper()
	a, ok := s.(queue.DeadLetterAdmin)
	if !ok {
		t.Fatalf("%T does not implement queue.DeadLetterAdmin", s)
	}
	return a
}

// TestCtx returns a context that ends with the test.
func TestCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// noResidue waits until the store keeps nothing for any inbox (the Redis
// store's registry entry goes with the next sweep).
func noResidue(t *testing.T, h Harness, s queue.Store, what string) {
	t.Helper()
	Eventually(t, 30*time.Second, what+" to leave no key or bucket behind", func() bool {
		return h.Residue(t, s) == 0
	})
}

// Eventually polls cond every 10 ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// MustEnqueue enqueues body and fails t on an error.
func MustEnqueue(t *testing.T, s queue.Store, inbox string, body []byte) string {
	t.Helper()
	id, err := s.Enqueue(TestCtx(t), inbox, body)
	if err != nil {
		t.Fatalf("Enqueue(%s): %v", inbox, err)
	}
	if id == "" || strings.Contains(id, "#") {
		t.Fatalf("Enqueue(%s) returned bad id %q", inbox, id)
	}
	return id
}

// MustPull pulls and fails t on an error.
func MustPull(t *testing.T, s queue.Store, inbox string, n int, wait time.Duration) []queue.Message {
	t.Helper()
	msgs, err := s.Pull(TestCtx(t), inbox, n, wait)
	if err != nil {
		t.Fatalf("Pull(%s, %d, %v): %v", inbox, n, wait, err)
	}
	if msgs == nil {
		t.Fatalf("Pull(%s) returned a nil slice", inbox)
	}
	return msgs
}

// MustAck acknowledges receipts and fails t on an error.
func MustAck(t *testing.T, s queue.Store, inbox string, receipts ...string) int {
	t.Helper()
	n, err := s.Ack(TestCtx(t), inbox, receipts)
	if err != nil {
		t.Fatalf("Ack(%s, %v): %v", inbox, receipts, err)
	}
	return n
}

// MustStats reads the inbox stats and fails t on an error.
func MustStats(t *testing.T, s queue.Store, inbox string) queue.Stats {
	t.Helper()
	st, err := s.Stats(TestCtx(t), inbox)
	if err != nil {
		t.Fatalf("Stats(%s): %v", inbox, err)
	}
	return st
}

// IDs returns the ids of msgs.
func IDs(msgs []queue.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

func testFIFO(t *testing.T, h Harness) {
	s := h.Open(t, queue.Options{}, 1)[0]
	const n = 50
	var want []string
	for i := range n {
		want = append(want, MustEnqueue(t, s, "fifo", fmt.Appendf(nil, "m%03d", i)))
	}
	seen := map[string]bool{}
	var got []queue.Message
	for len(got) < n {
		batch := MustPull(t, s, "fifo", 7, 0)
		if len(batch) == 0 {
			t.Fatalf("pull returned nothing after %d of %d messages", len(got), n)
		}
		if len(batch) > 7 {
			t.Fatalf("pull of 7 returned %d", len(batch))
		}
		got = append(got, batch...)
	}
	for i, m := range got {
		if m.ID != want[i] {
			t.Fatalf("message %d: id %s, want %s (order %v)", i, m.ID, want[i], IDs(got))
		}
		if seen[m.ID] {
			t.Fatalf("id %s delivered twice", m.ID)
		}
		seen[m.ID] = true
		if wantBody := fmt.Sprintf("m%03d", i); string(m.Body) != wantBody {
			t.Fatalf("message %d: body %q, want %q", i, m.Body, wantBody)
		}
		if m.Deliveries != 1 || m.Receipt != queue.FormatReceipt(m.ID, 1) {
			t.Fatalf("message %d: deliveries %d receipt %q", i, m.Deliveries, m.Receipt)
		}
		if m.EnqueuedAt.IsZero() || time.Since(m.EnqueuedAt) > time.Hour || time.Until(m.EnqueuedAt) > time.Minute {
			t.Fatalf("message %d: implausible EnqueuedAt %v", i, m.EnqueuedAt)
		}
	}
	if extra := MustPull(t, s, "fifo", 10, 0); len(extra) != 0 {
		t.Fatalf("leased messages delivered again: %v", IDs(extra))
	}
}

func testValidation(t *testing.T, h Harness) {
	s := h.Open(t, queue.Options{}, 1)[0]
	ctx := TestCtx(t)
	cases := []struct {
		name string
		call func() error
		want error
	}{
		{"empty inbox", func() error { _, err := s.Enqueue(ctx, "", []byte("x")); return err }, queue.ErrInvalidInbox},
		{"inbox with brace", func() error { _, err := s.Enqueue(ctx, "a{b}", []byte("x")); return err }, queue.ErrInvalidInbox},
		{"inbox too long", func() error { _, err := s.Pull(ctx, strings.Repeat("a", 201), 1, 0); return err }, queue.ErrInvalidInbox},
		{"pull zero", func() error { _, err := s.Pull(ctx, "v", 0, 0); return err }, queue.ErrInvalidArgument},
		{"pull too many", func() error { _, err := s.Pull(ctx, "v", queue.MaxPull+1, 0); return err }, queue.ErrInvalidArgument},
		{"negative wait", func() error { _, err := s.Pull(ctx, "v", 1, -time.Second); return err }, queue.ErrInvalidArgument},
		{"dead letters limit", func() error { _, err := admin(t, s).DeadLetters(ctx, "v", 0); return err }, queue.ErrInvalidArgument},
		{"ack bad inbox", func() error { _, err := s.Ack(ctx, "a b", []string{"1"}); return err }, queue.ErrInvalidInbox},
		{"too large", func() error { _, err := s.Enqueue(ctx, "v", make([]byte, queue.MaxMessageSize+1)); return err }, queue.ErrTooLarge},
	}
	for _, tc := range cases {
		if err := tc.call(); !errors.Is(err, tc.want) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.want)
		}
	}
	if n := h.Residue(t, s); n != 0 {
		t.Errorf("rejected calls left %d keys/buckets behind", n)
	}
}

// testLeaseExclusivity: 2 store instances × 16 goroutines pull one inbox of
// 5,000 messages; with leases longer than the test, each message must be
// delivered exactly once.
func testLeaseExclusivity(t *testing.T, h Harness) {
	stores := h.Open(t, queue.Options{Lease: 5 * time.Minute}, 2)
	const total, producers, pullers = 5000, 16, 16
	ctx := TestCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, producers+2*pullers)
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[p%2]
			for i := p; i < total; i += producers {
				if _, err := s.Enqueue(ctx, "excl", fmt.Appendf(nil, "%d", i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	if st := MustStats(t, stores[0], "excl"); st.Ready != total {
		t.Fatalf("after enqueue: %+v, want %d ready", st, total)
	}
	var (
		mu        sync.Mutex
		delivered = map[string]string{}
		count     atomic.Int64
	)
	for _, s := range stores {
		for range pullers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for count.Load() < total {
					msgs, err := s.Pull(ctx, "excl", 10, 0)
					if err != nil {
						errs <- err
						return
					}
					var receipts []string
					mu.Lock()
					for _, m := range msgs {
						if prev, dup := delivered[m.ID]; dup {
							errs <- fmt.Errorf("message %s delivered twice (%s, then %s)", m.ID, prev, m.Receipt)
						}
						if m.Deliveries != 1 {
							errs <- fmt.Errorf("message %s has deliveries %d", m.ID, m.Deliveries)
						}
						delivered[m.ID] = m.Receipt
						receipts = append(receipts, m.Receipt)
					}
					mu.Unlock()
					count.Add(int64(len(msgs)))
					if len(receipts) > 0 {
						n, err := s.Ack(ctx, "excl", receipts)
						if err != nil {
							errs <- err
							return
						}
						if n != len(receipts) {
							errs <- fmt.Errorf("ack of %d fresh receipts removed %d", len(receipts), n)
						}
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(delivered) != total {
		t.Fatalf("delivered %d distinct messages, want %d", len(delivered), total)
	}
	if st := MustStats(t, stores[1], "excl"); st.Depth() != 0 || st.DeadLetters != 0 {
		t.Fatalf("after acking everything: %+v", st)
	}
	noResidue(t, h, stores[0], "an emptied inbox")
}

func testExpiryRedelivery(t *testing.T, h Harness) {
	s := h.Open(t, queue.Options{Lease: 200 * time.Millisecond}, 1)[0]
	a := MustEnqueue(t, s, "exp", []byte("a"))
	b := MustEnqueue(t, s, "exp", []byte("b"))
	c := MustEnqueue(t, s, "exp", []byte("c"))
	first := MustPull(t, s, "exp", 3, 0)
	if got := IDs(first); len(got) != 3 || got[0] != a || got[1] != b || got[2] != c {
		t.Fatalf("first pull %v, want [%s %s %s]", got, a, b, c)
	}
	if n := MustAck(t, s, "exp", first[1].Receipt); n != 1 {
		t.Fatalf("ack of b removed %d", n)
	}
	// d is ready while a and c are leased; once their leases lapse, a and c
	// are back in their original places, ahead of d.
	d := MustEnqueue(t, s, "exp", []byte("d"))
	Eventually(t, 30*time.Second, "leases to lapse", func() bool {
		return MustStats(t, s, "exp").Ready == 3
	})
	again := MustPull(t, s, "exp", 3, 0)
	CheckPulled(t, again, []string{a, c, d}, []int{2, 2, 1})
	if string(again[0].Body) != "a" || string(again[1].Body) != "c" || string(again[2].Body) != "d" {
		t.Fatalf("redelivered bodies %q %q %q", again[0].Body, again[1].Body, again[2].Body)
	}
	// Nothing is ready until the leases lapse again; a long poll notices the
	// lapse by itself (the harness disables short safety-net polls).
	third := MustPull(t, s, "exp", 3, 5*time.Minute)
	CheckPulled(t, third, []string{a, c, d}, []int{3, 3, 2})
}

// CheckPulled fails t unless msgs have exactly wantIDs, in order, with
// wantDeliveries.
func CheckPulled(t *testing.T, msgs []queue.Message, wantIDs []string, wantDeliveries []int) {
	t.Helper()
	if len(msgs) != len(wantIDs) {
		t.Fatalf("pulled %v, want %v", IDs(msgs), wantIDs)
	}
	for i, m := range msgs {
		if m.ID != wantIDs[i] || m.Deliveries != wantDeliveries[i] || m.Receipt != queue.FormatReceipt(m.ID, wantDeliveries[i]) {
			t.Fatalf("pulled #%d: %s deliveries %d receipt %q; want %s with %d (all: %v)",
				i, m.ID, m.Deliveries, m.Receipt, wantIDs[i], wantDeliveries[i], IDs(msgs))
		}
	}
}

func testReceipts(t *testing.T, h Harness) {
	s := h.Open(t, queue.Options{Lease: time.Second}, 1)[0]
	id := MustEnqueue(t, s, "rcpt", []byte("x"))
	other := MustEnqueue(t, s, "rcpt", []byte("y"))
	if n := MustAck(t, s, "rcpt", id, other); n != 0 {
		t.Fatalf("bare-id ack of never-delivered messages removed %d", n)
	}
	m1 := MustPull(t, s, "rcpt", 1, 0)
	if len(m1) != 1 || m1[0].ID != id {
		t.Fatalf("pull got %v, want [%s]", IDs(m1), id)
	}
	// Let the lease lapse; the message comes back with delivery 2.
	var m2 []queue.Message
	Eventually(t, 30*time.Second, "redelivery", func() bool {
		m2 = MustPull(t, s, "rcpt", 1, 2*time.Second)
		return len(m2) == 1 && m2[0].ID == id
	})
	if m2[0].Deliveries != 2 {
		t.Fatalf("redelivery count %d, want 2", m2[0].Deliveries)
	}
	cases := []struct {
		name     string
		receipts []string
		want     int
	}{
		{"stale receipt", []string{m1[0].Receipt}, 0},
		{"future receipt", []string{queue.FormatReceipt(id, 3)}, 0},
		{"unknown id", []string{"999999999", "999999999#1"}, 0},
		{"malformed", []string{"", "#", "#1", id + "#0", id + "#-1", id + "#x", id + "#1#2", strings.Repeat("9", 100)}, 0},
		{"current receipt", []string{m2[0].Receipt}, 1},
		{"already acked", []string{m2[0].Receipt, id}, 0},
	}
	for _, tc := range cases {
		if n := MustAck(t, s, "rcpt", tc.receipts...); n != tc.want {
			t.Fatalf("%s: Ack(%q) removed %d, want %d", tc.name, tc.receipts, n, tc.want)
		}
	}
	// A bare id removes a delivered message whatever its lease. (The
	// redelivery loop above may have leased "other" too: wait for it.)
	m3 := MustPull(t, s, "rcpt", 1, 5*time.Second)
	if len(m3) != 1 || m3[0].ID != other {
		t.Fatalf("pull got %v, want [%s]", IDs(m3), other)
	}
	if n := MustAck(t, s, "rcpt", other, other); n != 1 {
		t.Fatalf("bare-id ack removed %d, want 1", n)
	}
	if st := MustStats(t, s, "rcpt"); st.Depth() != 0 {
		t.Fatalf("after acks: %+v", st)
	}
	noResidue(t, h, s, "emptied inbox")
}

func testDeadLetters(t *testing.T, h Harness) {
	const maxd = 3
	s := h.Open(t, queue.Options{Lease: 100 * time.Millisecond, MaxDeliveries: maxd}, 1)[0]
	ctx := TestCtx(t)
	id := MustEnqueue(t, s, "dl", []byte("poison"))
	keep := MustEnqueue(t, s, "dl", []byte("fine"))
	// Deliver `id` maxd times without acking; ack `keep`.
	deliveries := 0
	Eventually(t, 30*time.Second, "dead-lettering", func() bool {
		for _, m := range MustPull(t, s, "dl", 10, 300*time.Millisecond) {
			switch m.ID {
			case keep:
				if n := MustAck(t, s, "dl", m.Receipt); n != 1 {
					t.Fatalf("ack of %s removed %d", keep, n)
				}
			case id:
				deliveries++
				if m.Deliveries != deliveries || m.Deliveries > maxd {
					t.Fatalf("delivery %d of %s reports %d (max %d)", deliveries, id, m.Deliveries, maxd)
				}
			default:
				t.Fatalf("unexpected message %s", m.ID)
			}
		}
		return MustStats(t, s, "dl").DeadLetters == 1
	})
	if deliveries != maxd {
		t.Fatalf("%s delivered %d times before dead-lettering, want %d", id, deliveries, maxd)
	}
	if st := MustStats(t, s, "dl"); st.Depth() != 0 || st.DeadLetters != 1 {
		t.Fatalf("stats after dead-lettering: %+v", st)
	}
	dead, err := admin(t, s).DeadLetters(ctx, "dl", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].ID != id || string(dead[0].Body) != "poison" || dead[0].Deliveries != maxd {
		t.Fatalf("dead letters %+v", dead)
	}
	if n := MustAck(t, s, "dl", id, queue.FormatReceipt(id, maxd)); n != 0 {
		t.Fatalf("ack removed %d dead letters; only purge may", n)
	}
	if msgs := MustPull(t, s, "dl", 10, 0); len(msgs) != 0 {
		t.Fatalf("dead letter delivered: %v", IDs(msgs))
	}
	// Redrive: back in the ready list with a fresh count.
	if n, err := admin(t, s).Redrive(ctx, "dl", []string{"12345", "nope"}); err != nil || n != 0 {
		t.Fatalf("redrive of unknown ids: %d, %v", n, err)
	}
	if n, err := admin(t, s).Redrive(ctx, "dl", nil); err != nil || n != 1 {
		t.Fatalf("redrive all: %d, %v", n, err)
	}
	if st := MustStats(t, s, "dl"); st.Ready != 1 || st.DeadLetters != 0 {
		t.Fatalf("stats after redrive: %+v", st)
	}
	msgs := MustPull(t, s, "dl", 10, 0)
	if len(msgs) != 1 || msgs[0].ID != id || msgs[0].Deliveries != 1 {
		t.Fatalf("after redrive pulled %+v", msgs)
	}
	// Let it die again, then redrive by id, then die again and purge.
	Eventually(t, 30*time.Second, "second dead-lettering", func() bool {
		MustPull(t, s, "dl", 10, 300*time.Millisecond)
		return MustStats(t, s, "dl").DeadLetters == 1
	})
	if n, err := admin(t, s).Redrive(ctx, "dl", []string{id}); err != nil || n != 1 {
		t.Fatalf("redrive by id: %d, %v", n, err)
	}
	Eventually(t, 30*time.Second, "third dead-lettering", func() bool {
		MustPull(t, s, "dl", 10, 300*time.Millisecond)
		return MustStats(t, s, "dl").DeadLetters == 1
	})
	if n, err := admin(t, s).PurgeDeadLetters(ctx, "dl"); err != nil || n != 1 {
		t.Fatalf("purge: %d, %v", n, err)
	}
	if n, err := admin(t, s).PurgeDeadLetters(ctx, "dl"); err != nil || n != 0 {
		t.Fatalf("second purge: %d, %v", n, err)
	}
	if st := MustStats(t, s, "dl"); st != (queue.Stats{}) {
		t.Fatalf("stats after purge: %+v", st)
	}
	noResidue(t, h, s, "purged inbox")
}

func testRetention(t *testing.T, h Harness) {
	s := h.Open(t, queue.Options{Retention: 500 * time.Millisecond, Lease: time.Minute}, 1)[0]
	// "idle": never pulled, only the sweeper can clean it.
	MustEnqueue(t, s, "idle", []byte("1"))
	old := MustEnqueue(t, s, "idle", []byte("2"))
	// "leased": a leased message expires too.
	MustEnqueue(t, s, "leased", []byte("3"))
	if got := MustPull(t, s, "leased", 1, 0); len(got) != 1 {
		t.Fatalf("pull got %d messages", len(got))
	}
	Eventually(t, 30*time.Second, "inboxes emptied by retention", func() bool {
		for _, ib := range []string{"idle", "leased"} {
			if MustStats(t, s, ib).Depth() != 0 {
				return false
			}
		}
		return h.Residue(t, s) == 0
	})
	if msgs := MustPull(t, s, "idle", 10, 0); len(msgs) != 0 {
		t.Fatalf("expired messages delivered: %v", IDs(msgs))
	}
	if n := MustAck(t, s, "idle", old); n != 0 {
		t.Fatalf("ack of an expired message removed %d", n)
	}
	// A fresh message is unaffected by the expiry of older ones.
	fresh := MustEnqueue(t, s, "idle", []byte("new"))
	if msgs := MustPull(t, s, "idle", 10, 0); len(msgs) != 1 || msgs[0].ID != fresh {
		t.Fatalf("fresh message: got %v, want [%s]", IDs(msgs), fresh)
	}

	// Dead letters expire too.
	s = h.Open(t, queue.Options{Retention: 2 * time.Second, Lease: 20 * time.Millisecond, MaxDeliveries: 1}, 1)[0]
	MustEnqueue(t, s, "dead", []byte("4"))
	if got := MustPull(t, s, "dead", 1, 0); len(got) != 1 {
		t.Fatalf("pull got %d messages", len(got))
	}
	Eventually(t, 30*time.Second, "dead-lettering", func() bool {
		MustPull(t, s, "dead", 1, 0)
		return MustStats(t, s, "dead").DeadLetters == 1
	})
	Eventually(t, 30*time.Second, "dead letter removed by retention", func() bool {
		return MustStats(t, s, "dead").DeadLetters == 0 && h.Residue(t, s) == 0
	})
}

func testCapacity(t *testing.T, h Harness) {
	s := h.Open(t, queue.Options{Capacity: 5}, 1)[0]
	ctx := TestCtx(t)
	for i := range 5 {
		MustEnqueue(t, s, "cap", []byte{byte(i)})
	}
	if _, err := s.Enqueue(ctx, "cap", []byte("6th")); !errors.Is(err, queue.ErrInboxFull) {
		t.Fatalf("6th enqueue: %v, want ErrInboxFull", err)
	}
	msgs := MustPull(t, s, "cap", 2, 0)
	if _, err := s.Enqueue(ctx, "cap", []byte("leased still count")); !errors.Is(err, queue.ErrInboxFull) {
		t.Fatalf("enqueue with 3 ready + 2 leased: %v, want ErrInboxFull", err)
	}
	MustEnqueue(t, s, "other", []byte("other inboxes are unaffected"))
	if n := MustAck(t, s, "cap", msgs[0].Receipt); n != 1 {
		t.Fatalf("ack removed %d", n)
	}
	MustEnqueue(t, s, "cap", []byte("room again"))
	if st := MustStats(t, s, "cap"); st.Ready != 4 || st.Leased != 1 {
		t.Fatalf("stats %+v, want 4 ready 1 leased (nothing evicted)", st)
	}
}

func testIsolation(t *testing.T, h Harness) {
	s := h.Open(t, queue.Options{}, 1)[0]
	a := MustEnqueue(t, s, "agent-a", []byte("for a"))
	b := MustEnqueue(t, s, "agent-b", []byte("for b"))
	ma := MustPull(t, s, "agent-a", 10, 0)
	if len(ma) != 1 || ma[0].ID != a || string(ma[0].Body) != "for a" {
		t.Fatalf("agent-a pulled %+v", ma)
	}
	if n := MustAck(t, s, "agent-b", ma[0].Receipt); n != 0 {
		t.Fatalf("agent-a's receipt removed %d messages from agent-b", n)
	}
	if st := MustStats(t, s, "agent-b"); st.Ready != 1 || st.Leased != 0 {
		t.Fatalf("agent-b stats %+v", st)
	}
	mb := MustPull(t, s, "agent-b", 10, 0)
	if len(mb) != 1 || mb[0].ID != b || string(mb[0].Body) != "for b" {
		t.Fatalf("agent-b pulled %+v", mb)
	}
	if err := s.DeleteInbox(TestCtx(t), "agent-b"); err != nil {
		t.Fatal(err)
	}
	if st := MustStats(t, s, "agent-a"); st.Leased != 1 {
		t.Fatalf("deleting agent-b touched agent-a: %+v", st)
	}
	if st := MustStats(t, s, "agent-b"); st != (queue.Stats{}) {
		t.Fatalf("agent-b after delete: %+v", st)
	}
}

func testLargePayload(t *testing.T, h Harness) {
	s := h.Open(t, queue.Options{}, 1)[0]
	big := bytes.Repeat([]byte{0, 1, 2, 0xff, '#', '\n'}, queue.MaxMessageSize/6+1)[:queue.MaxMessageSize]
	id := MustEnqueue(t, s, "big", big)
	msgs := MustPull(t, s, "big", 1, 0)
	if len(msgs) != 1 || msgs[0].ID != id || !bytes.Equal(msgs[0].Body, big) {
		t.Fatalf("1 MiB payload did not round-trip (got %d messages)", len(msgs))
	}
	if _, err := s.Enqueue(TestCtx(t), "big", append(big, 0)); !errors.Is(err, queue.ErrTooLarge) {
		t.Fatalf("1 MiB + 1: %v, want ErrTooLarge", err)
	}
	empty := MustEnqueue(t, s, "big", nil)
	MustAck(t, s, "big", msgs[0].Receipt)
	if msgs := MustPull(t, s, "big", 1, 0); len(msgs) != 1 || msgs[0].ID != empty || len(msgs[0].Body) != 0 {
		t.Fatalf("empty payload: %+v", msgs)
	}
}

func testPullByteBudget(t *testing.T, h Harness) {
	s := h.Open(t, queue.Options{}, 1)[0]
	const n = 12
	var want []string
	for i := range n {
		want = append(want, MustEnqueue(t, s, "budget", bytes.Repeat([]byte{byte(i)}, queue.MaxMessageSize)))
	}
	var got []queue.Message
	for len(got) < n {
		batch := MustPull(t, s, "budget", queue.MaxPull, 0)
		if len(batch) == 0 {
			t.Fatalf("pull returned nothing after %d of %d", len(got), n)
		}
		size := 0
		for _, m := range batch {
			size += len(m.Body)
		}
		if size > queue.MaxPullBytes+queue.MaxMessageSize {
			t.Fatalf("one pull returned %d bytes of bodies", size)
		}
		got = append(got, batch...)
	}
	if len(got) != n {
		t.Fatalf("got %d messages, want %d", len(got), n)
	}
	for i, m := range got {
		if m.ID != want[i] || len(m.Body) != queue.MaxMessageSize || m.Body[0] != byte(i) || m.Deliveries != 1 {
			t.Fatalf("message %d: id %s (want %s), %d bytes, first byte %d, deliveries %d",
				i, m.ID, want[i], len(m.Body), m.Body[0], m.Deliveries)
		}
	}
}

// StartWaitingPull starts a Pull in a goroutine and returns once the store
// has registered it as waiting.
func StartWaitingPull(t *testing.T, ctx context.Context, h Harness, s queue.Store, inbox string, wait time.Duration) <-chan PullResult {
	t.Helper()
	before := h.Waiting(s, inbox)
	ch := make(chan PullResult, 1)
	go func() {
		msgs, err := s.Pull(ctx, inbox, 10, wait)
		ch <- PullResult{Msgs: msgs, Err: err, At: time.Now()}
	}()
	Eventually(t, 10*time.Second, "pull to start waiting", func() bool {
		return h.Waiting(s, inbox) > before
	})
	return ch
}

// PullResult is the outcome of a Pull started by StartWaitingPull.
type PullResult struct {
	Msgs []queue.Message
	Err  error
	At   time.Time // when the Pull returned
}

func testCancelWaitingPull(t *testing.T, h Harness) {
	s := h.Open(t, queue.Options{}, 1)[0]
	ctx, cancel := context.WithCancel(TestCtx(t))
	res := StartWaitingPull(t, ctx, h, s, "cancel", 10*time.Minute)
	cancelled := time.Now()
	cancel()
	var r PullResult
	select {
	case r = <-res:
	case <-time.After(time.Minute):
		t.Fatal("cancelled pull did not return")
	}
	if !errors.Is(r.Err, context.Canceled) {
		t.Fatalf("cancelled pull: %v, want context.Canceled", r.Err)
	}
	t.Logf("cancelled pull returned after %v", r.At.Sub(cancelled))
	if n := h.Waiting(s, "cancel"); n != 0 {
		t.Fatalf("%d waiters left registered", n)
	}
	// A wait that simply ends returns an empty list and no error.
	msgs, err := s.Pull(TestCtx(t), "cancel", 10, 50*time.Millisecond)
	if err != nil || msgs == nil || len(msgs) != 0 {
		t.Fatalf("expired wait: %v, %v", msgs, err)
	}
}

func testCrossInstanceWakeUp(t *testing.T, h Harness) {
	stores := h.Open(t, queue.Options{}, 2)
	a, b := stores[0], stores[1]
	ctx := TestCtx(t)
	for round := range 3 {
		res := StartWaitingPull(t, ctx, h, b, "wake", 5*time.Minute)
		id := MustEnqueue(t, a, "wake", fmt.Appendf(nil, "round %d", round))
		var r PullResult
		select {
		case r = <-res:
		case <-time.After(time.Minute):
			t.Fatalf("round %d: waiting pull on B not woken by enqueue on A", round)
		}
		if r.Err != nil || len(r.Msgs) != 1 || r.Msgs[0].ID != id {
			t.Fatalf("round %d: woken pull got %v, %v; want [%s]", round, IDs(r.Msgs), r.Err, id)
		}
		MustAck(t, b, "wake", r.Msgs[0].Receipt)
	}
	if n := h.Waiting(b, "wake"); n != 0 {
		t.Fatalf("%d waiters left", n)
	}
}

func testRedriveWakesWaiter(t *testing.T, h Harness) {
	stores := h.Open(t, queue.Options{Lease: 50 * time.Millisecond, MaxDeliveries: 1}, 2)
	a, b := stores[0], stores[1]
	id := MustEnqueue(t, a, "redrive", []byte("again"))
	if got := MustPull(t, a, "redrive", 1, 0); len(got) != 1 {
		t.Fatalf("pulled %d", len(got))
	}
	Eventually(t, 30*time.Second, "dead-lettering", func() bool {
		MustPull(t, a, "redrive", 1, 0)
		return MustStats(t, a, "redrive").DeadLetters == 1
	})
	res := StartWaitingPull(t, TestCtx(t), h, b, "redrive", 5*time.Minute)
	if n, err := admin(t, a).Redrive(TestCtx(t), "redrive", []string{id}); err != nil || n != 1 {
		t.Fatalf("redrive: %d, %v", n, err)
	}
	select {
	case r := <-res:
		if r.Err != nil || len(r.Msgs) != 1 || r.Msgs[0].ID != id || r.Msgs[0].Deliveries != 1 {
			t.Fatalf("woken pull: %+v, %v", r.Msgs, r.Err)
		}
	case <-time.After(time.Minute):
		t.Fatal("redrive did not wake the waiting pull")
	}
}

func testCloseWakesWaiters(t *testing.T, h Harness) {
	stores := h.Open(t, queue.Options{}, 1)
	s := stores[0]
	res := StartWaitingPull(t, TestCtx(t), h, s, "closing", 10*time.Minute)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case r := <-res:
		if !errors.Is(r.Err, queue.ErrClosed) {
			t.Fatalf("pull after Close: %v, want ErrClosed", r.Err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Close did not wake the waiting pull")
	}
	if _, err := s.Enqueue(TestCtx(t), "closing", nil); !errors.Is(err, queue.ErrClosed) {
		t.Fatalf("enqueue after Close: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func testStats(t *testing.T, h Harness) {
	s := h.Open(t, queue.Options{Lease: 300 * time.Millisecond}, 1)[0]
	if st := MustStats(t, s, "stats"); st != (queue.Stats{}) {
		t.Fatalf("unknown inbox: %+v", st)
	}
	for i := range 4 {
		MustEnqueue(t, s, "stats", []byte{byte(i)})
	}
	MustPull(t, s, "stats", 3, 0)
	st := MustStats(t, s, "stats")
	if st.Ready != 1 || st.Leased != 3 || st.DeadLetters != 0 || st.Depth() != 4 {
		t.Fatalf("stats %+v, want 1 ready 3 leased", st)
	}
	Eventually(t, 30*time.Second, "lapsed leases to count as ready", func() bool {
		st = MustStats(t, s, "stats")
		return st.Ready == 4 && st.Leased == 0
	})
	Eventually(t, 30*time.Second, "oldest age to grow", func() bool {
		return MustStats(t, s, "stats").OldestAge >= 10*time.Millisecond
	})
	if err := s.Ping(TestCtx(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}
