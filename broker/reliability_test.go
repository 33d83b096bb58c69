package broker

import (
	"context"
	"encoding/json"
	"io"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/internal/slackfake"
	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/queue"
)

// lostReplyStore stores every message but reports io.ErrUnexpectedEOF for
// the first enqueue into each inbox it is told to fail, like a Redis that
// executed the transaction and lost the reply.
type lostReplyStore struct {
	queue.Store
	mu   sync.Mutex
	fail map[string]bool // inbox → fail its next enqueue
}

func (l *lostReplyStore) lose(inbox string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail[inbox] {
		delete(l.fail, inbox)
		return true
	}
	return false
}

func (l *lostReplyStore) Enqueue(ctx context.Context, inbox string, body []byte) (string, error) {
	id, err := l.Store.Enqueue(ctx, inbox, body)
	if err == nil && l.lose(inbox) {
		return "", io.ErrUnexpectedEOF
	}
	return id, err
}

func (l *lostReplyStore) EnqueueID(ctx context.Context, inbox, id string, body []byte) (bool, error) {
	stored, err := l.Store.EnqueueID(ctx, inbox, id, body)
	if err == nil && l.lose(inbox) {
		return false, io.ErrUnexpectedEOF
	}
	return stored, err
}

// TestLostEnqueueReplyDeliversOnce: the enqueue of one agent's copy succeeds
// but its reply is lost, so the broker answers 503 and Slack retries the
// event; the retry must not store a second copy for that agent (nor for the
// agent whose enqueue was answered).
func TestLostEnqueueReplyDeliversOnce(t *testing.T) {
	t.Parallel()
	lost := &lostReplyStore{fail: map[string]bool{}}
	h := newHarness(t, withQueueWrapper(func(q queue.Store) queue.Store { lost.Store = q; return lost }))
	org, tok := h.install(slackfake.Install{TeamID: "T0LOST01"})
	a := h.register(org, tok)
	b := h.register(org, h.freshRegToken(org))
	cases := []struct {
		name  string
		agent *agentClient
	}{{"one agent's reply lost", a}, {"other agent's reply lost", b}}
	for _, tc := range cases {
		ev, evID := eventBody(org, tc.name)
		lost.mu.Lock()
		for _, ag := range []*agentClient{a, b} {
			if ag == tc.agent {
				lost.fail[h.agentID(ag)] = true
			}
		}
		lost.mu.Unlock()
		status, body := h.slackPost(h.url, "/slack/events", ev, "application/json", time.Now())
		expectError(t, status, body, 503, "unavailable")
		h.postEvent(h.url, ev) // Slack's retry
		for _, ag := range []*agentClient{a, b} {
			msgs := ag.pull(10, 0)
			if len(msgs) != 1 {
				t.Fatalf("%s: agent got %d copies of %s, want 1", tc.name, len(msgs), evID)
			}
			ag.ack(msgs[0].ID)
		}
	}
}

// agentID looks up the id of a registered test agent by its access token.
func (h *harness) agentID(c *agentClient) string {
	h.t.Helper()
	g, err := h.st.LookupAccessToken(context.Background(), h.srv.hk.Hash(KindAccessToken, c.token), time.Now())
	if err != nil {
		h.t.Fatal(err)
	}
	return g.AgentID
}

// TestDropNotice: copies dropped because the inbox is full are reported to
// the agent by one events_dropped notice once there is room, with the count,
// reasons, time range and event ids; the drop records never hold the text.
func TestDropNotice(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine harnessOpt) {
		const canary = "CANARY dropped text 5a9e"
		h := newHarness(t, engine, withQueue(queueOptions(2)))
		org, tok := h.install(slackfake.Install{TeamID: "T0DROP01"})
		a := h.register(org, tok)
		var evIDs []string
		for i := range 5 {
			ev, id := eventBody(org, canary+" "+strconv.Itoa(i))
			h.postEvent(h.url, ev)
			evIDs = append(evIDs, id)
		}
		h.assertNoSecrets(canary)
		first := a.pull(10, 0) // still full: the notice must wait
		if len(first) != 2 {
			t.Fatalf("pulled %d, want the 2 stored events", len(first))
		}
		for _, m := range first {
			if m.Env.Type != protocol.TypeEventCallback {
				t.Fatalf("first pull: %s before room was made", m.Env.Type)
			}
			a.ack(m.ID)
		}
		msgs := a.pull(10, 0)
		if len(msgs) != 1 || msgs[0].Env.Source != protocol.SourceSystem || msgs[0].Env.Type != protocol.TypeEventsDropped {
			t.Fatalf("after making room: %d messages, want one events_dropped notice", len(msgs))
		}
		var n protocol.DropNotice
		if err := json.Unmarshal(msgs[0].Env.Payload, &n); err != nil {
			t.Fatal(err)
		}
		if n.Count != 3 || len(n.Reasons) != 1 || n.Reasons[protocol.DropInboxFull] != 3 || n.EventIDsTruncated ||
			len(n.EventIDs) != 3 || n.EventIDs[0] != evIDs[2] || n.EventIDs[2] != evIDs[4] ||
			n.FirstDroppedAt == 0 || n.LastDroppedAt < n.FirstDroppedAt {
			t.Fatalf("notice %+v, want 3 inbox_full drops of %v", n, evIDs[2:])
		}
		a.ack(msgs[0].ID)
		if more := a.pull(10, 0); len(more) != 0 {
			t.Fatalf("%d messages after the notice, want none (counts reset)", len(more))
		}
		if got := counterValue(t, h.srv.m.dropNotices); got != 1 {
			t.Fatalf("drop notices = %v, want 1", got)
		}
		if got := counterValue(t, h.srv.m.eventsDropped.WithLabelValues("inbox_full")); got != 3 {
			t.Fatalf("inbox_full drops = %v, want 3", got)
		}
	})
}

// TestDropNoticeAcrossReplicas: a drop recorded by one replica is reported
// on a pull served by another.
func TestDropNoticeAcrossReplicas(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withQueue(queueOptions(1)))
	org, tok := h.install(slackfake.Install{TeamID: "T0DROP02"})
	a := h.register(org, tok)
	for i := range 2 {
		ev, _ := eventBody(org, "x"+strconv.Itoa(i))
		h.postEvent(h.url, ev)
	}
	_, _, _, _, urlB := h.newReplica()
	a.base = urlB
	m := a.pull(10, 0)
	a.ack(m[0].ID)
	got := a.pull(10, 0)
	if len(got) != 1 || got[0].Env.Type != protocol.TypeEventsDropped {
		t.Fatalf("replica B: %d messages, want the notice", len(got))
	}
}
