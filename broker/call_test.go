package broker

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/slack-go/slack"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/slackfake"
	"github.com/sealrelay/sealrelay/protocol"
)

// callSetup installs a workspace with a known bot token and registers one
// agent.
func callSetup(t *testing.T, team string, opts ...harnessOpt) (*harness, *agentClient, string) {
	t.Helper()
	h := newHarness(t, opts...)
	bot := "xoxb-call-" + strings.ToLower(team)
	org, tok := h.install(slackfake.Install{TeamID: team, TeamName: "Call Team", BotToken: bot})
	return h, h.register(org, tok), bot
}

// TestCallRoundTrip relays form and JSON calls, drops the agent's token
// argument, returns Slack's exact bytes sealed under fresh nonces.
func TestCallRoundTrip(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine harnessOpt) {
		h, a, bot := callSetup(t, "T0CALL01", engine)
		direct := slack.New(bot, slack.OptionAPIURL(h.cfg.SlackAPIURL))
		parent, err := func() (string, error) {
			_, ts, err := direct.PostMessage("C1", slack.MsgOptionText("parent", false))
			return ts, err
		}()
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name, method, encoding string
			args                   any
			check                  func(t *testing.T, out map[string]any, c slackfake.Call)
		}{
			{"form post with token arg", "chat.postMessage", protocol.EncodingForm,
				map[string]string{"channel": "C1", "text": "hello form", "thread_ts": parent, "token": "xoxb-agent-forged"},
				func(t *testing.T, out map[string]any, c slackfake.Call) {
					if out["ok"] != true || out["channel"] != "C1" || c.ContentType != "application/x-www-form-urlencoded" || c.Params.Get("thread_ts") != parent {
						t.Fatalf("answer %v, call %+v", out, c)
					}
				}},
			{"json post with blocks and token arg", "chat.postMessage", protocol.EncodingJSON,
				map[string]any{"channel": "C1", "text": "hello json", "token": "xoxb-agent-forged",
					"blocks": []any{map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": "*hi*"}}}},
				func(t *testing.T, out map[string]any, c slackfake.Call) {
					if out["ok"] != true || c.ContentType != "application/json" || !strings.Contains(c.Params.Get("blocks"), "mrkdwn") ||
						bytes.Contains(c.JSON, []byte("token")) {
						t.Fatalf("answer %v, call %+v", out, c)
					}
				}},
			{"form read", "conversations.replies", protocol.EncodingForm, map[string]string{"channel": "C1", "ts": parent},
				func(t *testing.T, out map[string]any, _ slackfake.Call) {
					if msgs, _ := out["messages"].([]any); len(msgs) != 2 {
						t.Fatalf("replies %v", out)
					}
				}},
			{"json streaming", "chat.startStream", protocol.EncodingJSON, map[string]any{"channel": "C1", "thread_ts": parent, "markdown_text": "Hi"},
				func(t *testing.T, out map[string]any, _ slackfake.Call) {
					if out["ts"] == "" || out["channel"] != "C1" {
						t.Fatalf("startStream %v", out)
					}
				}},
		}
		seen := map[string]bool{}
		for _, tt := range tests {
			body, reqNonce := a.callBody(tt.method, tt.encoding, tt.args, a.now())
			status, _, b := a.callRaw(body)
			if status != http.StatusOK {
				t.Fatalf("%s: %d %s", tt.name, status, b)
			}
			pt, respNonce := a.openCall(b)
			if respNonce == reqNonce || seen[respNonce] {
				t.Fatalf("%s: response nonce reused", tt.name)
			}
			seen[respNonce], seen[reqNonce] = true, true
			var out map[string]any
			if err := json.Unmarshal(pt, &out); err != nil {
				t.Fatalf("%s: %q", tt.name, pt)
			}
			calls := h.fake.CallsTo(tt.method)
			c := calls[len(calls)-1]
			if c.Token != bot || c.Params.Has("token") {
				t.Fatalf("%s: slack saw token %q / params %v", tt.name, c.Token, c.Params)
			}
			tt.check(t, out, c)
		}

		// The plaintext is Slack's exact body: compare with a direct call.
		body, _ := a.callBody("auth.test", protocol.EncodingForm, map[string]string{}, a.now())
		_, _, b := a.callRaw(body)
		got, _ := a.openCall(b)
		req, _ := http.NewRequest(http.MethodPost, h.cfg.SlackAPIURL+"auth.test", strings.NewReader(""))
		req.Header.Set("Authorization", "Bearer "+bot)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Equal(got, want) {
			t.Fatalf("relayed %q, slack said %q", got, want)
		}
	})
}

