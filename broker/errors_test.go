package broker

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/slackfake"
	"github.com/sealrelay/sealrelay/internal/testredis"
	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/state"
	"github.com/sealrelay/sealrelay/store/redisstore"
)

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func expectError(t *testing.T, status int, body []byte, wantStatus int, wantText string) {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status %d, want %d (%s)", status, wantStatus, body)
	}
	if got := errorText(t, body); !strings.Contains(got, wantText) {
		t.Fatalf("error %q does not contain %q", got, wantText)
	}
}

// TestRegisterErrors covers every row of the protocol's register table, in
// order, on one broker.
func TestRegisterErrors(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine harnessOpt) {
		h := newHarness(t, engine)
		orgA, tokA := h.install(slackfake.Install{TeamID: "T0REGA01"})
		orgB, tokB := h.install(slackfake.Install{TeamID: "T0REGB01"})
		first := h.newAgentKeys(orgA)
		fresh := func() *agentClient { return h.newAgentKeys(orgA) }
		reqWith := func(c *agentClient, mut func(m map[string]any)) []byte {
			m := map[string]any{"org_id": c.org, "workspace_id": c.org, "server_pubkey": c.box.Public.String(),
				"server_signing_pubkey": c.sig.Public().String(), "registration_token": tokA}
			mut(m)
			return mustJSON(m)
		}
		tests := []struct {
			name       string
			body       []byte
			wantStatus int
			wantText   string
		}{
			{"body too large", bytes.Repeat([]byte(" "), protocol.MaxBodySize+1), 413, protocol.ErrBodyTooLarge},
			{"bad json", []byte(`{"org_id":`), 400, protocol.ErrInvalidJSON},
			{"missing proof", reqWith(fresh(), func(m map[string]any) { delete(m, "registration_token") }), 400, protocol.ErrMissingRegistrationProof},
			{"malformed org id", reqWith(fresh(), func(m map[string]any) { m["org_id"], m["workspace_id"] = "T0|bad", "T0|bad" }), 400, "invalid"},
			{"org and workspace differ", reqWith(fresh(), func(m map[string]any) { m["workspace_id"] = orgB }), 400, "invalid"},
			{"malformed box key", reqWith(fresh(), func(m map[string]any) { m["server_pubkey"] = "AAAA" }), 400, "invalid"},
			{"low-order box key", reqWith(fresh(), func(m map[string]any) { m["server_pubkey"] = base64.StdEncoding.EncodeToString(make([]byte, 32)) }), 400, "low-order"},
			{"malformed signing key", reqWith(fresh(), func(m map[string]any) { m["server_signing_pubkey"] = "%%%" }), 400, "invalid"},
			{"org not found (before the token is looked at)", reqWith(fresh(), func(m map[string]any) {
				m["org_id"], m["workspace_id"], m["registration_token"] = "T0NOPE", "T0NOPE", "short"
			}), 404, protocol.ErrOrgNotFound},
			{"unknown token", reqWith(fresh(), func(m map[string]any) { m["registration_token"] = strings.Repeat("x", 43) }), 403, protocol.ErrInvalidRegistrationToken},
			{"short token", reqWith(fresh(), func(m map[string]any) { m["registration_token"] = "abc" }), 403, protocol.ErrInvalidRegistrationToken},
			{"token of another org", reqWith(fresh(), func(m map[string]any) { m["registration_token"] = tokB }), 403, protocol.ErrInvalidRegistrationToken},
			{"ok via auth_code alias", reqWith(first, func(m map[string]any) { delete(m, "registration_token"); m["auth_code"] = tokA }), 200, ""},
			{"token already used", reqWith(fresh(), func(m map[string]any) {}), 403, protocol.ErrRegistrationTokenUsed},
			{"signing key already active", reqWith(first, func(m map[string]any) { m["registration_token"] = h.freshRegToken(orgA) }), 409, protocol.ErrAlreadyActive},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				status, _, body := do(t, http.MethodPost, h.url+"/api/register", "", tt.body, nil)
				if tt.wantStatus == 200 {
					if status != 200 {
						t.Fatalf("status %d: %s", status, body)
					}
					return
				}
				expectError(t, status, body, tt.wantStatus, tt.wantText)
			})
		}
		t.Run("expired token", func(t *testing.T) {
			tok := h.freshRegToken(orgA)
			h.clock.Advance(state.DefaultRegistrationTokenTTL + time.Minute)
			defer h.clock.Advance(-(state.DefaultRegistrationTokenTTL + time.Minute))
			status, body := fresh().tryRegister(tok)
			expectError(t, status, body, 403, protocol.ErrInvalidRegistrationToken)
		})
	})
}

