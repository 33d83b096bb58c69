package broker

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealrelay/sealrelay/internal/slackfake"
	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/state"
	"github.com/sealrelay/sealrelay/store/boltstore"
)

// waitResult receives Slack's answer; the request is bounded by the hold
// deadline, so this only guards against a hung test.
func waitResult(t *testing.T, ch <-chan slackResult) slackResult {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("Slack's request was never answered")
	}
	return slackResult{}
}

// pullOne long-polls until one message arrives.
func pullOne(t *testing.T, c *agentClient, meta string) openedMessage {
	t.Helper()
	msgs := c.pullWithMeta(10, 20, meta)
	if len(msgs) != 1 {
		t.Fatalf("pulled %d messages, want 1", len(msgs))
	}
	return msgs[0]
}

// TestRespondBaudbotOrgAnsweredAtOnce: an org whose agents never declared
// inbox.respond gets the empty 200 of section 5 and no hold.
func TestRespondBaudbotOrgAnsweredAtOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withConfig(func(c *Config) { c.SyncResponseTimeout = MaxSyncResponseTimeout }))
	org, tok := h.install(slackfake.Install{TeamID: "T0RSPB01"})
	a := h.register(org, tok)
	for _, tt := range []struct{ name, path string }{{"slash command", "/slack/commands"}, {"view_submission", "/slack/interactivity"}} {
		body := commandForm(org, "hi")
		if tt.path == "/slack/interactivity" {
			body = interactionForm(`{"type":"view_submission","team":{"id":"` + org + `"},"view":{"id":"V1"}}`)
		}
		r := waitResult(t, slackAsync(h.url, tt.path, body))
		if r.status != http.StatusOK || len(r.body) != 0 {
			t.Fatalf("%s: %d %q, want an empty 200", tt.name, r.status, r.body)
		}
		m := pullOne(t, a, "")
		if isHoldID(m.ID) {
			t.Fatalf("%s: message id %s is a hold id", tt.name, m.ID)
		}
		if exp, by := a.heldFields(m); exp || by != 0 {
			t.Fatalf("%s: envelope has response_expected=%v respond_by=%d", tt.name, exp, by)
		}
		a.ack(m.ID)
	}
	if n := counterValue(t, h.srv.rm.held); n != 0 {
		t.Fatalf("held %v requests, want 0", n)
	}
}

// TestRespondHeldAnswers: a capable org's held slash command and
// view_submission are answered with the agent's JSON.
func TestRespondHeldAnswers(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine harnessOpt) {
		h := newHarness(t, engine, withConfig(func(c *Config) { c.SyncResponseTimeout = MaxSyncResponseTimeout }))
		org, tok := h.install(slackfake.Install{TeamID: "T0RSPH01"})
		a := h.registerCapable(h.url, org, tok)
		tests := []struct {
			name, path string
			body       []byte
			answer     string
		}{
			{"slash command", "/slack/commands", commandForm(org, "status"), `{"response_type":"in_channel","text":"all good"}`},
			{"view_submission errors", "/slack/interactivity",
				interactionForm(`{"type":"view_submission","team":{"id":"` + org + `"},"view":{"id":"V1"}}`),
				`{"response_action":"errors","errors":{"title":"too short"}}`},
			{"block_suggestion", "/slack/interactivity",
				interactionForm(`{"type":"block_suggestion","team":{"id":"` + org + `"},"value":"ab"}`),
				`{"options":[{"text":{"type":"plain_text","text":"abc"},"value":"abc"}]}`},
		}
		for _, tt := range tests {
			res := slackAsync(h.url, tt.path, tt.body)
			m := pullOne(t, a, capableMeta)
			if !isHoldID(m.ID) {
				t.Fatalf("%s: message id %q is not a hold id", tt.name, m.ID)
			}
			exp, by := a.heldFields(m)
			if !exp || by <= m.Env.BrokerTimestamp*1000 {
				t.Fatalf("%s: response_expected=%v respond_by=%d (broker_timestamp %d)", tt.name, exp, by, m.Env.BrokerTimestamp)
			}
			if !a.respond(m.ID, []byte(tt.answer)) {
				t.Fatalf("%s: first respond not delivered", tt.name)
			}
			r := waitResult(t, res)
			if r.status != http.StatusOK || r.contentType != "application/json" || string(r.body) != tt.answer {
				t.Fatalf("%s: Slack got %d %s %q, want %q", tt.name, r.status, r.contentType, r.body, tt.answer)
			}
			if a.respond(m.ID, []byte(`{"text":"second"}`)) {
				t.Fatalf("%s: second respond delivered", tt.name)
			}
			a.ack(m.ID) // a respond does not ack
		}
		if got := counterValue(t, h.srv.rm.answered); got != float64(len(tests)) {
			t.Fatalf("answered %v, want %d", got, len(tests))
		}
		// block_actions is answered at once even for a capable org.
		r := waitResult(t, slackAsync(h.url, "/slack/interactivity",
			interactionForm(`{"type":"block_actions","team":{"id":"`+org+`"},"actions":[{"action_id":"go"}]}`)))
		if r.status != 200 || len(r.body) != 0 {
			t.Fatalf("block_actions: %d %q", r.status, r.body)
		}
		if m := pullOne(t, a, capableMeta); isHoldID(m.ID) {
			t.Fatal("block_actions was held")
		}
		if got := counterValue(t, h.srv.rm.held); got != float64(len(tests)) {
			t.Fatalf("held %v, want %d", got, len(tests))
		}
	})
}

