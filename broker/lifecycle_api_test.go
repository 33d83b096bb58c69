package broker

import (
	"encoding/base64"
	"encoding/json"
	"github.com/sealrelay/sealrelay/state"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/slackfake"
	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/store/boltstore"
)

func randomNonce(t testing.TB) string {
	t.Helper()
	b, err := crypto.RandomBytes(crypto.NonceSize)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func (c *agentClient) renewBody(nonce string, ts int64) []byte {
	sig := c.sig.Sign(protocol.RenewSigningBytes(c.org, ts, nonce))
	b, _ := json.Marshal(protocol.RenewRequest{OrgID: c.org, WorkspaceID: c.org, ProtocolVersion: protocol.Version,
		Nonce: nonce, Timestamp: ts, Signature: protocol.EncodeSignature(sig)})
	return b
}

func (c *agentClient) post(path, token string, body []byte) (int, []byte) {
	status, _, b := do(c.h.t, http.MethodPost, c.base+path, token, body, nil)
	return status, b
}

// renew renews c's token and returns the answer; c keeps its old token.
func (c *agentClient) renew() protocol.RenewResponse {
	c.h.t.Helper()
	status, b := c.post("/api/agent/renew", c.token, c.renewBody(randomNonce(c.h.t), c.now()))
	if status != http.StatusOK {
		c.h.t.Fatalf("renew: %d %s", status, b)
	}
	var rr protocol.RenewResponse
	if err := json.Unmarshal(b, &rr); err != nil || !rr.OK || rr.BrokerAccessToken == "" {
		c.h.t.Fatalf("renew response: %s", b)
	}
	return rr
}

func (c *agentClient) pullStatus(token string) int {
	status, _, _ := do(c.h.t, http.MethodPost, c.base+"/api/inbox/pull", token, c.pullBody(1, 0, c.now()), nil)
	return status
}

// TestRenewOverlap: the new token works at once, the old one until the
// overlap ends (the harness clock moves, no sleeping), and fan-out counts
// the agent active by the new expiry.
func TestRenewOverlap(t *testing.T) {
	t.Parallel()
	const overlap = 3 * time.Minute
	h := newHarness(t, withConfig(func(c *Config) { c.AccessTokenOverlap = overlap; c.AccessTokenTTL = time.Hour }))
	org, tok := h.install(slackfake.Install{TeamID: "T0RENEW01"})
	c := h.register(org, tok)
	old := c.token
	start := h.clock.Now()
	rr := c.renew()
	if rr.BrokerAccessToken == old {
		t.Fatal("renewal returned the same token")
	}
	exp, err := time.Parse(time.RFC3339, rr.BrokerAccessTokenExpiresAt)
	if err != nil {
		t.Fatal(err)
	}
	issued, err := time.Parse(time.RFC3339, rr.BrokerAccessTokenIssuedAt)
	if err != nil {
		t.Fatal(err)
	}
	until, err := time.Parse(time.RFC3339, rr.PreviousTokenValidUntil)
	if err != nil {
		t.Fatal(err)
	}
	if d := exp.Sub(issued); d < time.Hour-time.Second || d > time.Hour+time.Second {
		t.Fatalf("lifetime %v, want the configured 1h", d)
	}
	if d := until.Sub(start); d < overlap-2*time.Second || d > overlap+2*time.Second {
		t.Fatalf("previous token valid for %v, want %v", d, overlap)
	}
	for _, c2 := range []struct {
		name    string
		advance time.Duration
		token   string
		want    int
	}{
		{"old token right after", 0, old, http.StatusOK},
		{"new token right after", 0, rr.BrokerAccessToken, http.StatusOK},
		{"old token near the overlap's end", overlap - 10*time.Second, old, http.StatusOK},
		{"old token after the overlap", 20 * time.Second, old, http.StatusUnauthorized},
		{"new token after the overlap", 0, rr.BrokerAccessToken, http.StatusOK},
		{"new token near its expiry", time.Hour - overlap - time.Minute, rr.BrokerAccessToken, http.StatusOK},
		{"new token after its expiry", 2 * time.Minute, rr.BrokerAccessToken, http.StatusUnauthorized},
	} {
		h.clock.Advance(c2.advance)
		if got := c.pullStatus(c2.token); got != c2.want {
			t.Fatalf("%s: pull = %d, want %d", c2.name, got, c2.want)
		}
	}
	// Nothing secret is stored or logged.
	h.assertNoSecrets(old, rr.BrokerAccessToken)
	if !strings.Contains(h.logs.String(), "access token renewed") {
		t.Fatal("renewal not logged")
	}
}

// TestRenewErrors walks the §4.4 check order for agent.renew.
func TestRenewErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	org, tok := h.install(slackfake.Install{TeamID: "T0RENEW02"})
	c := h.register(org, tok)
	other := h.newAgentKeys(org)
	used := randomNonce(t)
	c.renew()
	if status, b := c.post("/api/agent/renew", c.token, c.renewBody(used, c.now())); status != http.StatusOK {
		t.Fatalf("first renew: %d %s", status, b)
	}
	// c.token is now in its overlap; it still authenticates.
	tests := []struct {
		name   string
		token  string
		body   []byte
		status int
		want   string
	}{
		{"not JSON", c.token, []byte("{"), http.StatusBadRequest, protocol.ErrInvalidJSON},
		{"bad org", c.token, []byte(`{"org_id":"t!","nonce":"` + randomNonce(t) + `"}`), http.StatusBadRequest, "invalid org_id"},
		{"bad nonce", c.token, c.renewBody("AAAA", c.now()), http.StatusBadRequest, "invalid nonce"},
		{"no token", "", c.renewBody(randomNonce(t), c.now()), http.StatusUnauthorized, protocol.ErrMissingToken},
		{"unknown token", "x" + c.token, c.renewBody(randomNonce(t), c.now()), http.StatusUnauthorized, protocol.ErrInvalidToken},
		{"old timestamp", c.token, c.renewBody(randomNonce(t), c.now()-protocol.TimestampWindow-5), http.StatusBadRequest, protocol.ErrTimestampWindow},
		{"signed by another key", c.token, (&agentClient{h: h, org: org, sig: other.sig}).renewBody(randomNonce(t), c.now()), http.StatusForbidden, protocol.ErrInvalidSignature},
		{"replayed nonce", c.token, c.renewBody(used, c.now()), http.StatusConflict, protocol.ErrReplay},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, b := c.post("/api/agent/renew", tt.token, tt.body)
			if status != tt.status || !strings.Contains(string(b), tt.want) {
				t.Fatalf("renew = %d %s, want %d %q", status, b, tt.status, tt.want)
			}
		})
	}
	t.Run("expired token", func(t *testing.T) {
		h.clock.Advance(state.DefaultAccessTokenTTL + time.Minute)
		defer h.clock.Advance(-(state.DefaultAccessTokenTTL + time.Minute))
		status, b := c.post("/api/agent/renew", c.token, c.renewBody(randomNonce(t), c.now()))
		if status != http.StatusUnauthorized || !strings.Contains(string(b), protocol.ErrInvalidToken) {
			t.Fatalf("renew with an expired token = %d %s", status, b)
		}
	})
	t.Run("replay on another replica", func(t *testing.T) {
		_, _, _, _, url2 := h.newReplica()
		body := c.renewBody(randomNonce(t), c.now())
		if status, b := c.post("/api/agent/renew", c.token, body); status != http.StatusOK {
			t.Fatalf("renew: %d %s", status, b)
		}
		status, _, b := do(t, http.MethodPost, url2+"/api/agent/renew", c.token, body, nil)
		if status != http.StatusConflict {
			t.Fatalf("same renew on replica 2 = %d %s, want 409", status, b)
		}
	})
}