// reqOpts shape a signed agent request for the auth table.
type reqOpts struct {
	org, ws string
	ts      int64
	signer  *crypto.SigningKey
	version string // "" omits protocol_version
}

type endpointCase struct {
	name, method, path string
	hasVersion         bool
	build              func(c *agentClient, o reqOpts) []byte
}

func agentEndpoints(h *harness) []endpointCase {
	base := func(o reqOpts, sig []byte) map[string]any {
		m := map[string]any{"org_id": o.org, "workspace_id": o.ws, "timestamp": o.ts, "signature": protocol.EncodeSignature(sig)}
		if o.version != "" {
			m["protocol_version"] = o.version
		}
		return m
	}
	return []endpointCase{
		{"pull", http.MethodPost, "/api/inbox/pull", true, func(c *agentClient, o reqOpts) []byte {
			m := base(o, o.signer.Sign(protocol.PullSigningBytes(o.org, o.ts, 10, 0)))
			m["max_messages"], m["wait_seconds"] = 10, 0
			return mustJSON(m)
		}},
		{"ack", http.MethodPost, "/api/inbox/ack", true, func(c *agentClient, o reqOpts) []byte {
			m := base(o, o.signer.Sign(protocol.AckSigningBytes(o.org, o.ts, []string{"m-1"})))
			m["message_ids"] = []string{"m-1"}
			return mustJSON(m)
		}},
		{"send", http.MethodPost, "/api/send", false, func(c *agentClient, o reqOpts) []byte {
			ct, nonce, _ := c.box.Precompute(h.keys.Box.Public).Seal([]byte(`{"text":"x"}`))
			cts, ns := base64.StdEncoding.EncodeToString(ct), base64.StdEncoding.EncodeToString(nonce[:])
			rt := protocol.Routing{Channel: "C1"}
			m := base(o, o.signer.Sign(protocol.SendSigningBytes(o.org, protocol.ActionPostMessage, o.ts, cts, ns, rt)))
			delete(m, "protocol_version")
			m["action"], m["routing"], m["encrypted_body"], m["nonce"] = protocol.ActionPostMessage, rt, cts, ns
			return mustJSON(m)
		}},
		{"unregister", http.MethodDelete, "/api/register", false, func(c *agentClient, o reqOpts) []byte {
			m := base(o, o.signer.Sign(protocol.UnregisterSigningBytes(o.org, o.ts)))
			delete(m, "protocol_version")
			return mustJSON(m)
		}},
	}
}

