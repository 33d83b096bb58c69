package bridgetest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

// Call is one POST /api/call as the broker verified and decrypted it.
type Call struct {
	Method   string
	Encoding string
	// Args is the decrypted args object, exactly as the bridge sent it.
	Args  json.RawMessage
	Nonce string
}

// FormArgs returns Args of a form call as a string map (nil for a JSON
// call or args that are not all strings).
func (c Call) FormArgs() map[string]string {
	var m map[string]string
	if c.Encoding != protocol.EncodingForm || json.Unmarshal(c.Args, &m) != nil {
		return nil
	}
	return m
}

// CallAnswer is what the fake broker answers a call with. A zero Status or
// 200 seals Body (Slack's JSON answer) to the agent under a fresh nonce
// (under the request's nonce when ReuseNonce is set, a broker fault the
// bridge must refuse); any other Status answers {"ok":false,"error":Error}
// with Header.
type CallAnswer struct {
	Status     int
	Error      string
	Header     http.Header
	Body       []byte
	ReuseNonce bool
}

// AuthTestBody is the Slack auth.test answer the fake broker gives by
// default: the installation's bot identity.
func AuthTestBody(orgID string) []byte {
	b, _ := json.Marshal(map[string]any{
		"ok": true, "url": "https://fake-team.slack.com/", "team": "Fake Team", "user": "sealrelay-bot",
		"team_id": orgID, "user_id": "U0BOT00001", "bot_id": "B0BOT00001", "is_enterprise_install": false,
	})
	return b
}

// AnswerCalls makes later /api/call requests answer with fn (nil: the
// default, AuthTestBody for auth.test and {"ok":true} otherwise). fn runs
// on the server's goroutine without the broker's lock held.
func (f *FakeBroker) AnswerCalls(fn func(Call) CallAnswer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.callAnswer = fn
}

// Calls returns the verified /api/call requests, in order.
func (f *FakeBroker) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// CallCount returns how many verified calls named method.
func (f *FakeBroker) CallCount(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c.Method == method {
			n++
		}
	}
	return n
}

// call serves POST /api/call like the real broker: method format (400)
// before authentication, then bearer, org, timestamp and signature, nonce
// replay, body decryption and the args' shape. A token argument is a test
// failure: the bridge must never forward the app's token.
func (f *FakeBroker) call(w http.ResponseWriter, r *http.Request) {
	var req protocol.CallRequest
	if !decode(w, r, &req) {
		return
	}
	if err := protocol.ValidateMethod(req.Method); err != nil {
		fail(w, Failure{Status: 400, Message: err.Error()})
		return
	}
	if req.ProtocolVersion != "" && req.ProtocolVersion != protocol.Version {
		fail(w, Failure{Status: 400, Message: protocol.ErrUnsupportedVersion})
		return
	}
	f.mu.Lock()
	msg := protocol.CallSigningBytes(f.OrgID, req.Timestamp, req.Method, req.EncryptedBody, req.Nonce)
	if !f.authLocked(w, r, req.OrgID, req.WorkspaceID, req.Timestamp, msg, req.Signature) {
		f.mu.Unlock()
		return
	}
	if f.nonces[req.Nonce] {
		f.mu.Unlock()
		fail(w, Failure{Status: 409, Message: protocol.ErrReplay})
		return
	}
	f.nonces[req.Nonce] = true
	agentBox, answer := f.agentBox, f.callAnswer
	f.mu.Unlock()

	pt, nonce, ok := f.openSealed(w, agentBox, req.EncryptedBody, req.Nonce)
	if !ok {
		return
	}
	var body protocol.CallBody
	if err := json.Unmarshal(pt, &body); err != nil {
		fail(w, Failure{Status: 400, Message: "invalid encrypted_body: not a call body"})
		return
	}
	if msg := checkArgs(body); msg != "" {
		fail(w, Failure{Status: 400, Message: msg})
		return
	}
	c := Call{Method: req.Method, Encoding: body.Encoding, Args: body.Args, Nonce: req.Nonce}
	if hasToken(body.Args) {
		f.t.Errorf("fake broker: %s call forwarded a token argument", req.Method)
		fail(w, Failure{Status: 400, Message: "token argument forwarded"})
		return
	}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()

	a := defaultCallAnswer(f.OrgID, c)
	if answer != nil {
		a = answer(c)
	}
	if a.Status != 0 && a.Status != http.StatusOK {
		fail(w, Failure{Status: a.Status, Message: a.Error, Header: a.Header})
		return
	}
	var sealed []byte
	var rn [crypto.NonceSize]byte
	if a.ReuseNonce {
		rn = nonce
		sk := f.BoxKey.Precompute(agentBox)
		sealed = sk.SealWithNonce(a.Body, &rn)
		sk.Wipe()
	} else {
		var err error
		sealed, rn, err = f.BoxKey.Seal(a.Body, agentBox)
		if err != nil {
			fail(w, Failure{Status: 500, Message: "seal: " + err.Error()})
			return
		}
	}
	writeJSON(w, 200, protocol.CallResponse{OK: true,
		ResponseNonce:     base64.StdEncoding.EncodeToString(rn[:]),
		EncryptedResponse: base64.StdEncoding.EncodeToString(sealed)})
}

func defaultCallAnswer(orgID string, c Call) CallAnswer {
	if c.Method == "auth.test" {
		return CallAnswer{Body: AuthTestBody(orgID)}
	}
	return CallAnswer{Body: []byte(`{"ok":true}`)}
}

// checkArgs validates the decrypted body as the broker does: form args are
// an object of strings, JSON args any object.
func checkArgs(b protocol.CallBody) string {
	switch b.Encoding {
	case protocol.EncodingForm:
		var m map[string]string
		if err := json.Unmarshal(b.Args, &m); err != nil || m == nil {
			return fmt.Sprintf("form args must be an object of strings: %v", err)
		}
	case protocol.EncodingJSON:
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b.Args, &m); err != nil || m == nil {
			return "json args must be an object"
		}
	default:
		return fmt.Sprintf("unknown encoding %q", b.Encoding)
	}
	return ""
}

func hasToken(args json.RawMessage) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(args, &m) != nil {
		return false
	}
	_, ok := m["token"]
	return ok
}
