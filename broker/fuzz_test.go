package broker

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/internal/slackfake"
	"github.com/sealrelay/sealrelay/protocol"
)

// checkResponse asserts the invariants every response keeps: JSON body with
// ok matching the status, and no 5xx for malformed input.
func checkResponse(t *testing.T, rec *httptest.ResponseRecorder, allowed ...int) {
	t.Helper()
	ok := false
	for _, s := range allowed {
		if rec.Code == s {
			ok = true
		}
	}
	if !ok {
		t.Fatalf("status %d not in %v: %s", rec.Code, allowed, rec.Body.Bytes())
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("response is not a JSON object: %q", rec.Body.Bytes())
	}
	if _, isChallenge := m["challenge"]; isChallenge {
		return
	}
	if (rec.Code == 200) != (m["ok"] == true) {
		t.Fatalf("ok=%v with status %d", m["ok"], rec.Code)
	}
}

// FuzzAgentAPI feeds arbitrary bodies (with a valid bearer token) to every
// agent endpoint.
func FuzzAgentAPI(f *testing.F) {
	h := newHarness(f)
	org, tok := h.install(slackfake.Install{TeamID: "T0FUZZ01"})
	a := h.register(org, tok)
	ts := time.Now().Unix()
	f.Add(uint8(0), a.pullBody(10, 0, ts))
	f.Add(uint8(1), a.ackBody([]string{"m-1", "x#2"}, ts))
	f.Add(uint8(2), a.sendBody(protocol.ActionPostMessage, protocol.Routing{Channel: "C1"}, map[string]any{"text": "hi"}, ts))
	f.Add(uint8(3), []byte(`{"org_id":"T0FUZZ01","registration_token":"`+tok+`"}`))
	f.Add(uint8(4), []byte(`{"org_id":"T0FUZZ01","timestamp":1,"signature":"AA=="}`))
	f.Add(uint8(0), []byte(`{"max_messages":1e400,"wait_seconds":-0}`))
	f.Add(uint8(1), []byte(`{"message_ids":[null,1,{}]}`))
	callSeed, _ := a.callBody("chat.postMessage", protocol.EncodingForm, map[string]string{"channel": "C1", "text": "hi"}, ts)
	f.Add(uint8(5), callSeed)
	endpoints := []struct{ method, path string }{
		{"POST", "/api/inbox/pull"}, {"POST", "/api/inbox/ack"}, {"POST", "/api/send"},
		{"POST", "/api/register"}, {"DELETE", "/api/register"}, {"POST", "/api/call"},
	}
	handler := h.srv.Handler()
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		ep := endpoints[int(which)%len(endpoints)]
		req := httptest.NewRequest(ep.method, ep.path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+a.token)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		checkResponse(t, rec, 200, 400, 401, 403, 404, 409, 413, 429, 502)
		if ep.path == "/api/send" && rec.Code == 200 {
			// Only a correctly signed, fresh send may reach Slack.
			var sr protocol.SendRequest
			if json.Unmarshal(body, &sr) != nil {
				t.Fatal("unparseable send accepted")
			}
		}
	})
}

// FuzzSlackIngress feeds arbitrary, correctly signed bodies to the Slack
// endpoints.
func FuzzSlackIngress(f *testing.F) {
	h := newHarness(f)
	org, tok := h.install(slackfake.Install{TeamID: "T0FUZZ02"})
	h.register(org, tok)
	ev, _ := eventBody(org, "seed")
	f.Add(uint8(0), ev)
	f.Add(uint8(0), []byte(`{"type":"url_verification","challenge":"c"}`))
	f.Add(uint8(0), []byte(`{"type":"event_callback","team_id":"T0FUZZ02","event_id":"`+string(bytes.Repeat([]byte("E"), 300))+`"}`))
	f.Add(uint8(0), []byte(`{"type":"app_rate_limited","team_id":"T0FUZZ02"}`))
	f.Add(uint8(1), []byte(`payload=%7B%22type%22%3A%22block_actions%22%2C%22team%22%3A%7B%22id%22%3A%22T0FUZZ02%22%7D%7D`))
	f.Add(uint8(2), []byte(`command=%2Fx&team_id=T0FUZZ02&text=hi`))
	f.Add(uint8(2), []byte(`command=%2Fx&team_id=%00%ff`))
	paths := []string{"/slack/events", "/slack/interactivity", "/slack/commands"}
	handler := h.srv.Handler()
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		req := httptest.NewRequest(http.MethodPost, paths[int(which)%len(paths)], bytes.NewReader(body))
		slackfake.SignRequest(req, testSigningSecret, time.Now(), body)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		if req.URL.Path != "/slack/events" && rec.Code == 200 {
			// Interactivity and slash commands acknowledge with an empty
			// 200 (a JSON body would be read by Slack as a response).
			if rec.Body.Len() != 0 {
				t.Fatalf("%s: 200 with body %q", req.URL.Path, rec.Body.Bytes())
			}
			return
		}
		checkResponse(t, rec, 200, 400, 413)
	})
}