// TestAgentAuthErrors checks every row of protocol §4.4 for each
// authenticated endpoint, including the order of the checks.
func TestAgentAuthErrors(t *testing.T) {
	h := newHarness(t)
	orgA, tokA := h.install(slackfake.Install{TeamID: "T0AUTHA1"})
	orgB, tokB := h.install(slackfake.Install{TeamID: "T0AUTHB1"})
	a := h.register(orgA, tokA)
	b := h.register(orgB, tokB)
	stranger, _ := crypto.GenerateSigningKey()
	h.clock.Freeze() // the window rows sit one second from its edges
	for _, ep := range agentEndpoints(h) {
		t.Run(ep.name, func(t *testing.T) {
			now := a.now()
			good := func() reqOpts {
				return reqOpts{org: orgA, ws: orgA, ts: now, signer: a.sig, version: protocol.Version}
			}
			with := func(f func(o *reqOpts)) []byte { o := good(); f(&o); return ep.build(a, o) }
			rows := []struct {
				name       string
				token      string
				body       []byte
				wantStatus int
				wantText   string
				skip       bool
			}{
				{"body too large", a.token, bytes.Repeat([]byte("a"), protocol.MaxBodySize+10), 413, protocol.ErrBodyTooLarge, false},
				{"bad json before bad token", "nope", []byte(`[1,2`), 400, protocol.ErrInvalidJSON, false},
				{"malformed id before missing token", "", with(func(o *reqOpts) { o.org, o.ws = "-bad", "-bad" }), 400, "invalid", false},
				{"org differs from workspace", a.token, with(func(o *reqOpts) { o.ws = orgB }), 400, "invalid", false},
				{"missing token", "", ep.build(a, good()), 401, protocol.ErrMissingToken, false},
				{"unknown token", "not-a-token", ep.build(a, good()), 401, protocol.ErrInvalidToken, false},
				{"token of another org before signature", b.token, with(func(o *reqOpts) { o.signer = stranger }), 403, protocol.ErrTokenOrgMismatch, false},
				{"protocol version", a.token, with(func(o *reqOpts) { o.version = "2020-01-1" }), 400, protocol.ErrUnsupportedVersion, !ep.hasVersion},
				{"timestamp too old before signature", a.token, with(func(o *reqOpts) { o.ts -= 301; o.signer = stranger }), 400, protocol.ErrTimestampWindow, false},
				{"timestamp in the future", a.token, with(func(o *reqOpts) { o.ts += 301 }), 400, protocol.ErrTimestampWindow, false},
				{"signature by another key", a.token, with(func(o *reqOpts) { o.signer = stranger }), 403, protocol.ErrInvalidSignature, false},
				{"signature over another org", a.token, with(func(o *reqOpts) { o.signer = b.sig }), 403, protocol.ErrInvalidSignature, false},
			}
			for _, r := range rows {
				if r.skip {
					continue
				}
				t.Run(r.name, func(t *testing.T) {
					status, _, body := do(t, ep.method, h.url+ep.path, r.token, r.body, nil)
					expectError(t, status, body, r.wantStatus, r.wantText)
				})
			}
			t.Run("accepted at the edge of the window", func(t *testing.T) {
				if ep.name == "unregister" {
					return // would remove the agent other rows use
				}
				status, _, body := do(t, ep.method, h.url+ep.path, a.token, with(func(o *reqOpts) { o.ts -= 299 }), nil)
				if status != 200 {
					t.Fatalf("status %d: %s", status, body)
				}
			})
		})
	}
	t.Run("send replay", func(t *testing.T) {
		req := a.sendBody(protocol.ActionPostMessage, protocol.Routing{Channel: "C1"}, map[string]any{"text": "hi"}, a.now())
		if status, _, body := a.sendRaw(req); status != 200 {
			t.Fatalf("first send: %d %s", status, body)
		}
		status, _, body := a.sendRaw(req)
		expectError(t, status, body, 409, protocol.ErrReplay)
	})
	t.Run("unregister replay", func(t *testing.T) {
		// Re-register the same keys after an unregister: the old signed
		// unregister request must not remove the new registration.
		c := h.register(orgA, h.freshRegToken(orgA))
		req := c.unregisterBody(c.now())
		if status, _, body := do(t, http.MethodDelete, h.url+"/api/register", c.token, req, nil); status != 200 {
			t.Fatalf("unregister: %d %s", status, body)
		}
		status, body := c.tryRegister(h.freshRegToken(orgA))
		if status != 200 {
			t.Fatalf("re-register: %d %s", status, body)
		}
		var rr protocol.RegisterResponse
		_ = json.Unmarshal(body, &rr)
		status, _, body = do(t, http.MethodDelete, h.url+"/api/register", rr.BrokerAccessToken, req, nil)
		expectError(t, status, body, 409, protocol.ErrReplay)
	})
	t.Run("expired access token", func(t *testing.T) {
		h.clock.Advance(state.DefaultAccessTokenTTL + time.Hour)
		defer h.clock.Advance(-(state.DefaultAccessTokenTTL + time.Hour))
		status, body := a.pullRaw(a.pullBody(1, 0, a.now()))
		expectError(t, status, body, 401, protocol.ErrInvalidToken)
	})
}

// TestPullIdenticalRequests: byte-identical pulls (and acks) in the same
// second are all accepted — no replay cache applies to them.
func TestPullIdenticalRequests(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine harnessOpt) {
		h := newHarness(t, engine)
		org, tok := h.install(slackfake.Install{TeamID: "T0PULL01"})
		a := h.register(org, tok)
		ts := a.now()
		pull := a.pullBody(10, 0, ts)
		ack := a.ackBody([]string{"m-1"}, ts)
		for i := range 3 {
			if status, body := a.pullRaw(pull); status != 200 {
				t.Fatalf("identical pull #%d: %d %s", i, status, body)
			}
			if status, _, body := do(t, http.MethodPost, h.url+"/api/inbox/ack", a.token, ack, nil); status != 200 {
				t.Fatalf("identical ack #%d: %d %s", i, status, body)
			}
		}
	})
}

