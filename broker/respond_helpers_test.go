package broker

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/slackfake"
	"github.com/sealrelay/sealrelay/protocol"
)

// extraRegToken stores another registration token for org, so a test can
// register a second agent.
func (h *harness) extraRegToken(org string) string {
	h.t.Helper()
	tok, err := crypto.RandomToken(32)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := h.st.PutRegistrationToken(context.Background(), h.srv.hk.Hash(KindRegistrationToken, tok), org, time.Now().Add(time.Hour)); err != nil {
		h.t.Fatal(err)
	}
	return tok
}

// registerCapable registers an agent that declares inbox.respond at
// registration.
func (h *harness) registerCapable(base, org, regToken string) *agentClient {
	h.t.Helper()
	c := h.newAgentKeys(org)
	c.base = base
	c.registerWithCaps(regToken, []string{protocol.CapabilityRespond})
	return c
}

func (c *agentClient) registerWithCaps(regToken string, caps []string) {
	c.h.t.Helper()
	b, _ := json.Marshal(registerRequest{RegisterRequest: protocol.RegisterRequest{OrgID: c.org, WorkspaceID: c.org,
		ServerPubkey: c.box.Public.String(), ServerSigningPubkey: c.sig.Public().String(), RegistrationToken: regToken},
		Capabilities: caps})
	status, _, body := do(c.h.t, http.MethodPost, c.base+"/api/register", "", b, nil)
	var rr protocol.RegisterResponse
	if status != http.StatusOK || json.Unmarshal(body, &rr) != nil || rr.BrokerAccessToken == "" {
		c.h.t.Fatalf("register: %d %s", status, body)
	}
	c.token = rr.BrokerAccessToken
}

// pullWithMeta pulls with the given unsigned meta and returns the messages.
func (c *agentClient) pullWithMeta(maxN, wait int, meta string) []openedMessage {
	c.h.t.Helper()
	ts := c.now()
	sig := c.sig.Sign(protocol.PullSigningBytes(c.org, ts, maxN, wait))
	b, _ := json.Marshal(protocol.PullRequest{OrgID: c.org, WorkspaceID: c.org, ProtocolVersion: protocol.Version,
		MaxMessages: &maxN, WaitSeconds: &wait, Timestamp: ts, Signature: protocol.EncodeSignature(sig),
		Meta: json.RawMessage(meta)})
	status, body := c.pullRaw(b)
	if status != http.StatusOK {
		c.h.t.Fatalf("pull: %d %s", status, body)
	}
	return c.open(body)
}

const capableMeta = `{"capabilities":["inbox.respond"]}`

// heldFields opens m again and returns its §8.2 envelope fields.
func (c *agentClient) heldFields(m openedMessage) (expected bool, respondBy int64) {
	c.h.t.Helper()
	_, pt, err := protocol.OpenEnvelope(m.Raw, c.h.keys.Signing.Public(), c.box)
	if err != nil {
		c.h.t.Fatal(err)
	}
	var f struct {
		ResponseExpected bool  `json:"response_expected"`
		RespondBy        int64 `json:"respond_by"`
	}
	if err := json.Unmarshal(pt, &f); err != nil {
		c.h.t.Fatal(err)
	}
	return f.ResponseExpected, f.RespondBy
}

// respondBody seals answer to the broker and signs an inbox.respond.
func (c *agentClient) respondBody(id string, answer []byte, ts int64) []byte {
	ct, nonce, err := c.box.Precompute(c.h.keys.Box.Public).Seal(answer)
	if err != nil {
		c.h.t.Fatal(err)
	}
	return c.signRespond(id, base64.StdEncoding.EncodeToString(ct), base64.StdEncoding.EncodeToString(nonce[:]), ts)
}

func (c *agentClient) signRespond(id, ct, nonce string, ts int64) []byte {
	sig := c.sig.Sign(protocol.RespondSigningBytes(c.org, ts, id, ct, nonce))
	b, _ := json.Marshal(protocol.RespondRequest{OrgID: c.org, WorkspaceID: c.org, ProtocolVersion: protocol.Version,
		MessageID: id, EncryptedBody: ct, Nonce: nonce, Timestamp: ts, Signature: protocol.EncodeSignature(sig)})
	return b
}

func (c *agentClient) respondRaw(body []byte) (int, []byte) {
	status, _, b := do(c.h.t, http.MethodPost, c.base+"/api/inbox/respond", c.token, body, nil)
	return status, b
}

// respond answers message id and returns delivered.
func (c *agentClient) respond(id string, answer []byte) bool {
	c.h.t.Helper()
	status, b := c.respondRaw(c.respondBody(id, answer, c.now()))
	var rr protocol.RespondResponse
	if status != http.StatusOK || json.Unmarshal(b, &rr) != nil || !rr.OK {
		c.h.t.Fatalf("respond: %d %s", status, b)
	}
	return rr.Delivered
}

// slackResult is Slack's view of a webhook answer.
type slackResult struct {
	status      int
	contentType string
	body        []byte
	took        time.Duration
	err         error
}

// slackAsync posts a signed Slack request and delivers the answer on the
// returned channel (safe to call from any goroutine).
func slackAsync(base, path string, body []byte) <-chan slackResult {
	out := make(chan slackResult, 1)
	go func() {
		start := time.Now()
		req, err := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(body))
		if err != nil {
			out <- slackResult{err: err}
			return
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		slackfake.SignRequest(req, testSigningSecret, time.Now(), body)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			out <- slackResult{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		out <- slackResult{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), body: b, took: time.Since(start), err: err}
	}()
	return out
}

func commandForm(team, text string) []byte {
	return []byte(url.Values{"command": {"/relay"}, "text": {text}, "team_id": {team}, "user_id": {"U1"}}.Encode())
}

func interactionForm(payload string) []byte {
	return []byte(url.Values{"payload": {payload}}.Encode())
}

// newTestServer serves srv on a local test server and returns its URL.
func newTestServer(t testing.TB, srv *Server) string {
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return ts.URL
}