// TestCallSlackErrorsRelayed: Slack's ok:false answers (including
// unknown_method for an allowed name) come back sealed with HTTP 200.
func TestCallSlackErrorsRelayed(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine harnessOpt) {
		h, a, _ := callSetup(t, "T0CALL02", engine)
		tests := []struct{ method, want string }{
			{"chat.update", "message_not_found"},
			{"chat.nonsense", "unknown_method"},
			{"views.open", "invalid_trigger_id"},
		}
		for _, tt := range tests {
			out := a.call(tt.method, protocol.EncodingJSON, map[string]any{"channel": "C1", "ts": "1.2"})
			if out["ok"] != false || out["error"] != tt.want {
				t.Fatalf("%s: %v", tt.method, out)
			}
		}
		if n := len(h.fake.CallsTo("chat.nonsense")); n != 1 {
			t.Fatalf("unknown method reached slack %d times", n)
		}
	})
}

// TestCallDeniedMethods: administrative methods are refused with 403 and
// never reach Slack.
func TestCallDeniedMethods(t *testing.T) {
	t.Parallel()
	h, a, _ := callSetup(t, "T0CALL03")
	before := len(h.fake.Calls())
	for _, m := range []string{"admin.users.list", "apps.uninstall", "auth.revoke", "oauth.v2.access",
		"users.admin.invite", "files.upload", "files.delete", "conversations.kick", "team.accessLogs", "usergroups.create"} {
		body, _ := a.callBody(m, protocol.EncodingForm, map[string]string{"channel": "C1"}, a.now())
		status, _, b := a.callRaw(body)
		expectError(t, status, b, http.StatusForbidden, protocol.ErrMethodNotAllowed)
	}
	if after := h.fake.Calls(); len(after) != before {
		t.Fatalf("denied calls reached slack: %+v", after[before:])
	}
	logged := false
	for _, line := range strings.Split(h.logs.String(), "\n") {
		if strings.Contains(line, "api call refused by policy") && strings.Contains(line, `"slack_method":"admin.users.list"`) {
			logged = strings.Contains(line, `"reason":"method_not_allowed"`) && strings.Contains(line, `"org_id":"`+a.org+`"`) &&
				strings.Contains(line, `"agent_id":"ag-`)
		}
	}
	if !logged {
		t.Fatal("refusal not logged with agent, org, method and reason")
	}
	if v := counterValue(t, h.srv.cm.calls.WithLabelValues("other", protocol.ErrMethodNotAllowed)); v != 10 {
		t.Fatalf("refusals counted %v", v)
	}
}