// TestPullLimits checks the max_messages / wait_seconds validation.
func TestPullLimits(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine harnessOpt) {
		h := newHarness(t, engine)
		org, tok := h.install(slackfake.Install{TeamID: "T0LIM001"})
		a := h.register(org, tok)
		raw := func(maxN, wait any) []byte {
			m := map[string]any{"org_id": org, "workspace_id": org, "protocol_version": protocol.Version,
				"timestamp": a.now(), "signature": "x"}
			if maxN != nil {
				m["max_messages"] = maxN
			}
			if wait != nil {
				m["wait_seconds"] = wait
			}
			return mustJSON(m)
		}
		tests := []struct {
			name     string
			body     []byte
			wantText string
		}{
			{"max 0", raw(0, 0), "max_messages"},
			{"max 101", raw(101, 0), "max_messages"},
			{"max string", raw("10", 0), "max_messages"},
			{"max float", raw(1.5, 0), "max_messages"},
			{"wait 26", raw(10, 26), "wait_seconds"},
			{"wait -1", raw(10, -1), "wait_seconds"},
			{"wait bool", raw(10, true), "wait_seconds"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				status, body := a.pullRaw(tt.body)
				expectError(t, status, body, 400, tt.wantText)
			})
		}
		// Defaults apply when both are absent: the signature covers 10 and 0.
		ts := a.now()
		sig := a.sig.Sign(protocol.PullSigningBytes(org, ts, 10, 0))
		body := mustJSON(map[string]any{"org_id": org, "workspace_id": org, "timestamp": ts, "signature": protocol.EncodeSignature(sig)})
		if status, b := a.pullRaw(body); status != 200 {
			t.Fatalf("defaults: %d %s", status, b)
		}
	})
}

// TestIngressErrors covers the Slack endpoints' failure modes.
func TestIngressErrors(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine harnessOpt) {
		h := newHarness(t, engine)
		org, tok := h.install(slackfake.Install{TeamID: "T0ING001"})
		a := h.register(org, tok)
		ev, _ := eventBody(org, "x")
		post := func(body []byte, sign func(r *http.Request)) (int, []byte) {
			req, _ := http.NewRequest(http.MethodPost, h.url+"/slack/events", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			sign(req)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var buf bytes.Buffer
			_, _ = buf.ReadFrom(resp.Body)
			return resp.StatusCode, buf.Bytes()
		}
		tests := []struct {
			name       string
			body       []byte
			sign       func(r *http.Request)
			wantStatus int
		}{
			{"no signature", ev, func(r *http.Request) {}, 401},
			{"wrong secret", ev, func(r *http.Request) { slackfake.SignRequest(r, "other", time.Now(), ev) }, 401},
			{"signature of another body", ev, func(r *http.Request) { slackfake.SignRequest(r, testSigningSecret, time.Now(), []byte("{}")) }, 401},
			{"stale timestamp", ev, func(r *http.Request) { slackfake.SignRequest(r, testSigningSecret, time.Now().Add(-6*time.Minute), ev) }, 401},
			{"future timestamp", ev, func(r *http.Request) { slackfake.SignRequest(r, testSigningSecret, time.Now().Add(6*time.Minute), ev) }, 401},
			{"too large", bytes.Repeat([]byte(" "), protocol.MaxBodySize+1), func(r *http.Request) {}, 413},
			{"bad json", []byte("{"), func(r *http.Request) { slackfake.SignRequest(r, testSigningSecret, time.Now(), []byte("{")) }, 400},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				status, body := post(tt.body, tt.sign)
				if status != tt.wantStatus {
					t.Fatalf("status %d, want %d: %s", status, tt.wantStatus, body)
				}
				errorText(t, body)
			})
		}
		if msgs := a.pull(10, 0); len(msgs) != 0 {
			t.Fatalf("rejected requests queued %d messages", len(msgs))
		}

		t.Run("url_verification", func(t *testing.T) {
			status, body := h.slackPost(h.url, "/slack/events", []byte(`{"type":"url_verification","challenge":"ch4ll3nge","token":"t"}`), "application/json", time.Now())
			var r map[string]string
			if status != 200 || json.Unmarshal(body, &r) != nil || r["challenge"] != "ch4ll3nge" {
				t.Fatalf("%d %s", status, body)
			}
		})
		t.Run("duplicate event_id", func(t *testing.T) {
			ev, _ := eventBody(org, "dup")
			h.postEvent(h.url, ev)
			h.postEvent(h.url, ev)
			if msgs := a.pull(10, 0); len(msgs) != 1 {
				t.Fatalf("%d messages, want 1", len(msgs))
			}
			if got := counterValue(t, h.srv.m.eventsDropped.WithLabelValues("duplicate")); got != 1 {
				t.Fatalf("duplicate drops = %v", got)
			}
		})
		t.Run("unknown team", func(t *testing.T) {
			ev, _ := eventBody("T0UNKNOWN", "x")
			h.postEvent(h.url, ev)
			if got := counterValue(t, h.srv.m.eventsDropped.WithLabelValues("no_installation")); got != 1 {
				t.Fatalf("no_installation drops = %v", got)
			}
		})
		t.Run("no agents", func(t *testing.T) {
			orgN, _ := h.install(slackfake.Install{TeamID: "T0NOAGENT"})
			ev, _ := eventBody(orgN, "x")
			h.postEvent(h.url, ev)
			if got := counterValue(t, h.srv.m.eventsDropped.WithLabelValues("no_agents")); got != 1 {
				t.Fatalf("no_agents drops = %v", got)
			}
		})
		t.Run("unsupported type", func(t *testing.T) {
			status, body := h.slackPost(h.url, "/slack/events", []byte(`{"type":"something_else"}`), "application/json", time.Now())
			if status != 400 {
				t.Fatalf("%d %s", status, body)
			}
		})
	})
}

