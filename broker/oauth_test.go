package broker

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/slackfake"
	"github.com/sealrelay/sealrelay/protocol"
)

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func getNoRedirect(t *testing.T, u string) (*http.Response, string) {
	t.Helper()
	resp, err := noRedirect.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestOAuthInstallSteps walks the redirects one by one and checks the
// authorize parameters, state single use, and the page's escaping.
func TestOAuthInstallSteps(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine harnessOpt) {
		h := newHarness(t, engine, withConfig(func(c *Config) { c.BotScopes = []string{"chat:write", "app_mentions:read"} }))
		h.fake.QueueInstall(slackfake.Install{TeamID: "T0STEP01", TeamName: `<script>alert("x")</script>`})
		resp, _ := getNoRedirect(t, h.url+"/slack/install")
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("install: %d", resp.StatusCode)
		}
		auth, err := url.Parse(resp.Header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		q := auth.Query()
		if q.Get("client_id") != testClientID || q.Get("scope") != "chat:write,app_mentions:read" ||
			q.Get("redirect_uri") != h.url+"/slack/oauth/callback" || len(q.Get("state")) < 32 {
			t.Fatalf("authorize query %v", q)
		}
		resp, _ = getNoRedirect(t, auth.String())
		cb := resp.Header.Get("Location")
		if !strings.HasPrefix(cb, h.url+"/slack/oauth/callback?") {
			t.Fatalf("consent redirect %q", cb)
		}
		resp, page := getNoRedirect(t, cb)
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("callback: %d %s", resp.StatusCode, page)
		}
		if strings.Contains(page, "<script>") || !strings.Contains(page, "&lt;script&gt;") {
			t.Fatal("team name not escaped")
		}
		if !strings.Contains(page, "bridge register --broker-url "+h.url+" --org-id T0STEP01 --registration-token ") {
			t.Fatalf("page lacks the register command: %s", page)
		}
		if resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatal("callback page is cacheable")
		}
		// The same callback again: state was single use.
		resp, _ = getNoRedirect(t, cb)
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("replayed callback: %d", resp.StatusCode)
		}
	})
}

func TestOAuthErrors(t *testing.T) {
	tests := []struct {
		name       string
		cfg        func(c *Config)
		inst       slackfake.Install
		callback   string // direct callback query, instead of the flow
		wantStatus int
		wantText   string
	}{
		{"unknown state", nil, slackfake.Install{}, "?state=bogus&code=abc", 400, "expired state"},
		{"missing code", nil, slackfake.Install{}, "?state=bogus", 400, "lacks a code"},
		{"consent denied", nil, slackfake.Install{DenyConsent: true}, "", 400, "access_denied"},
		{"wrong client secret", func(c *Config) { c.SlackClientSecret = "wrong" }, slackfake.Install{}, "", 502, "bad_client_secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []harnessOpt
			if tt.cfg != nil {
				opts = append(opts, withConfig(tt.cfg))
			}
			h := newHarness(t, opts...)
			var status int
			var page string
			if tt.callback != "" {
				resp, p := getNoRedirect(t, h.url+"/slack/oauth/callback"+tt.callback)
				status, page = resp.StatusCode, p
			} else {
				h.fake.QueueInstall(tt.inst)
				status, page = h.installFlow(h.url)
			}
			if status != tt.wantStatus || !strings.Contains(page, tt.wantText) {
				t.Fatalf("status %d, want %d; page %s", status, tt.wantStatus, page)
			}
			if strings.Contains(page, "--registration-token") {
				t.Fatal("error page shows a token")
			}
		})
	}
}

