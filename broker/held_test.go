package broker

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/internal/slackfake"
	"github.com/sealrelay/sealrelay/state"
)

// TestRespondCapable: only an agent with an unexpired token and a fresh
// declaration makes the org hold.
func TestRespondCapable(t *testing.T) {
	t.Parallel()
	now := time.Now()
	s := &Server{cfg: Config{Now: func() time.Time { return now }}}
	fresh, stale := now.Add(time.Minute), now.Add(-time.Second)
	tests := []struct {
		name   string
		agents []*state.Agent
		want   bool
	}{
		{"none", nil, false},
		{"never declared", []*state.Agent{{AccessTokenExpiresAt: fresh}}, false},
		{"declared", []*state.Agent{{AccessTokenExpiresAt: fresh, RespondUntil: fresh}}, true},
		{"declaration lapsed", []*state.Agent{{AccessTokenExpiresAt: fresh, RespondUntil: stale}}, false},
		{"token expired", []*state.Agent{{AccessTokenExpiresAt: stale, RespondUntil: fresh}}, false},
		{"one of two", []*state.Agent{{AccessTokenExpiresAt: fresh}, {AccessTokenExpiresAt: fresh, RespondUntil: fresh}}, true},
	}
	for _, tt := range tests {
		if got := s.respondCapable(tt.agents); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestRespondDuringShutdown: Shutdown waits for a held request, whose
// respond is still delivered, and new requests are answered at once.
func TestRespondDuringShutdown(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withConfig(func(c *Config) { c.SyncResponseTimeout = MaxSyncResponseTimeout }))
	_, _, _, _, url2 := h.newReplica()
	org, tok := h.install(slackfake.Install{TeamID: "T0RSPS01"})
	a := h.registerCapable(url2, org, tok)
	res := slackAsync(h.url, "/slack/commands", commandForm(org, "shutdown"))
	m := pullOne(t, a, capableMeta)
	done := make(chan error, 1)
	go func() { done <- h.srv.Shutdown(context.Background()) }()
	answer := `{"text":"still answered"}`
	if !a.respond(m.ID, []byte(answer)) {
		t.Fatal("respond during shutdown not delivered")
	}
	if r := waitResult(t, res); r.status != http.StatusOK || string(r.body) != answer {
		t.Fatalf("Slack got %d %q", r.status, r.body)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	r := waitResult(t, slackAsync(h.url, "/slack/commands", commandForm(org, "after")))
	if r.status != http.StatusOK || len(r.body) != 0 {
		t.Fatalf("after shutdown: %d %q, want an empty 200 at once", r.status, r.body)
	}
	if got := counterValue(t, h.srv.rm.held); got != 1 {
		t.Fatalf("held %v, want 1", got)
	}
}

// TestRespondNoCopyNoHold: when every copy is dropped (a full inbox) no
// agent can answer, so the request is not held.
func TestRespondNoCopyNoHold(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withQueue(queueOptions(1)), withConfig(func(c *Config) { c.SyncResponseTimeout = MaxSyncResponseTimeout }))
	org, tok := h.install(slackfake.Install{TeamID: "T0RSPN01"})
	h.registerCapable(h.url, org, tok)
	ev, _ := eventBody(org, "fills the inbox")
	h.postEvent(h.url, ev)
	r := waitResult(t, slackAsync(h.url, "/slack/commands", commandForm(org, "dropped")))
	if r.status != http.StatusOK || len(r.body) != 0 {
		t.Fatalf("Slack got %d %q, want an empty 200", r.status, r.body)
	}
	if held, expired := counterValue(t, h.srv.rm.held), counterValue(t, h.srv.rm.expired); held != 0 || expired != 0 {
		t.Fatalf("held %v, expired %v; want no hold", held, expired)
	}
}