// TestIngressStoreDown: with the inbox store unavailable the broker answers
// 503 and releases the event id, so Slack's retry is stored once the store
// is back.
func TestIngressStoreDown(t *testing.T) {
	h := newHarness(t)
	org, tok := h.install(slackfake.Install{TeamID: "T0DOWN01"})
	a := h.register(org, tok)
	ev, _ := eventBody(org, "retry me")
	if err := h.q.Close(); err != nil {
		t.Fatal(err)
	}
	status, body := h.slackPost(h.url, "/slack/events", ev, "application/json", time.Now())
	expectError(t, status, body, 503, "unavailable")
	// Slack retries against a healthy replica.
	_, _, _, _, urlB := h.newReplica()
	h.postEvent(urlB, ev)
	a.base = urlB
	if msgs := a.pull(10, 0); len(msgs) != 1 {
		t.Fatalf("%d messages after retry, want 1", len(msgs))
	}
}

// TestInboxFull: one agent's full inbox drops its copy but the others still
// get theirs and Slack gets 200.
func TestInboxFull(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine harnessOpt) {
		h := newHarness(t, engine, withQueue(queueOptions(2)))
		org, tok := h.install(slackfake.Install{TeamID: "T0FULL01"})
		slow := h.register(org, tok)
		fast := h.register(org, h.freshRegToken(org))
		for i := range 3 {
			ev, _ := eventBody(org, "e"+strconv.Itoa(i))
			h.postEvent(h.url, ev)
			for _, m := range fast.pull(10, 0) {
				fast.ack(m.ID)
			}
		}
		if got := counterValue(t, h.srv.m.eventsDropped.WithLabelValues("inbox_full")); got != 1 {
			t.Fatalf("inbox_full drops = %v, want 1", got)
		}
		if n := len(slow.pull(10, 0)); n != 2 {
			t.Fatalf("slow agent holds %d, want 2", n)
		}
		if got := counterValue(t, h.srv.m.eventsQueued); got != 5 {
			t.Fatalf("queued copies = %v, want 5", got)
		}
	})
}