// TestEnterpriseInstall: an org-wide install routes by enterprise id.
func TestEnterpriseInstall(t *testing.T) {
	h := newHarness(t)
	org, tok := h.install(slackfake.Install{EnterpriseID: "E0ENT001", EnterpriseName: "Big Co", IsEnterpriseInstall: true, TeamID: "T0WS0001"})
	if org != "E0ENT001" {
		t.Fatalf("org %q, want the enterprise id", org)
	}
	a := h.register(org, tok)
	body := mustJSON(map[string]any{"type": "event_callback", "team_id": "T0WS0002", "enterprise_id": "E0ENT001",
		"event_id": "EvENT1", "event": map[string]any{"type": "message", "text": "org-wide"},
		"authorizations": []map[string]any{{"team_id": nil, "enterprise_id": "E0ENT001", "is_enterprise_install": true}}})
	h.postEvent(h.url, body)
	msgs := a.pull(10, 0)
	if len(msgs) != 1 || msgs[0].Raw.OrgID != "E0ENT001" {
		t.Fatalf("messages %+v", msgs)
	}
	// Slash command from a workspace of the enterprise.
	form := url.Values{"command": {"/relay"}, "text": {"hi"}, "team_id": {"T0WS0003"}, "enterprise_id": {"E0ENT001"}, "is_enterprise_install": {"true"}}
	status, b := h.slackPost(h.url, "/slack/commands", []byte(form.Encode()), "application/x-www-form-urlencoded", time.Now())
	if status != 200 {
		t.Fatalf("command: %d %s", status, b)
	}
	if msgs := a.pull(10, 0); len(msgs) != 1 || msgs[0].Env.Type != protocol.TypeSlashCommand {
		t.Fatalf("command messages %+v", msgs)
	}
}

// TestInteractivityAndCommands checks the envelope types and payloads.
func TestInteractivityAndCommands(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine harnessOpt) {
		h := newHarness(t, engine)
		org, tok := h.install(slackfake.Install{TeamID: "T0INT001"})
		a := h.register(org, tok)
		payload := `{"type":"block_actions","team":{"id":"T0INT001"},"user":{"id":"U1","team_id":"T0INT001"},"actions":[{"action_id":"go"}]}`
		tests := []struct {
			name, path, body, wantType, wantInPayload string
			wantStatus                                int
		}{
			{"block_actions", "/slack/interactivity", url.Values{"payload": {payload}}.Encode(), "block_actions", `"action_id":"go"`, 200},
			{"view_submission via user team", "/slack/interactivity", url.Values{"payload": {`{"type":"view_submission","user":{"team_id":"T0INT001"},"view":{"id":"V1"}}`}}.Encode(), "view_submission", `"V1"`, 200},
			{"slash command", "/slack/commands", url.Values{"command": {"/relay"}, "text": {"do it"}, "team_id": {"T0INT001"}}.Encode(), protocol.TypeSlashCommand, `"text":"do it"`, 200},
			{"interactivity without payload", "/slack/interactivity", "x=1", "", "", 400},
			{"interactivity payload not JSON", "/slack/interactivity", url.Values{"payload": {"{"}}.Encode(), "", "", 400},
			{"command without command", "/slack/commands", "team_id=T0INT001", "", "", 400},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				status, b := h.slackPost(h.url, tt.path, []byte(tt.body), "application/x-www-form-urlencoded", time.Now())
				if status != tt.wantStatus {
					t.Fatalf("status %d: %s", status, b)
				}
				msgs := a.pull(10, 0)
				if tt.wantStatus != 200 {
					if len(msgs) != 0 {
						t.Fatal("rejected request was queued")
					}
					return
				}
				if len(b) != 0 {
					t.Fatalf("acknowledged with body %q; Slack would read it as a response", b)
				}
				if len(msgs) != 1 || msgs[0].Env.Type != tt.wantType || !strings.Contains(string(msgs[0].Env.Payload), tt.wantInPayload) {
					t.Fatalf("messages %+v", msgs)
				}
				a.ack(msgs[0].ID)
			})
		}
		t.Run("unsigned", func(t *testing.T) {
			status, _, _ := do(t, http.MethodPost, h.url+"/slack/commands", "", []byte("command=/x&team_id=T0INT001"), nil)
			if status != 401 {
				t.Fatalf("status %d", status)
			}
		})
	})
}

