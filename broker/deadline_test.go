package broker

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/internal/slackfake"
	"github.com/sealrelay/sealrelay/queue"
)

// stallingStore is a queue whose enqueues and pings hang until their
// context ends while stalled is set, like a frozen Redis.
type stallingStore struct {
	queue.Store
	stalled chan struct{} // closed: stop stalling
}

func (s *stallingStore) stall(ctx context.Context) error {
	select {
	case <-s.stalled:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *stallingStore) Enqueue(ctx context.Context, inbox string, body []byte) (string, error) {
	if err := s.stall(ctx); err != nil {
		return "", err
	}
	return s.Store.Enqueue(ctx, inbox, body)
}

func (s *stallingStore) EnqueueID(ctx context.Context, inbox, id string, body []byte) (bool, error) {
	if err := s.stall(ctx); err != nil {
		return false, err
	}
	return s.Store.EnqueueID(ctx, inbox, id, body)
}

func (s *stallingStore) Ping(ctx context.Context) error {
	if err := s.stall(ctx); err != nil {
		return err
	}
	return s.Store.Ping(ctx)
}

// TestWebhookDeadline: a store that never answers makes the webhook a 503
// once Config.WebhookTimeout passes (logged and counted), and /readyz a 503
// once ReadyzTimeout passes; when the store answers again Slack's retry is
// stored once.
func TestWebhookDeadline(t *testing.T) {
	t.Parallel()
	st := &stallingStore{stalled: make(chan struct{})}
	h := newHarness(t, withConfig(func(c *Config) { c.WebhookTimeout = 50 * time.Millisecond }),
		withQueueWrapper(func(q queue.Store) queue.Store { st.Store = q; return st }))
	org, tok := h.install(slackfake.Install{TeamID: "T0STALL1"})
	a := h.register(org, tok)
	ev, _ := eventBody(org, "stalled")
	const form = "application/x-www-form-urlencoded"
	routes := []struct {
		route, path, ct string
		body            []byte
	}{
		{"slack_events", "/slack/events", "application/json", ev},
		{"slack_interactivity", "/slack/interactivity", form,
			[]byte("payload=" + url.QueryEscape(`{"type":"block_actions","team":{"id":"`+org+`"}}`))},
		{"slack_commands", "/slack/commands", form, []byte("command=%2Fask&text=hi&team_id=" + org)},
	}
	for _, r := range routes {
		status, body := h.slackPost(h.url, r.path, r.body, r.ct, time.Now())
		expectError(t, status, body, http.StatusServiceUnavailable, "unavailable")
		if got := counterValue(t, h.srv.m.storeTimeouts.WithLabelValues(r.route)); got != 1 {
			t.Fatalf("%s: store timeouts = %v, want 1", r.route, got)
		}
	}
	if !strings.Contains(h.logs.String(), "store did not answer in time") {
		t.Fatal("no log line for the store timeout")
	}
	status, _, body := do(t, http.MethodGet, h.url+"/readyz", "", nil, nil)
	expectError(t, status, body, http.StatusServiceUnavailable, "unavailable")

	close(st.stalled)
	// Slack's retry, to a replica with the default deadline (the 50 ms one
	// above is only there to keep the test short).
	h.cfg.WebhookTimeout = 0
	_, _, _, _, urlB := h.newReplica()
	h.postEvent(urlB, ev)
	a.base = urlB
	if msgs := a.pull(10, 0); len(msgs) != 1 {
		t.Fatalf("%d copies after the retry, want 1", len(msgs))
	}
	if status, _, body := do(t, http.MethodGet, urlB+"/readyz", "", nil, nil); status != http.StatusOK {
		t.Fatalf("/readyz after the stall: %d %s", status, body)
	}
}