// TestSendErrors covers the send failures: validation, Slack errors, Slack
// 429, revoked tokens and the per-agent token bucket.
func TestSendErrors(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine harnessOpt) {
		h := newHarness(t, engine)
		org, tok := h.install(slackfake.Install{TeamID: "T0SEND01"})
		a := h.register(org, tok)
		other, _ := crypto.GenerateBoxKeyPair()
		wrongKeyBody := func() []byte {
			ct, nonce, _ := a.box.Precompute(other.Public).Seal([]byte(`{"text":"x"}`))
			return a.signSend(protocol.ActionPostMessage, protocol.Routing{Channel: "C1"},
				base64.StdEncoding.EncodeToString(ct), base64.StdEncoding.EncodeToString(nonce[:]), a.now())
		}
		tests := []struct {
			name       string
			script     *slackfake.Reply
			body       func() []byte
			wantStatus int
			wantText   string
			retryAfter string
		}{
			{"unknown action", nil, func() []byte {
				return a.sendBody("chat.delete", protocol.Routing{Channel: "C1"}, map[string]any{"text": "x"}, a.now())
			}, 400, protocol.ErrUnknownAction, ""},
			{"bad nonce", nil, func() []byte {
				return a.signSend(protocol.ActionPostMessage, protocol.Routing{Channel: "C1"}, base64.StdEncoding.EncodeToString(make([]byte, 40)), "AAAA", a.now())
			}, 400, "invalid nonce", ""},
			{"body sealed to another key", nil, wrongKeyBody, 400, "invalid encrypted_body", ""},
			{"missing channel", nil, func() []byte {
				return a.sendBody(protocol.ActionPostMessage, protocol.Routing{}, map[string]any{"text": "x"}, a.now())
			}, 400, "channel", ""},
			{"reaction without emoji", nil, func() []byte {
				return a.sendBody(protocol.ActionReact, protocol.Routing{Channel: "C1", Timestamp: "1.2"}, map[string]any{}, a.now())
			}, 400, "emoji", ""},
			{"slack error passes through", &slackfake.Reply{Error: "channel_not_found"}, func() []byte {
				return a.sendBody(protocol.ActionPostMessage, protocol.Routing{Channel: "C404"}, map[string]any{"text": "x"}, a.now())
			}, 502, "channel_not_found", ""},
			{"slack 429", &slackfake.Reply{Status: 429, RetryAfter: 7}, func() []byte {
				return a.sendBody(protocol.ActionPostMessage, protocol.Routing{Channel: "C1"}, map[string]any{"text": "x"}, a.now())
			}, 429, protocol.ErrRateLimited, "7"},
			{"slack 5xx", &slackfake.Reply{Status: 503}, func() []byte {
				return a.sendBody(protocol.ActionPostMessage, protocol.Routing{Channel: "C1"}, map[string]any{"text": "x"}, a.now())
			}, 502, "slack_http_503", ""},
			{"token revoked marks the installation", &slackfake.Reply{Error: "token_revoked"}, func() []byte {
				return a.sendBody(protocol.ActionPostMessage, protocol.Routing{Channel: "C1"}, map[string]any{"text": "x"}, a.now())
			}, 502, "token_revoked", ""},
			{"revoked installation answers without calling slack", nil, func() []byte {
				return a.sendBody(protocol.ActionPostMessage, protocol.Routing{Channel: "C1"}, map[string]any{"text": "x"}, a.now())
			}, 502, "token_revoked", ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if tt.script != nil {
					h.fake.Script("chat.postMessage", *tt.script)
				}
				calls := len(h.fake.CallsTo("chat.postMessage"))
				status, hdr, body := a.sendRaw(tt.body())
				expectError(t, status, body, tt.wantStatus, tt.wantText)
				if tt.retryAfter != "" && hdr.Get("Retry-After") != tt.retryAfter {
					t.Fatalf("Retry-After %q, want %q", hdr.Get("Retry-After"), tt.retryAfter)
				}
				wantCalls := calls
				if tt.script != nil {
					wantCalls++
				}
				if got := len(h.fake.CallsTo("chat.postMessage")); got != wantCalls {
					t.Fatalf("slack calls %d, want %d", got, wantCalls)
				}
			})
		}
		inst, err := h.st.GetInstallation(context.Background(), org)
		if err != nil || !inst.Revoked || inst.BotToken != "" {
			t.Fatalf("installation after token_revoked: %+v %v", inst, err)
		}
		metricRows := []struct {
			name string
			m    prometheus.Metric
			want float64
		}{
			{"sends slack_error", h.srv.m.sends.WithLabelValues(protocol.ActionPostMessage, "slack_error"), 4},
			{"sends slack_rate_limited", h.srv.m.sends.WithLabelValues(protocol.ActionPostMessage, "slack_rate_limited"), 1},
			{"sends rejected (unknown action)", h.srv.m.sends.WithLabelValues("unknown", "rejected"), 1},
			{"slack errors channel_not_found", h.srv.m.slackErrors.WithLabelValues(protocol.ActionPostMessage, "channel_not_found"), 1},
			{"slack errors ratelimited", h.srv.m.slackErrors.WithLabelValues(protocol.ActionPostMessage, "ratelimited"), 1},
		}
		for _, r := range metricRows {
			if got := counterValue(t, r.m); got != r.want {
				t.Errorf("%s = %v, want %v", r.name, got, r.want)
			}
		}
	})
}