// TestRespondDeadline: without a respond Slack gets an empty 200 at the
// deadline; a respond after it is delivered:false, logged and counted late.
func TestRespondDeadline(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine harnessOpt) {
		h := newHarness(t, engine, withConfig(func(c *Config) { c.SyncResponseTimeout = 100 * time.Millisecond }))
		org, tok := h.install(slackfake.Install{TeamID: "T0RSPD01"})
		a := h.register(org, tok)
		a.pullWithMeta(10, 0, capableMeta) // declares the capability
		res := slackAsync(h.url, "/slack/commands", commandForm(org, "slow"))
		m := pullOne(t, a, capableMeta)
		r := waitResult(t, res)
		if r.status != http.StatusOK || len(r.body) != 0 {
			t.Fatalf("Slack got %d %q, want an empty 200", r.status, r.body)
		}
		if a.respond(m.ID, []byte(`{"text":"too late"}`)) {
			t.Fatal("late respond delivered")
		}
		if got := counterValue(t, h.srv.rm.late); got != 1 {
			t.Fatalf("late %v, want 1", got)
		}
		if got := counterValue(t, h.srv.rm.expired); got != 1 {
			t.Fatalf("expired %v, want 1", got)
		}
		if n := strings.Count(h.logs.String(), "respond came after the held request's deadline"); n != 1 {
			t.Fatalf("late respond logged %d times, want once", n)
		}
	})
}

// TestRespondAcrossReplicas: Slack's request held on one replica, the
// respond arriving on the other.
func TestRespondAcrossReplicas(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withConfig(func(c *Config) { c.SyncResponseTimeout = MaxSyncResponseTimeout }))
	_, _, _, _, url2 := h.newReplica()
	org, tok := h.install(slackfake.Install{TeamID: "T0RSPR01"})
	a := h.registerCapable(url2, org, tok)
	b := h.registerCapable(url2, org, h.extraRegToken(org))
	res := slackAsync(h.url, "/slack/commands", commandForm(org, "cross"))
	ma := pullOne(t, a, capableMeta)
	mb := pullOne(t, b, capableMeta)
	if ma.ID != mb.ID {
		t.Fatalf("copies have ids %s and %s, want the hold id on both", ma.ID, mb.ID)
	}
	answer := `{"text":"from replica two"}`
	if !b.respond(mb.ID, []byte(answer)) {
		t.Fatal("respond on the other replica not delivered")
	}
	r := waitResult(t, res)
	if r.status != 200 || string(r.body) != answer {
		t.Fatalf("Slack got %d %q", r.status, r.body)
	}
	if a.respond(ma.ID, []byte(`{"text":"second agent"}`)) {
		t.Fatal("the other agent's respond was delivered too")
	}
}

// TestRespondRejects: the check order and the delivered:false answers.
func TestRespondRejects(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withConfig(func(c *Config) { c.SyncResponseTimeout = MaxSyncResponseTimeout }))
	org, tok := h.install(slackfake.Install{TeamID: "T0RSPX01"})
	a := h.registerCapable(h.url, org, tok)
	ev, _ := eventBody(org, "plain event")
	h.postEvent(h.url, ev)
	plain := pullOne(t, a, capableMeta)
	replayed := a.respondBody(plain.ID, []byte(`{"text":"x"}`), a.now())
	if st, b := a.respondRaw(replayed); st != 200 {
		t.Fatalf("first respond: %d %s", st, b)
	}
	var tr protocol.RespondRequest
	_ = json.Unmarshal(a.respondBody(plain.ID, []byte(`{}`), a.now()), &tr)
	tr.MessageID = "h" + strings.Repeat("1", 2*holdIDBytes)
	tampered, _ := json.Marshal(tr)
	big := append(append([]byte(`{"text":"`), bytes.Repeat([]byte("a"), MaxRespondBody)...), `"}`...)
	tests := []struct {
		name   string
		token  string
		body   []byte
		status int
		want   string
	}{
		{"not JSON", a.token, []byte("{"), 400, protocol.ErrInvalidJSON},
		{"no token", "", a.respondBody(plain.ID, []byte(`{}`), a.now()), 401, protocol.ErrMissingToken},
		{"bad signature", a.token, tampered, 403, protocol.ErrInvalidSignature},
		{"message_id format", a.token, a.respondBody("m#1", []byte(`{}`), a.now()), 400, "invalid message_id"},
		{"replay", a.token, replayed, 409, protocol.ErrReplay},
		{"nonce format", a.token, a.signRespond(plain.ID, "AAAA", "AAAA", a.now()), 400, "invalid nonce"},
		{"oversize", a.token, a.respondBody(plain.ID, big, a.now()), 400, "at most 65536 bytes"},
		{"array", a.token, a.respondBody(plain.ID, []byte(`[1]`), a.now()), 400, "JSON object"},
		{"string", a.token, a.respondBody(plain.ID, []byte(`"hi"`), a.now()), 400, "JSON object"},
		{"broken object", a.token, a.respondBody(plain.ID, []byte(`{"a":`), a.now()), 400, "JSON object"},
	}
	for _, tt := range tests {
		status, _, b := do(t, http.MethodPost, h.url+"/api/inbox/respond", tt.token, tt.body, nil)
		if status != tt.status || !strings.Contains(errorText(t, b), tt.want) {
			t.Errorf("%s: %d %s, want %d %q", tt.name, status, b, tt.status, tt.want)
		}
	}
	// Respond for messages that were not held: delivered:false, not an error.
	if a.respond(plain.ID, []byte(`{"text":"x"}`)) {
		t.Fatal("respond for a plain event delivered")
	}
	if a.respond("h"+strings.Repeat("0", 2*holdIDBytes), []byte(`{"text":"x"}`)) {
		t.Fatal("respond for an unknown hold delivered")
	}
}