// TestTokenRotation: a rotating bot token close to expiry is refreshed
// before a send, stored encrypted, and used.
func TestTokenRotation(t *testing.T) {
	h := newHarness(t)
	org, tok := h.install(slackfake.Install{TeamID: "T0ROT001", Rotating: true, ExpiresIn: 60})
	a := h.register(org, tok)
	ctx := context.Background()
	before, _ := h.st.GetInstallation(ctx, org)
	if before.BotRefreshToken == "" || before.BotTokenExpiresAt.IsZero() {
		t.Fatalf("rotation fields not stored: %+v", before)
	}
	a.send(protocol.ActionPostMessage, protocol.Routing{Channel: "C1"}, map[string]any{"text": "after refresh"})
	var refreshed bool
	for _, c := range h.fake.CallsTo("oauth.v2.access") {
		if c.Params.Get("grant_type") == "refresh_token" && c.Error == "" {
			refreshed = true
		}
	}
	if !refreshed {
		t.Fatal("no refresh call")
	}
	after, _ := h.st.GetInstallation(ctx, org)
	if after.BotToken == before.BotToken || after.BotRefreshToken == before.BotRefreshToken || !after.BotTokenExpiresAt.After(before.BotTokenExpiresAt) {
		t.Fatal("installation not updated by the refresh")
	}
	newTok, err := h.keys.Keyring.Decrypt(after.BotToken, org)
	if err != nil {
		t.Fatal(err)
	}
	defer crypto.Wipe(newTok)
	posts := h.fake.CallsTo("chat.postMessage")
	if len(posts) != 1 || posts[0].Token != string(newTok) || posts[0].Error != "" {
		t.Fatalf("post used %q", posts[0].Token)
	}
	// Neither token nor any refresh token is stored or logged in plaintext.
	canaries := []string{string(newTok), "after refresh", tok, a.token}
	for _, c := range h.fake.CallsTo("oauth.v2.access") {
		if rt := c.Params.Get("refresh_token"); rt != "" {
			canaries = append(canaries, rt)
		}
	}
	if len(canaries) < 5 {
		t.Fatal("no refresh token seen")
	}
	h.assertNoSecrets(canaries...)
}

// TestReinstallKeepsAgents: re-installing updates the installation, issues
// a new registration token and keeps registered agents.
func TestReinstallKeepsAgents(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine harnessOpt) {
		h := newHarness(t, engine)
		org, tok := h.install(slackfake.Install{TeamID: "T0REIN01"})
		a := h.register(org, tok)
		first, _ := h.st.GetInstallation(context.Background(), org)
		tok2 := h.freshRegToken(org)
		if tok2 == tok {
			t.Fatal("same registration token after reinstall")
		}
		second, _ := h.st.GetInstallation(context.Background(), org)
		if !second.InstalledAt.Equal(first.InstalledAt) || second.BotToken == first.BotToken {
			t.Fatalf("reinstall: installed_at %v→%v", first.InstalledAt, second.InstalledAt)
		}
		ev, _ := eventBody(org, "still here")
		h.postEvent(h.url, ev)
		if msgs := a.pull(10, 0); len(msgs) != 1 {
			t.Fatalf("agent lost after reinstall: %d messages", len(msgs))
		}
	})
}

// TestShutdownReleasesLongPoll: Shutdown answers waiting pulls at once.
func TestShutdownReleasesLongPoll(t *testing.T) {
	h := newHarness(t)
	org, tok := h.install(slackfake.Install{TeamID: "T0SHUT01"})
	a := h.register(org, tok)
	waiting := make(chan struct{}, 1)
	h.srv.onLongPoll = func(string) { waiting <- struct{}{} }
	done := make(chan int, 1)
	go func() {
		status, _ := a.pullRaw(a.pullBody(10, 25, a.now()))
		done <- status
	}()
	<-waiting
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if status := <-done; status != 200 {
		t.Fatalf("released pull answered %d", status)
	}
	status, _, _ := do(t, http.MethodGet, h.url+"/readyz", "", nil, nil)
	if status != http.StatusServiceUnavailable {
		t.Fatalf("readyz after shutdown: %d", status)
	}
}