// TestSendRateLimit: the per-agent bucket answers 429 with Retry-After
// before Slack is called.
func TestSendRateLimit(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine harnessOpt) {
		h := newHarness(t, engine, withConfig(func(c *Config) { c.SendRate = RateLimit{Rate: 0.01, Burst: 2} }))
		org, tok := h.install(slackfake.Install{TeamID: "T0RATE01"})
		a := h.register(org, tok)
		b := h.register(org, h.freshRegToken(org))
		for i := range 2 {
			a.send(protocol.ActionPostMessage, protocol.Routing{Channel: "C1"}, map[string]any{"text": "x" + strconv.Itoa(i)})
		}
		status, hdr, body := a.sendRaw(a.sendBody(protocol.ActionPostMessage, protocol.Routing{Channel: "C1"}, map[string]any{"text": "x"}, a.now()))
		expectError(t, status, body, 429, protocol.ErrRateLimited)
		if ra, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || ra < 1 || ra > 100 {
			t.Fatalf("Retry-After %q", hdr.Get("Retry-After"))
		}
		if n := len(h.fake.CallsTo("chat.postMessage")); n != 2 {
			t.Fatalf("slack calls %d, want 2", n)
		}
		// Buckets are per agent.
		b.send(protocol.ActionPostMessage, protocol.Routing{Channel: "C1"}, map[string]any{"text": "y"})
	})
}

// TestCrossOrgCiphertext: a sealed inbox message copied to another org's
// agent does not open, and a send body copied into another org's request
// does not decrypt at the broker.
func TestCrossOrgCiphertext(t *testing.T) {
	h := newHarness(t)
	orgA, tokA := h.install(slackfake.Install{TeamID: "T0XORGA1"})
	orgB, tokB := h.install(slackfake.Install{TeamID: "T0XORGB1"})
	a := h.register(orgA, tokA)
	b := h.register(orgB, tokB)
	ev, _ := eventBody(orgA, "for A only")
	h.postEvent(h.url, ev)
	msgs := a.pull(1, 0)
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	stolen := msgs[0].Raw
	if _, _, err := protocol.OpenEnvelope(stolen, h.keys.Signing.Public(), b.box); err == nil {
		t.Fatal("org B's agent opened org A's message")
	}
	relabeled := stolen
	relabeled.OrgID, relabeled.WorkspaceID = orgB, orgB
	if _, _, err := protocol.OpenEnvelope(relabeled, h.keys.Signing.Public(), b.box); err == nil {
		t.Fatal("relabeled message verified")
	}
	// A's send ciphertext, re-signed by B for org B.
	var sr protocol.SendRequest
	_ = json.Unmarshal(a.sendBody(protocol.ActionPostMessage, protocol.Routing{Channel: "C1"}, map[string]any{"text": "A's words"}, a.now()), &sr)
	replayed := b.signSend(sr.Action, sr.Routing, sr.EncryptedBody, sr.Nonce, b.now())
	status, _, body := b.sendRaw(replayed)
	expectError(t, status, body, 400, "does not decrypt")
}

// TestSystemEnvelopes: app_uninstalled and tokens_revoked revoke the
// installation and reach agents as system envelopes; app_rate_limited too.
func TestSystemEnvelopes(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine harnessOpt) {
		tests := []struct {
			name    string
			body    func(team string) []byte
			typ     string
			revokes bool
		}{
			{"app_uninstalled", func(team string) []byte {
				return mustJSON(map[string]any{"type": "event_callback", "team_id": team, "event_id": "EvU" + team,
					"event": map[string]any{"type": "app_uninstalled"}})
			}, protocol.TypeAppUninstalled, true},
			{"tokens_revoked bot", func(team string) []byte {
				return mustJSON(map[string]any{"type": "event_callback", "team_id": team, "event_id": "EvR" + team,
					"event": map[string]any{"type": "tokens_revoked", "tokens": map[string]any{"bot": []string{"U0FAKEBOT"}}}})
			}, protocol.TypeTokensRevoked, true},
			{"tokens_revoked user only", func(team string) []byte {
				return mustJSON(map[string]any{"type": "event_callback", "team_id": team, "event_id": "EvO" + team,
					"event": map[string]any{"type": "tokens_revoked", "tokens": map[string]any{"oauth": []string{"U1"}}}})
			}, protocol.TypeEventCallback, false},
			{"app_rate_limited", func(team string) []byte {
				return mustJSON(map[string]any{"type": "app_rate_limited", "team_id": team, "minute_rate_limited": 1518467820, "api_app_id": "A1"})
			}, protocol.TypeAppRateLimited, false},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				h := newHarness(t, engine)
				team := "T0SYS00" + strconv.Itoa(i)
				org, tok := h.install(slackfake.Install{TeamID: team})
				a := h.register(org, tok)
				h.postEvent(h.url, tt.body(team))
				msgs := a.pull(10, 0)
				if len(msgs) != 1 || msgs[0].Env.Type != tt.typ {
					t.Fatalf("messages %+v", msgs)
				}
				wantSource := protocol.SourceSystem
				if tt.typ == protocol.TypeEventCallback {
					wantSource = protocol.SourceSlack
				}
				if msgs[0].Env.Source != wantSource {
					t.Fatalf("source %q, want %q", msgs[0].Env.Source, wantSource)
				}
				inst, _ := h.st.GetInstallation(context.Background(), org)
				if inst.Revoked != tt.revokes || (tt.revokes && inst.BotToken != "") {
					t.Fatalf("installation revoked=%v token=%q", inst.Revoked, inst.BotToken)
				}
				if tt.revokes {
					status, _, body := a.sendRaw(a.sendBody(protocol.ActionPostMessage, protocol.Routing{Channel: "C1"}, map[string]any{"text": "x"}, a.now()))
					expectError(t, status, body, 502, "token_revoked")
					// Re-installing restores sending and keeps the agent.
					h.freshRegToken(org)
					a.send(protocol.ActionPostMessage, protocol.Routing{Channel: "C1"}, map[string]any{"text": "back"})
				}
			})
		}
	})
}