// newRegToken re-installs org for a second registration token.
func (h *harness) newRegToken(org string) string {
	h.t.Helper()
	_, tok := h.install(slackfake.Install{TeamID: org})
	return tok
}

type rekeyReq struct {
	box      *crypto.BoxKeyPair
	sig      *crypto.SigningKey
	nonce    string
	ts       int64
	proofKey *crypto.SigningKey // signs new_key_signature; default sig
}

func (c *agentClient) rekeyBody(r rekeyReq) []byte {
	signed := protocol.RekeySigningBytes(c.org, r.ts, r.box.Public.String(), r.sig.Public().String(), r.nonce)
	proof := r.proofKey
	if proof == nil {
		proof = r.sig
	}
	b, _ := json.Marshal(protocol.RekeyRequest{OrgID: c.org, WorkspaceID: c.org, ProtocolVersion: protocol.Version,
		ServerPubkey: r.box.Public.String(), ServerSigningPubkey: r.sig.Public().String(), Nonce: r.nonce, Timestamp: r.ts,
		Signature:       protocol.EncodeSignature(c.sig.Sign(signed)),
		NewKeySignature: protocol.EncodeSignature(proof.Sign(signed))})
	return b
}

// TestRekey: events queued before the rekey open with the old box key,
// events after it with the new one; afterwards only the new signing key
// is accepted.
func TestRekey(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	org, tok := h.install(slackfake.Install{TeamID: "T0REKEY01"})
	c := h.register(org, tok)
	before, _ := eventBody(org, "before the rekey")
	h.postEvent(h.url, before)

	fresh := h.newAgentKeys(org)
	status, b := c.post("/api/agent/rekey", c.token, c.rekeyBody(rekeyReq{box: fresh.box, sig: fresh.sig, nonce: randomNonce(t), ts: c.now()}))
	if status != http.StatusOK {
		t.Fatalf("rekey: %d %s", status, b)
	}
	after, _ := eventBody(org, "after the rekey")
	h.postEvent(h.url, after)

	// The old signing key no longer authenticates.
	if got := c.pullStatus(c.token); got != http.StatusForbidden {
		t.Fatalf("pull signed with the old key = %d, want 403", got)
	}
	oldBox := c.box
	c.sig, c.box = fresh.sig, fresh.box
	status, b = c.pullRaw(c.pullBody(10, 0, c.now()))
	if status != http.StatusOK {
		t.Fatalf("pull with the new key: %d %s", status, b)
	}
	var pr protocol.PullResponse
	if err := json.Unmarshal(b, &pr); err != nil || len(pr.Messages) != 2 {
		t.Fatalf("pull after rekey: %s", b)
	}
	texts := map[string]*crypto.BoxKeyPair{"before the rekey": oldBox, "after the rekey": fresh.box}
	for _, m := range pr.Messages {
		opened := ""
		for text, key := range texts {
			if _, pt, err := protocol.OpenEnvelope(m, h.keys.Signing.Public(), key); err == nil {
				if !strings.Contains(string(pt), text) {
					t.Errorf("message %s opened with the key of %q but holds %s", m.MessageID, text, pt)
				}
				opened = text
			}
		}
		if opened == "" {
			t.Errorf("message %s opens with neither key", m.MessageID)
		}
		delete(texts, opened)
	}
	if len(texts) != 0 {
		t.Fatalf("not every event arrived sealed to its key: missing %v", texts)
	}
}

