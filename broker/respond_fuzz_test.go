package broker

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sealrelay/sealrelay/internal/slackfake"
)

// FuzzRespond feeds POST /api/inbox/respond arbitrary request bodies (mode
// 0) and correctly signed requests with an arbitrary message id and sealed
// answer (mode 1). Nothing may answer 5xx or panic; a 200 must be
// {"ok":true,"delivered":false} (nothing is held) and only for an answer
// that is a JSON object of at most MaxRespondBody bytes.
func FuzzRespond(f *testing.F) {
	h := newHarness(f)
	org, tok := h.install(slackfake.Install{TeamID: "T0FUZZRS"})
	a := h.registerCapable(h.url, org, tok)
	f.Add(uint8(0), "", []byte(`{"org_id":"T0FUZZRS","message_id":"m1","encrypted_body":"AAAA","nonce":"AAAA","timestamp":1,"signature":"AAAA"}`))
	f.Add(uint8(0), "", []byte(`{`))
	f.Add(uint8(1), "h000000000000000000000000000000", []byte(`{"text":"hi"}`))
	f.Add(uint8(1), "m#1", []byte(`{}`))
	f.Add(uint8(1), "abc", []byte(`[1]`))
	f.Add(uint8(1), "abc", []byte(` {"a":1} `))
	handler := h.srv.Handler()
	f.Fuzz(func(t *testing.T, mode uint8, id string, data []byte) {
		body := data
		if mode%2 == 1 {
			body = a.respondBody(id, data, a.now())
		}
		req := httptest.NewRequest(http.MethodPost, "/api/inbox/respond", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+a.token)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		checkResponse(t, rec, 200, 400, 403, 409, 413)
		if rec.Code != http.StatusOK {
			return
		}
		if mode%2 == 0 {
			t.Fatalf("an unsigned body was accepted: %q", body)
		}
		if len(data) > MaxRespondBody || !json.Valid(data) || bytes.TrimLeft(data, " \t\r\n")[0] != '{' {
			t.Fatalf("answer %q accepted", data)
		}
		if rec.Body.String() != `{"ok":true,"delivered":false}`+"\n" && rec.Body.String() != `{"ok":true,"delivered":false}` {
			t.Fatalf("answer %s", rec.Body.Bytes())
		}
	})
}