// TestStateStoreDown: with the state store unreachable every path answers
// 503 (never 200 for an event that was not stored) and readyz fails.
func TestStateStoreDown(t *testing.T) {
	h := newHarness(t)
	org, tok := h.install(slackfake.Install{TeamID: "T0SDOWN1"})
	a := h.register(org, tok)
	// A second replica whose state client is closed.
	rdb := redis.NewClient(testredis.Options(t))
	st := redisstore.NewState(rdb, h.prefix+"st:")
	srv, err := New(h.srv.cfg, st, h.q, h.keys, slog.New(slog.NewJSONHandler(h.logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = rdb.Close()
	handler := srv.Handler()
	ev, _ := eventBody(org, "not stored")
	req := httptest.NewRequest(http.MethodPost, "/slack/events", bytes.NewReader(ev))
	slackfake.SignRequest(req, testSigningSecret, time.Now(), ev)
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	expectError(t, rec.Code, rec.Body.Bytes(), 503, "unavailable")

	for _, r := range []*http.Request{
		httptest.NewRequest(http.MethodPost, "/api/inbox/pull", bytes.NewReader(a.pullBody(1, 0, a.now()))),
		httptest.NewRequest(http.MethodPost, "/api/register", bytes.NewReader(h.newAgentKeys(org).registerBody(tok))),
		httptest.NewRequest(http.MethodGet, "/readyz", nil),
	} {
		r.Header.Set("Authorization", "Bearer "+a.token)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, r)
		expectError(t, rec.Code, rec.Body.Bytes(), 503, "unavailable")
	}
	// Nothing was queued by the failed webhook, and the healthy replica
	// still stores Slack's retry.
	if msgs := a.pull(10, 0); len(msgs) != 0 {
		t.Fatalf("%d messages queued by a failed webhook", len(msgs))
	}
	h.postEvent(h.url, ev)
	if msgs := a.pull(10, 0); len(msgs) != 1 {
		t.Fatalf("retry stored %d messages, want 1", len(msgs))
	}
}

// TestConcurrentReplay: the same send raced on two replicas reaches Slack
// exactly once.
func TestConcurrentReplay(t *testing.T) {
	h := newHarness(t)
	org, tok := h.install(slackfake.Install{TeamID: "T0RACE01"})
	a := h.register(org, tok)
	_, _, _, _, urlB := h.newReplica()
	req := a.sendBody(protocol.ActionPostMessage, protocol.Routing{Channel: "C1"}, map[string]any{"text": "once"}, a.now())
	const n = 8
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		base := h.url
		if i%2 == 1 {
			base = urlB
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i], _, _ = do(t, http.MethodPost, base+"/api/send", a.token, req, nil)
		}()
	}
	wg.Wait()
	ok, replays := 0, 0
	for _, s := range statuses {
		switch s {
		case 200:
			ok++
		case 409:
			replays++
		}
	}
	if ok != 1 || replays != n-1 {
		t.Fatalf("statuses %v: want one 200 and %d 409", statuses, n-1)
	}
	if got := len(h.fake.CallsTo("chat.postMessage")); got != 1 {
		t.Fatalf("slack saw %d posts", got)
	}
}