// TestRekeyErrors: bad keys, a bad proof, another agent's key and a replay.
func TestRekeyErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	org, tok := h.install(slackfake.Install{TeamID: "T0REKEY02"})
	c := h.register(org, tok)
	taken := h.register(org, h.newRegToken(org))
	fresh := h.newAgentKeys(org)
	used := randomNonce(t)
	if status, b := c.post("/api/agent/rekey", c.token, c.rekeyBody(rekeyReq{box: c.box, sig: c.sig, nonce: used, ts: c.now()})); status != http.StatusOK {
		t.Fatalf("same-key rekey: %d %s", status, b)
	}
	lowOrder := []byte(`{"org_id":"` + org + `","server_pubkey":"` + base64.StdEncoding.EncodeToString(make([]byte, 32)) +
		`","server_signing_pubkey":"` + fresh.sig.Public().String() + `","nonce":"` + randomNonce(t) + `"}`)
	tests := []struct {
		name   string
		body   []byte
		status int
		want   string
	}{
		{"low-order box key", lowOrder, http.StatusBadRequest, "low-order"},
		{"bad nonce", c.rekeyBody(rekeyReq{box: fresh.box, sig: fresh.sig, nonce: "AA==", ts: c.now()}), http.StatusBadRequest, "invalid nonce"},
		{"old timestamp", c.rekeyBody(rekeyReq{box: fresh.box, sig: fresh.sig, nonce: randomNonce(t), ts: c.now() - 400}), http.StatusBadRequest, protocol.ErrTimestampWindow},
		{"proof by the current key", c.rekeyBody(rekeyReq{box: fresh.box, sig: fresh.sig, nonce: randomNonce(t), ts: c.now(), proofKey: c.sig}), http.StatusForbidden, protocol.ErrInvalidNewKeySignature},
		{"another agent's key, proof forged", c.rekeyBody(rekeyReq{box: fresh.box, sig: taken.sig, nonce: randomNonce(t), ts: c.now()}), http.StatusConflict, "registered to another agent"},
		{"replayed nonce", c.rekeyBody(rekeyReq{box: fresh.box, sig: fresh.sig, nonce: used, ts: c.now()}), http.StatusConflict, protocol.ErrReplay},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, b := c.post("/api/agent/rekey", c.token, tt.body)
			if status != tt.status || !strings.Contains(string(b), tt.want) {
				t.Fatalf("rekey = %d %s, want %d %q", status, b, tt.status, tt.want)
			}
		})
	}
	// Nothing changed: the current key still pulls, the other agent too.
	if got := c.pullStatus(c.token); got != http.StatusOK {
		t.Fatalf("pull with the unchanged key = %d", got)
	}
	if got := taken.pullStatus(taken.token); got != http.StatusOK {
		t.Fatalf("other agent's pull = %d", got)
	}
}