// TestLongPollCap: concurrent waiting pulls per agent are capped.
func TestLongPollCap(t *testing.T) {
	h := newHarness(t, withConfig(func(c *Config) { c.MaxLongPollsPerAgent = 1 }))
	org, tok := h.install(slackfake.Install{TeamID: "T0CAP001"})
	a := h.register(org, tok)
	waiting := make(chan struct{}, 1)
	h.srv.onLongPoll = func(string) { waiting <- struct{}{} }
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if status, b := a.pullRaw(a.pullBody(10, 25, a.now())); status != 200 {
			t.Errorf("first long poll: %d %s", status, b)
		}
	}()
	<-waiting
	status, hdr, body := do(t, http.MethodPost, h.url+"/api/inbox/pull", a.token, a.pullBody(10, 25, a.now()), nil)
	expectError(t, status, body, 429, protocol.ErrRateLimited)
	if hdr.Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
	// A non-waiting pull is not capped.
	if status, b := a.pullRaw(a.pullBody(10, 0, a.now())); status != 200 {
		t.Fatalf("short pull: %d %s", status, b)
	}
	// An event ends the first poll.
	ev, _ := eventBody(org, "wake")
	h.postEvent(h.url, ev)
	wg.Wait()
}

func TestHealthAndRouting(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		method, path string
		wantStatus   int
	}{
		{"GET", "/healthz", 200},
		{"GET", "/readyz", 200},
		{"GET", "/api/broker-pubkey", 200},
		{"GET", "/nope", 404},
		{"GET", "/api/send", 405},
		{"PUT", "/api/register", 405},
	}
	for _, tt := range tests {
		t.Run(tt.method+tt.path, func(t *testing.T) {
			status, hdr, body := do(t, tt.method, h.url+tt.path, "", nil, nil)
			if status != tt.wantStatus {
				t.Fatalf("status %d: %s", status, body)
			}
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatalf("not JSON: %s", body)
			}
			if (status == 200) != (m["ok"] == true) || hdr.Get("X-Request-Id") == "" {
				t.Fatalf("body %s", body)
			}
		})
	}
	var pk protocol.BrokerPubkeyResponse
	_, _, body := do(t, "GET", h.url+"/api/broker-pubkey", "", nil, nil)
	if err := json.Unmarshal(body, &pk); err != nil || pk.BrokerPubkey != h.keys.Box.Public.String() || pk.BrokerSigningPubkey != h.keys.Signing.Public().String() {
		t.Fatalf("pubkey %s", body)
	}
	rec := httptest.NewRecorder()
	h.srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, name := range []string{"sealrelay_broker_request_duration_seconds", "sealrelay_broker_long_polls_active"} {
		if !strings.Contains(rec.Body.String(), name) {
			t.Fatalf("metrics lack %s", name)
		}
	}
	// readyz fails when the inbox store is gone.
	_ = h.q.Close()
	if status, _, _ := do(t, "GET", h.url+"/readyz", "", nil, nil); status != 503 {
		t.Fatalf("readyz with closed queue: %d", status)
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{PublicURL: "https://b.example", SlackClientID: "c", SlackClientSecret: "s", SlackSigningSecret: "g"}
	tests := []struct {
		name string
		mut  func(c *Config)
		want string
	}{
		{"ok", func(*Config) {}, ""},
		{"no public url", func(c *Config) { c.PublicURL = "" }, "PublicURL"},
		{"relative public url", func(c *Config) { c.PublicURL = "broker.example" }, "PublicURL"},
		{"no client id", func(c *Config) { c.SlackClientID = "" }, "SlackClientID"},
		{"no client secret", func(c *Config) { c.SlackClientSecret = "" }, "SlackClientSecret"},
		{"no signing secret", func(c *Config) { c.SlackSigningSecret = "" }, "SlackSigningSecret"},
		{"bad api url", func(c *Config) { c.SlackAPIURL = "ftp://x" }, "SlackAPIURL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mut(&c)
			err := c.Validate()
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Validate() = %v, want mention of %q", err, tt.want)
			}
		})
	}
}

func TestHTTPServerTimeouts(t *testing.T) {
	h := newHarness(t)
	hs := h.srv.HTTPServer(":0")
	if hs.ReadHeaderTimeout <= 0 || hs.ReadTimeout <= 0 || hs.IdleTimeout <= 0 || hs.MaxHeaderBytes <= 0 {
		t.Fatalf("unset timeouts: %+v", hs)
	}
	if hs.WriteTimeout <= LongPollMax {
		t.Fatalf("WriteTimeout %v would cut 25 s long polls", hs.WriteTimeout)
	}
	if hs.Handler == nil {
		t.Fatal("no handler")
	}
}