// TestCallChannelPolicy checks channel, channel_id and channels against an
// org rule, and that an agent rule beats the org rule.
func TestCallChannelPolicy(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	org, tok := h.install(slackfake.Install{TeamID: "T0CALL04"})
	a := h.register(org, tok)
	b := h.register(org, h.freshRegToken(org))
	pol, err := ParseCallPolicy("test.json", []byte(`{"rules":[
		{"org_id":"`+org+`","methods":["@default"],"channels":["C1","C2"]},
		{"agent_id":"`+agentID(t, h, b)+`","methods":["auth.test"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	h.srv.cfg.CallPolicy = pol
	tests := []struct {
		name     string
		c        *agentClient
		method   string
		encoding string
		args     any
		want     int
		wantText string
	}{
		{"channel allowed", a, "chat.postMessage", "form", map[string]string{"channel": "C1", "text": "x"}, 200, ""},
		{"channel refused", a, "chat.postMessage", "form", map[string]string{"channel": "C3", "text": "x"}, 403, protocol.ErrChannelNotAllowed},
		{"channel_id refused", a, "assistant.threads.setStatus", "form", map[string]string{"channel_id": "C3", "thread_ts": "1.2", "status": "x"}, 403, protocol.ErrChannelNotAllowed},
		{"channel_id allowed", a, "assistant.threads.setStatus", "form", map[string]string{"channel_id": "C2", "thread_ts": "1.2", "status": "x"}, 200, ""},
		{"channels list with one refused", a, "files.completeUploadExternal", "form", map[string]string{"channels": "C1, C3", "files": "[]"}, 403, protocol.ErrChannelNotAllowed},
		{"channels list allowed", a, "files.completeUploadExternal", "form", map[string]string{"channels": "C1,C2", "files": "[]"}, 200, ""},
		{"json channels array refused", a, "files.completeUploadExternal", "json", map[string]any{"channels": []string{"C2", "C9"}}, 403, protocol.ErrChannelNotAllowed},
		{"json channel not a string", a, "chat.postMessage", "json", map[string]any{"channel": 42, "text": "x"}, 403, protocol.ErrChannelNotAllowed},
		{"no channel: method only", a, "users.info", "form", map[string]string{"user": "U1"}, 200, ""},
		{"agent rule beats org rule", b, "chat.postMessage", "form", map[string]string{"channel": "C1", "text": "x"}, 403, protocol.ErrMethodNotAllowed},
		{"agent rule allows its method", b, "auth.test", "form", map[string]string{}, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(h.fake.Calls())
			body, _ := tt.c.callBody(tt.method, tt.encoding, tt.args, tt.c.now())
			status, _, resp := tt.c.callRaw(body)
			if tt.want == 200 {
				if status != 200 {
					t.Fatalf("status %d %s", status, resp)
				}
				return
			}
			expectError(t, status, resp, tt.want, tt.wantText)
			if n := len(h.fake.Calls()); n != before {
				t.Fatal("refused call reached slack")
			}
		})
	}
}

func agentID(t *testing.T, h *harness, c *agentClient) string {
	t.Helper()
	agents, err := h.st.ListAgents(context.Background(), c.org)
	if err != nil {
		t.Fatal(err)
	}
	for _, ag := range agents {
		if ag.SigningPublicKey.String() == c.sig.Public().String() {
			return ag.ID
		}
	}
	t.Fatal("agent not found")
	return ""
}

// TestCallCheckOrder walks §8.1's check order: each row fails exactly one
// check, and the earlier checks still pass.
func TestCallCheckOrder(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withConfig(func(c *Config) { c.CallReadRate = RateLimit{Rate: 0.001, Burst: 1} }))
	org, tok := h.install(slackfake.Install{TeamID: "T0CALL05"})
	orgB, tokB := h.install(slackfake.Install{TeamID: "T0CALL5B"})
	a := h.register(org, tok)
	other := h.register(orgB, tokB)
	ok := func() []byte {
		b, _ := a.callBody("chat.postMessage", "form", map[string]string{"channel": "C1", "text": "x"}, a.now())
		return b
	}
	mut := func(f func(m map[string]any)) func() []byte {
		return func() []byte {
			var m map[string]any
			_ = json.Unmarshal(ok(), &m)
			f(m)
			return mustJSON(m)
		}
	}
	replayed := ok()
	if status, _, b := a.callRaw(replayed); status != 200 {
		t.Fatalf("first call: %d %s", status, b)
	}
	deniedReplay, _ := a.callBody("admin.users.list", "form", map[string]string{}, a.now())
	if status, _, b := a.callRaw(deniedReplay); status != 403 {
		t.Fatalf("denied: %d %s", status, b)
	}
	sealWith := func(pt string) func() []byte {
		return func() []byte {
			ct, n, _ := a.box.Precompute(h.keys.Box.Public).Seal([]byte(pt))
			return a.signCall("chat.postMessage", base64.StdEncoding.EncodeToString(ct), base64.StdEncoding.EncodeToString(n[:]), a.now())
		}
	}
	otherKey, _ := crypto.GenerateBoxKeyPair()
	readOnce := false
	tests := []struct {
		name       string
		bearer     string
		body       func() []byte
		wantStatus int
		wantText   string
	}{
		{"413 body size", "", func() []byte { return bytes.Repeat([]byte(" "), protocol.MaxBodySize+1) }, 413, protocol.ErrBodyTooLarge},
		{"400 json", "", func() []byte { return []byte(`{"method":`) }, 400, protocol.ErrInvalidJSON},
		{"400 org id", "", mut(func(m map[string]any) { m["org_id"], m["workspace_id"] = "T0|x", "T0|x" }), 400, "invalid org_id"},
		{"400 org differs", "", mut(func(m map[string]any) { m["workspace_id"] = orgB }), 400, "differ"},
		{"400 method format (before auth)", "", mut(func(m map[string]any) { m["method"] = "Chat.post" }), 400, "invalid method"},
		{"400 method too long", "", mut(func(m map[string]any) { m["method"] = "chat." + strings.Repeat("a", 64) }), 400, "invalid method"},
		{"400 nonce", "", mut(func(m map[string]any) { m["nonce"] = "AAAA" }), 400, "invalid nonce"},
		{"400 encrypted_body", "", mut(func(m map[string]any) { m["encrypted_body"] = "!!" }), 400, "invalid encrypted_body"},
		{"401 missing token", "", ok, 401, protocol.ErrMissingToken},
		{"401 unknown token", "nope", ok, 401, protocol.ErrInvalidToken},
		{"403 token of another org", other.token, ok, 403, protocol.ErrTokenOrgMismatch},
		{"400 protocol_version", a.token, mut(func(m map[string]any) { m["protocol_version"] = "1999-01-1" }), 400, protocol.ErrUnsupportedVersion},
		{"400 timestamp", a.token, func() []byte {
			b, _ := a.callBody("chat.postMessage", "form", map[string]string{}, a.now()-protocol.TimestampWindow-5)
			return b
		}, 400, protocol.ErrTimestampWindow},
		{"403 signature", a.token, mut(func(m map[string]any) { m["method"] = "chat.update" }), 403, protocol.ErrInvalidSignature},
		{"409 replay", a.token, func() []byte { return replayed }, 409, protocol.ErrReplay},
		{"409 replay before policy", a.token, func() []byte { return deniedReplay }, 409, protocol.ErrReplay},
		{"403 method policy", a.token, func() []byte { b, _ := a.callBody("apps.uninstall", "form", map[string]string{}, a.now()); return b }, 403, protocol.ErrMethodNotAllowed},
		{"400 body sealed to another key", a.token, func() []byte {
			ct, n, _ := a.box.Precompute(otherKey.Public).Seal([]byte(`{"encoding":"form","args":{}}`))
			return a.signCall("chat.postMessage", base64.StdEncoding.EncodeToString(ct), base64.StdEncoding.EncodeToString(n[:]), a.now())
		}, 400, "does not decrypt"},
		{"400 encoding", a.token, sealWith(`{"encoding":"xml","args":{}}`), 400, "encoding must be form or json"},
		{"400 args not an object", a.token, sealWith(`{"encoding":"json","args":[1]}`), 400, "args must be a JSON object"},
		{"400 form args not strings", a.token, sealWith(`{"encoding":"form","args":{"channel":1}}`), 400, "object of strings"},
		{"429 rate limit", a.token, func() []byte {
			if !readOnce {
				readOnce = true
				b, _ := a.callBody("users.info", "form", map[string]string{"user": "U1"}, a.now())
				if status, _, rb := a.callRaw(b); status != 200 {
					t.Fatalf("first read: %d %s", status, rb)
				}
			}
			b, _ := a.callBody("users.info", "form", map[string]string{"user": "U1"}, a.now())
			return b
		}, 429, protocol.ErrRateLimited},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reqBody := tt.body()
			before := len(h.fake.Calls())
			status, hdr, b := do(t, http.MethodPost, h.url+"/api/call", tt.bearer, reqBody, nil)
			expectError(t, status, b, tt.wantStatus, tt.wantText)
			if tt.wantStatus == 429 {
				if ra, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || ra < 1 {
					t.Fatalf("Retry-After %q", hdr.Get("Retry-After"))
				}
			}
			if n := len(h.fake.Calls()); n != before {
				t.Fatal("a refused call reached slack")
			}
		})
	}
}

// TestCallSlackFailures: Slack's 429 passes through with its Retry-After,
// 5xx and an unreachable Slack are 502 slack_unavailable, an oversize
// answer is refused, and a revoked token revokes the installation.
func TestCallSlackFailures(t *testing.T) {
	t.Parallel()
	h, a, _ := callSetup(t, "T0CALL06", withConfig(func(c *Config) { c.CallMaxResponse = 2048 }))
	for i := range 30 {
		h.fake.AddMessage(slackfake.Message{Channel: "C9", Text: "filler message number " + strconv.Itoa(i) + strings.Repeat(" padding", 10)})
	}
	tests := []struct {
		name       string
		method     string
		script     *slackfake.Reply
		wantStatus int
		wantText   string
		retryAfter string
	}{
		{"slack 429", "chat.postMessage", &slackfake.Reply{Status: 429, RetryAfter: 7}, 429, protocol.ErrRateLimited, "7"},
		{"slack 503", "conversations.history", &slackfake.Reply{Status: 503}, 502, protocol.ErrSlackUnavailable, ""},
		{"slack 500", "views.open", &slackfake.Reply{Status: 500}, 502, protocol.ErrSlackUnavailable, ""},
		{"oversize answer", "conversations.history", nil, 502, ErrResponseTooLarge, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.script != nil {
				h.fake.Script(tt.method, *tt.script)
			}
			body, _ := a.callBody(tt.method, "form", map[string]string{"channel": "C9", "text": "x"}, a.now())
			status, hdr, b := a.callRaw(body)
			expectError(t, status, b, tt.wantStatus, tt.wantText)
			if hdr.Get("Retry-After") != tt.retryAfter {
				t.Fatalf("Retry-After %q, want %q", hdr.Get("Retry-After"), tt.retryAfter)
			}
		})
	}

	// token_revoked is relayed, and revokes the installation.
	h.fake.Script("auth.test", slackfake.Reply{Error: "token_revoked"})
	if out := a.call("auth.test", "form", map[string]string{}); out["error"] != "token_revoked" {
		t.Fatalf("auth.test %v", out)
	}
	inst, err := h.st.GetInstallation(context.Background(), a.org)
	if err != nil || !inst.Revoked {
		t.Fatalf("installation not revoked: %+v %v", inst, err)
	}
	before := len(h.fake.Calls())
	body, _ := a.callBody("auth.test", "form", map[string]string{}, a.now())
	status, _, b := a.callRaw(body)
	expectError(t, status, b, http.StatusBadGateway, "token_revoked")
	if len(h.fake.Calls()) != before {
		t.Fatal("revoked installation still called slack")
	}
}

// TestCallSlackUnreachable: a Slack that does not answer is 502.
func TestCallSlackUnreachable(t *testing.T) {
	t.Parallel()
	h, a, _ := callSetup(t, "T0CALL07")
	h.slackSrv.Close()
	body, _ := a.callBody("auth.test", "form", map[string]string{}, a.now())
	status, _, b := a.callRaw(body)
	expectError(t, status, b, http.StatusBadGateway, protocol.ErrSlackUnavailable)
}

// TestCallRateLimitClasses: the post bucket refuses with 429 and a
// Retry-After while the read bucket (and another agent) still pass.
func TestCallRateLimitClasses(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine harnessOpt) {
		h, a, _ := callSetup(t, "T0CALL08", engine, withConfig(func(c *Config) { c.CallPostRate = RateLimit{Rate: 0.01, Burst: 2} }))
		b := h.register(a.org, h.freshRegToken(a.org, "xoxb-call-t0call08"))
		for range 2 {
			a.call("chat.postMessage", "form", map[string]string{"channel": "C1", "text": "x"})
		}
		body, _ := a.callBody("reactions.add", "form", map[string]string{"channel": "C1", "timestamp": "1.2", "name": "eyes"}, a.now())
		status, hdr, rb := a.callRaw(body)
		expectError(t, status, rb, http.StatusTooManyRequests, protocol.ErrRateLimited)
		if ra, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || ra < 1 || ra > 200 {
			t.Fatalf("Retry-After %q", hdr.Get("Retry-After"))
		}
		a.call("conversations.info", "form", map[string]string{"channel": "C1"})
		b.call("chat.postMessage", "form", map[string]string{"channel": "C1", "text": "y"})
	})
}

// TestCallUploadFlow: files.getUploadURLExternal hands the fake's upload
// URL to the app unchanged, the app uploads the bytes itself, and
// files.completeUploadExternal is relayed. The broker never sees the file.
func TestCallUploadFlow(t *testing.T) {
	t.Parallel()
	h, a, _ := callSetup(t, "T0CALL09")
	content := "CANARY-FILE-BYTES-7f3a " + strings.Repeat("z", 100)
	out := a.call("files.getUploadURLExternal", "form", map[string]string{"filename": "notes.txt", "length": strconv.Itoa(len(content))})
	uploadURL, _ := out["upload_url"].(string)
	fileID, _ := out["file_id"].(string)
	if !strings.HasPrefix(uploadURL, h.slackSrv.URL+"/upload/") || fileID == "" {
		t.Fatalf("getUploadURLExternal %v", out)
	}
	resp, err := http.Post(uploadURL, "text/plain", strings.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("upload %d", resp.StatusCode)
	}
	done := a.call("files.completeUploadExternal", "json", map[string]any{
		"files": []map[string]string{{"id": fileID, "title": "Notes"}}, "channel_id": "C1"})
	if done["ok"] != true {
		t.Fatalf("complete %v", done)
	}
	ups := h.fake.Uploads()
	if len(ups) != 1 || string(ups[0].Data) != content || !ups[0].Completed || ups[0].Channel != "C1" {
		t.Fatalf("uploads %+v", ups)
	}
	if info := a.call("files.info", "form", map[string]string{"file": fileID}); info["ok"] != true {
		t.Fatalf("files.info %v", info)
	}
	h.assertNoSecrets("CANARY-FILE-BYTES-7f3a")
}

// TestCallCanary: no argument or response plaintext reaches Redis or the
// logs, on success, on Slack errors and on refusals.
func TestCallCanary(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine harnessOpt) {
		h, a, bot := callSetup(t, "T0CALL10", engine)
		argCanary := "CANARY-ARG-91c2e"
		respCanary := "CANARY-RESP-44d0a"
		h.fake.AddMessage(slackfake.Message{Channel: "C1", Text: respCanary})
		a.call("chat.postMessage", "json", map[string]any{"channel": "C1", "text": argCanary})
		if out := a.call("conversations.history", "form", map[string]string{"channel": "C1"}); !strings.Contains(mustString(out), respCanary) {
			t.Fatalf("history %v", out)
		}
		a.call("chat.update", "form", map[string]string{"channel": "C1", "ts": "9.9", "text": argCanary})
		body, _ := a.callBody("admin.conversations.create", "form", map[string]string{"name": argCanary}, a.now())
		a.callRaw(body)
		body, _ = a.callBody("chat.postMessage", "form", map[string]string{"channel": "C1", "text": argCanary, "token": "xoxb-agent-canary"}, a.now())
		a.callRaw(body)
		h.assertNoSecrets(argCanary, respCanary, bot, "xoxb-agent-canary")
	})
}

func mustString(v any) string { return string(mustJSON(v)) }

// TestCallReplayAcrossReplicas: a call accepted by one replica is a replay
// on another (the nonce record is in the shared store), and a send nonce
// cannot be reused for a call.
func TestCallReplayAcrossReplicas(t *testing.T) {
	t.Parallel()
	h, a, _ := callSetup(t, "T0CALL11")
	_, _, _, _, urlB := h.newReplica()
	body, _ := a.callBody("auth.test", "form", map[string]string{}, a.now())
	if status, _, b := a.callRaw(body); status != http.StatusOK {
		t.Fatalf("replica A: %d %s", status, b)
	}
	status, _, b := do(t, http.MethodPost, urlB+"/api/call", a.token, body, nil)
	expectError(t, status, b, http.StatusConflict, protocol.ErrReplay)

	var sr protocol.SendRequest
	_ = json.Unmarshal(a.sendBody(protocol.ActionPostMessage, protocol.Routing{Channel: "C1"}, map[string]any{"text": "x"}, a.now()), &sr)
	if status, _, b := a.sendRaw(mustJSON(sr)); status != http.StatusOK {
		t.Fatalf("send: %d %s", status, b)
	}
	status, _, b = a.callRaw(a.signCall("chat.postMessage", sr.EncryptedBody, sr.Nonce, a.now()))
	expectError(t, status, b, http.StatusConflict, protocol.ErrReplay)
}