// TestLifecycleEmbedded: renewal with its overlap and a rekey on the
// embedded bbolt state, through the handlers.
func TestLifecycleEmbedded(t *testing.T) {
	t.Parallel()
	bs, err := boltstore.Open(t.TempDir(), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bs.Close() })
	st, q := bs, bs.Inbox
	h := &harness{t: t, clock: &testClock{}, logs: &syncBuffer{}, keys: newTestKeys(t)}
	srv, err := New(Config{PublicURL: "http://broker.example", SlackClientID: testClientID, SlackClientSecret: testClientSecret,
		SlackSigningSecret: testSigningSecret, AccessTokenOverlap: time.Minute, Now: h.clock.Now}, st, q, h.keys,
		slog.New(slog.NewJSONHandler(h.logs, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	h.srv, h.url = srv, newTestServer(t, srv)
	const org = "T0LIFE01"
	if err := st.PutInstallation(t.Context(), &state.Installation{OrgID: org, TeamID: org}); err != nil {
		t.Fatal(err)
	}
	tok := "embedded-registration-token-0123456789"
	if err := st.PutRegistrationToken(t.Context(), srv.hk.Hash(KindRegistrationToken, tok), org, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	c := h.register(org, tok)
	old := c.token
	rr := c.renew()
	for _, step := range []struct {
		name    string
		advance time.Duration
		token   string
		want    int
	}{
		{"old token in the overlap", 0, old, http.StatusOK},
		{"new token", 0, rr.BrokerAccessToken, http.StatusOK},
		{"old token after the overlap", time.Minute + time.Second, old, http.StatusUnauthorized},
		{"new token after the overlap", 0, rr.BrokerAccessToken, http.StatusOK},
	} {
		h.clock.Advance(step.advance)
		if got := c.pullStatus(step.token); got != step.want {
			t.Fatalf("%s: pull = %d, want %d", step.name, got, step.want)
		}
	}
	c.token = rr.BrokerAccessToken
	fresh := h.newAgentKeys(org)
	if status, b := c.post("/api/agent/rekey", c.token, c.rekeyBody(rekeyReq{box: fresh.box, sig: fresh.sig, nonce: randomNonce(t), ts: c.now()})); status != http.StatusOK {
		t.Fatalf("rekey: %d %s", status, b)
	}
	if got := c.pullStatus(c.token); got != http.StatusForbidden {
		t.Fatalf("pull with the old key after rekey = %d, want 403", got)
	}
	c.sig = fresh.sig
	if got := c.pullStatus(c.token); got != http.StatusOK {
		t.Fatalf("pull with the new key = %d", got)
	}
}