// TestRespondNoPlaintextAnswer: the answer appears nowhere in Redis or the
// logs.
func TestRespondNoPlaintextAnswer(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withConfig(func(c *Config) { c.SyncResponseTimeout = MaxSyncResponseTimeout }))
	org, tok := h.install(slackfake.Install{TeamID: "T0RSPC01"})
	a := h.registerCapable(h.url, org, tok)
	const canary = "CANARY-respond-7f3a9c"
	res := slackAsync(h.url, "/slack/commands", commandForm(org, "secret"))
	m := pullOne(t, a, capableMeta)
	answer, _ := json.Marshal(map[string]string{"text": canary})
	if !a.respond(m.ID, answer) {
		t.Fatal("not delivered")
	}
	if r := waitResult(t, res); !bytes.Contains(r.body, []byte(canary)) {
		t.Fatalf("Slack got %q", r.body)
	}
	h.assertNoSecrets(canary)
}

// TestRespondCapabilityFreshness: a pull that no longer declares the
// capability ends the holds; an old declaration lapses.
func TestRespondCapabilityFreshness(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withConfig(func(c *Config) { c.RespondCapabilityTTL = time.Minute }))
	org, tok := h.install(slackfake.Install{TeamID: "T0RSPF01"})
	a := h.register(org, tok)
	capable := func() bool {
		agents, err := h.st.ListAgents(t.Context(), org)
		if err != nil {
			t.Fatal(err)
		}
		return h.srv.respondCapable(agents)
	}
	steps := []struct {
		name    string
		meta    string
		advance time.Duration
		want    bool
	}{
		{"baudbot pull", "", 0, false},
		{"declared", capableMeta, 0, true},
		{"still fresh", "", 0, false},
		{"declared again", capableMeta, 0, true},
		{"other meta", `{"client":"x"}`, 0, false},
		{"declared once more", capableMeta, 0, true},
		{"lapsed", "-", 2 * time.Minute, false},
	}
	for _, st := range steps {
		h.clock.Advance(st.advance)
		if st.meta != "-" {
			a.pullWithMeta(1, 0, st.meta)
		}
		if got := capable(); got != st.want {
			t.Fatalf("%s: capable %v, want %v", st.name, got, st.want)
		}
	}
}

// TestRespondEmbedded: the bbolt mode holds and answers in process.
func TestRespondEmbedded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, err := boltstore.OpenState(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	q, err := boltstore.OpenInbox(filepath.Join(dir, "q"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	h := &harness{t: t, clock: &testClock{}, logs: &syncBuffer{}, keys: newTestKeys(t)}
	srv, err := New(Config{PublicURL: "http://broker.example", SlackClientID: testClientID, SlackClientSecret: testClientSecret,
		SlackSigningSecret: testSigningSecret, SyncResponseTimeout: MaxSyncResponseTimeout}, st, q, h.keys,
		slog.New(slog.NewJSONHandler(h.logs, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, srv)
	h.srv, h.url = srv, ts
	const org = "T0RSPE01"
	if err := st.PutInstallation(t.Context(), &state.Installation{OrgID: org, TeamID: org}); err != nil {
		t.Fatal(err)
	}
	tok := "embedded-registration-token-0123456789"
	if err := st.PutRegistrationToken(t.Context(), srv.hk.Hash(KindRegistrationToken, tok), org, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	a := h.registerCapable(ts, org, tok)
	res := slackAsync(ts, "/slack/commands", commandForm(org, "embedded"))
	m := pullOne(t, a, capableMeta)
	answer := `{"text":"from bolt"}`
	if !a.respond(m.ID, []byte(answer)) {
		t.Fatal("not delivered")
	}
	if r := waitResult(t, res); r.status != 200 || string(r.body) != answer {
		t.Fatalf("Slack got %d %q", r.status, r.body)
	}
	if a.respond(m.ID, []byte(answer)) {
		t.Fatal("second respond delivered")
	}
}
