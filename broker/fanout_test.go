package broker

import (
	"context"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/internal/slackfake"
	"github.com/sealrelay/sealrelay/queue"
)

// TestParallel: every index runs exactly once, for counts around the
// worker bound.
func TestParallel(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 2, 3, 17, 1000} {
		hits := make([]int32, n)
		parallel(n, func(i int) { hits[i]++ })
		for i, h := range hits {
			if h != 1 {
				t.Fatalf("n=%d: index %d ran %d times", n, i, h)
			}
		}
	}
}

// lostBatchStore is lostReplyStore for the batched path: EnqueueIDs stores
// every copy but reports io.ErrUnexpectedEOF for the inboxes told to fail.
type lostBatchStore struct{ *lostReplyStore }

func (l lostBatchStore) EnqueueIDs(ctx context.Context, items []queue.Item) []queue.Result {
	res := l.Store.(queue.BatchEnqueuer).EnqueueIDs(ctx, items)
	for i := range res {
		if res[i].Err == nil && l.lose(items[i].Inbox) {
			res[i] = queue.Result{Err: io.ErrUnexpectedEOF}
		}
	}
	return res
}

// TestLostBatchReplyDeliversOnce: with copies stored by one EnqueueIDs call,
// a lost reply for one agent's copy makes the broker answer 503, and
// Slack's retry stores no second copy for any agent.
func TestLostBatchReplyDeliversOnce(t *testing.T) {
	t.Parallel()
	lost := lostBatchStore{&lostReplyStore{fail: map[string]bool{}}}
	h := newHarness(t, withQueueWrapper(func(q queue.Store) queue.Store { lost.Store = q; return lost }))
	org, tok := h.install(slackfake.Install{TeamID: "T0LOSTB1"})
	agents := []*agentClient{h.register(org, tok), h.register(org, h.extraRegToken(org)), h.register(org, h.extraRegToken(org))}
	for i, lose := range agents {
		ev, evID := eventBody(org, "batch lost "+strconv.Itoa(i))
		lost.mu.Lock()
		lost.fail[h.agentID(lose)] = true
		lost.mu.Unlock()
		status, body := h.slackPost(h.url, "/slack/events", ev, "application/json", time.Now())
		expectError(t, status, body, 503, "unavailable")
		h.postEvent(h.url, ev) // Slack's retry
		for j, ag := range agents {
			msgs := ag.pull(10, 0)
			if len(msgs) != 1 {
				t.Fatalf("lost %d: agent %d got %d copies of %s, want 1", i, j, len(msgs), evID)
			}
			ag.ack(msgs[0].ID)
		}
	}
}

// TestFanOutManyAgents: with more agents than GOMAXPROCS, every agent gets
// exactly one copy sealed to its own key under its own message id, and a
// full inbox drops only that agent's copy.
func TestFanOutManyAgents(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withQueue(queueOptions(2)))
	org, tok := h.install(slackfake.Install{TeamID: "T0FANOUT"})
	const n = 7
	agents := []*agentClient{h.register(org, tok)}
	for len(agents) < n {
		agents = append(agents, h.register(org, h.extraRegToken(org)))
	}
	full := agents[3]
	for i := range 2 {
		if _, err := h.q.Enqueue(context.Background(), h.agentID(full), []byte(`filler`+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	ev, evID := eventBody(org, "fan out to seven")
	h.postEvent(h.url, ev)
	h.postEvent(h.url, ev) // a duplicate delivery stores nothing
	seen := map[string]bool{}
	for i, ag := range agents {
		if ag == full {
			continue
		}
		msgs := ag.pull(10, 0)
		if len(msgs) != 1 || !strings.Contains(string(msgs[0].Env.Payload), evID) {
			t.Fatalf("agent %d: %d messages, want the one copy of %s", i, len(msgs), evID)
		}
		if seen[msgs[0].ID] {
			t.Fatalf("agent %d: message id %s shared with another agent", i, msgs[0].ID)
		}
		seen[msgs[0].ID] = true
	}
	if got := counterValue(t, h.srv.m.eventsQueued); got != n-1 {
		t.Fatalf("queued copies = %v, want %d", got, n-1)
	}
	if got := counterValue(t, h.srv.m.eventsDropped.WithLabelValues("inbox_full")); got != 1 {
		t.Fatalf("inbox_full drops = %v, want 1", got)
	}
}
