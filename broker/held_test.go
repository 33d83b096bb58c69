package broker

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/internal/slackfake"
)

// TestHoldHubs runs the same claim/expire sequences on the in-process and
// the Redis hub: the first claim of the right org wins and hands over the
// answer, the deadline and a claim exclude each other, and tombstones tell
// late and duplicate responds apart from unknown ones.
func TestHoldHubs(t *testing.T) {
	t.Parallel()
	hubs := map[string]func(t *testing.T) holdHub{
		"memory": func(*testing.T) holdHub { return newMemHolds() },
		"redis": func(t *testing.T) holdHub {
			rdb, prefix := testRedis(t)
			r, err := newRedisHolds(rdb, prefix+"{state}:", slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = r.close() })
			return r
		},
	}
	type step struct {
		op      string // claim, claimOther (another org), expire
		want    holdClaim
		expired bool
	}
	seqs := []struct {
		name      string
		steps     []step
		delivered bool
	}{
		{"claim wins", []step{{op: "claim", want: claimWon}, {op: "claim", want: claimAnswered}, {op: "expire", expired: false}}, true},
		{"deadline wins", []step{{op: "expire", expired: true}, {op: "claim", want: claimLate}, {op: "claim", want: claimLate}}, false},
		{"other org", []step{{op: "claimOther", want: claimNotHeld}, {op: "claim", want: claimWon}, {op: "claimOther", want: claimNotHeld}}, true},
	}
	for name, mk := range hubs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			hub := mk(t)
			ctx := context.Background()
			if res, err := hub.claim(ctx, "h"+"0123456789abcdef0123456789abcd", "T1", []byte("x")); err != nil || res != claimNotHeld {
				t.Fatalf("unknown hold: %v %v", res, err)
			}
			for _, sq := range seqs {
				id, err := newHoldID()
				if err != nil {
					t.Fatal(err)
				}
				ch, err := hub.hold(ctx, id, "T1", time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				for i, st := range sq.steps {
					switch st.op {
					case "expire":
						got, err := hub.expire(ctx, id)
						if err != nil || got != st.expired {
							t.Fatalf("%s step %d: expire %v %v, want %v", sq.name, i, got, err, st.expired)
						}
					default:
						org := "T1"
						if st.op == "claimOther" {
							org = "T2"
						}
						got, err := hub.claim(ctx, id, org, []byte("answer-"+id))
						if err != nil || got != st.want {
							t.Fatalf("%s step %d: claim %v %v, want %v", sq.name, i, got, err, st.want)
						}
					}
				}
				if sq.delivered {
					if got := string(<-ch); got != "answer-"+id {
						t.Fatalf("%s: handed over %q", sq.name, got)
					}
				} else if len(ch) != 0 {
					t.Fatalf("%s: an answer was handed over", sq.name)
				}
				hub.release(id)
			}
		})
	}
}

// TestRespondCapable: only an agent with an unexpired token and a fresh
// declaration makes the org hold.
func TestRespondCapable(t *testing.T) {
	t.Parallel()
	now := time.Now()
	s := &Server{cfg: Config{Now: func() time.Time { return now }}}
	fresh, stale := now.Add(time.Minute), now.Add(-time.Second)
	tests := []struct {
		name   string
		agents []*Agent
		want   bool
	}{
		{"none", nil, false},
		{"never declared", []*Agent{{AccessTokenExpiresAt: fresh}}, false},
		{"declared", []*Agent{{AccessTokenExpiresAt: fresh, RespondUntil: fresh}}, true},
		{"declaration lapsed", []*Agent{{AccessTokenExpiresAt: fresh, RespondUntil: stale}}, false},
		{"token expired", []*Agent{{AccessTokenExpiresAt: stale, RespondUntil: fresh}}, false},
		{"one of two", []*Agent{{AccessTokenExpiresAt: fresh}, {AccessTokenExpiresAt: fresh, RespondUntil: fresh}}, true},
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
