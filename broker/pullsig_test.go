package broker

import (
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/internal/slackfake"
	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/state"
)

// pullHits reads the pull signature cache hit counter of srv.
func pullHits(t *testing.T, srv *Server) float64 {
	t.Helper()
	return counterValue(t, srv.m.pullSigCacheHits)
}

// withField returns the JSON object body with key set to value.
func withField(t *testing.T, body []byte, key string, value any) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	m[key] = value
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pullAt sends body to the pull endpoint of base with bearer token.
func pullAt(t *testing.T, base, token string, body []byte) (int, []byte) {
	t.Helper()
	status, _, b := do(t, http.MethodPost, base+"/api/inbox/pull", token, body, nil)
	return status, b
}

// TestPullSignatureCacheKeepsChecks: a pull whose signature was verified
// before is answered from the cache only after the token, org, version and
// timestamp checks of §4.4 ran again; each refusal below comes with the
// same signed bytes and signature as a cached success.
func TestPullSignatureCacheKeepsChecks(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	org, tok := h.install(slackfake.Install{TeamID: "T0PSIG001"})
	c := h.register(org, tok)
	sibling := h.register(org, h.extraRegToken(org)) // same org, other key
	org2, tok2 := h.install(slackfake.Install{TeamID: "T0PSIG002"})
	stranger := h.register(org2, tok2)

	// 200 s old: 150 s more puts it outside the 300 s window.
	body := c.pullBody(10, 0, c.now()-200)
	if status, b := c.pullRaw(body); status != http.StatusOK {
		t.Fatalf("first pull: %d %s", status, b)
	}
	if got := pullHits(t, h.srv); got != 0 {
		t.Fatalf("hits after the first pull = %v, want 0 (it is verified)", got)
	}
	if status, b := c.pullRaw(body); status != http.StatusOK {
		t.Fatalf("repeated pull: %d %s", status, b)
	}
	if got := pullHits(t, h.srv); got != 1 {
		t.Fatalf("hits after the identical pull = %v, want 1", got)
	}

	tests := []struct {
		name    string
		token   string
		body    []byte
		advance time.Duration
		status  int
		want    string
	}{
		{"no token", "", body, 0, http.StatusUnauthorized, protocol.ErrMissingToken},
		{"unknown token", "not-a-token-of-this-broker-0123456789abcdef", body, 0, http.StatusUnauthorized, protocol.ErrInvalidToken},
		{"token of another agent of the org", sibling.token, body, 0, http.StatusForbidden, protocol.ErrInvalidSignature},
		{"token of another org", stranger.token, body, 0, http.StatusForbidden, protocol.ErrTokenOrgMismatch},
		{"unsupported protocol_version", c.token, withField(t, body, "protocol_version", "1999-01-1"), 0, http.StatusBadRequest, protocol.ErrUnsupportedVersion},
		{"timestamp out of the window", c.token, body, 150 * time.Second, http.StatusBadRequest, protocol.ErrTimestampWindow},
		{"expired token", c.token, body, state.DefaultAccessTokenTTL + time.Minute, http.StatusUnauthorized, protocol.ErrInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.clock.Advance(tt.advance)
			defer h.clock.Advance(-tt.advance)
			before := pullHits(t, h.srv)
			status, b := pullAt(t, h.url, tt.token, tt.body)
			if status != tt.status || !strings.Contains(string(b), tt.want) {
				t.Fatalf("pull = %d %s, want %d %q", status, b, tt.status, tt.want)
			}
			if got := pullHits(t, h.srv); got != before {
				t.Fatalf("a refused pull counted as a cache hit (%v → %v)", before, got)
			}
		})
	}

	// The refusals left the cached success in place...
	if status, b := c.pullRaw(body); status != http.StatusOK {
		t.Fatalf("pull after the refusals: %d %s", status, b)
	}
	if got := pullHits(t, h.srv); got != 2 {
		t.Fatalf("hits = %v, want 2", got)
	}
	// ...and an unregistered agent's token is unknown, cache or not.
	if status, _, b := do(t, http.MethodDelete, h.url+"/api/register", c.token, c.unregisterBody(c.now()), nil); status != http.StatusOK {
		t.Fatalf("unregister: %d %s", status, b)
	}
	if status, b := c.pullRaw(body); status != http.StatusUnauthorized {
		t.Fatalf("pull after unregister = %d %s, want 401", status, b)
	}
}

// ed25519L is the order of the Ed25519 base point group.
var ed25519L, _ = new(big.Int).SetString("7237005577332262213973186563042994811857787468736468709120498120233426227200", 10)

// nonCanonicalS returns sig with S replaced by S+L: the same group element,
// a different (non-canonical) encoding that Ed25519 verification refuses.
func nonCanonicalS(t *testing.T, sig []byte) []byte {
	t.Helper()
	le := func(b []byte) []byte { // little ↔ big endian
		out := make([]byte, len(b))
		for i := range b {
			out[len(b)-1-i] = b[i]
		}
		return out
	}
	s := new(big.Int).SetBytes(le(sig[32:]))
	s.Add(s, ed25519L)
	be := s.FillBytes(make([]byte, 32)) // S+L < 2^254 fits in 32 bytes
	out := append([]byte(nil), sig[:32]...)
	return append(out, le(be)...)
}

// otherSpelling returns a different standard-base64 string of the same
// 64 bytes: the last data character carries 4 unused bits, which a
// non-strict decoder ignores.
func otherSpelling(t *testing.T, sigB64 string) string {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	if len(sigB64) != 88 || !strings.HasSuffix(sigB64, "==") {
		t.Fatalf("unexpected signature encoding %q", sigB64)
	}
	i := strings.IndexByte(alphabet, sigB64[85])
	return sigB64[:85] + string(alphabet[i|1]) + "=="
}

// TestPullSignatureCacheRefusesOtherSignatures: after a cached success,
// any other signature string with the same signed bytes is verified
// normally — tampered, non-canonical or made for other bytes is refused
// (403), another base64 spelling of the valid signature is accepted by the
// normal check — and none of them is a cache hit; the cached signature on
// other signed bytes is refused too.
func TestPullSignatureCacheRefusesOtherSignatures(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	org, tok := h.install(slackfake.Install{TeamID: "T0PSIG003"})
	c := h.register(org, tok)
	ts := c.now()
	body := c.pullBody(10, 0, ts)
	var req protocol.PullRequest
	if err := json.Unmarshal(body, &req); err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(req.Signature)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) string {
		b := append([]byte(nil), raw...)
		b[i] ^= 0x01
		return base64.StdEncoding.EncodeToString(b)
	}
	otherBytes := protocol.EncodeSignature(c.sig.Sign(protocol.PullSigningBytes(org, ts-1, 10, 0)))

	tests := []struct {
		name   string
		sig    string
		status int
		hit    bool
		body   []byte // the pull sent with sig; the cached one when nil
	}{
		{"the valid signature (verified)", req.Signature, http.StatusOK, false, nil},
		{"the valid signature again (cached)", req.Signature, http.StatusOK, true, nil},
		{"R tampered", flip(0), http.StatusForbidden, false, nil},
		{"S tampered", flip(40), http.StatusForbidden, false, nil},
		{"S+L (non-canonical S)", base64.StdEncoding.EncodeToString(nonCanonicalS(t, raw)), http.StatusForbidden, false, nil},
		{"signature of other bytes", otherBytes, http.StatusForbidden, false, nil},
		{"empty signature", "", http.StatusForbidden, false, nil},
		{"the valid signature once more (still cached)", req.Signature, http.StatusOK, true, nil},
		{"the cached signature on max_messages 11", req.Signature, http.StatusForbidden, false, withField(t, body, "max_messages", 11)},
		{"the cached signature on wait_seconds 1", req.Signature, http.StatusForbidden, false, withField(t, body, "wait_seconds", 1)},
		{"the cached signature on another timestamp", req.Signature, http.StatusForbidden, false, withField(t, body, "timestamp", ts-1)},
		{"other base64 spelling (verified normally)", otherSpelling(t, req.Signature), http.StatusOK, false, nil},
	}
	for _, tt := range tests {
		before := pullHits(t, h.srv)
		base := body
		if tt.body != nil {
			base = tt.body
		}
		status, b := c.pullRaw(withField(t, base, "signature", tt.sig))
		if status != tt.status {
			t.Fatalf("%s: pull = %d %s, want %d", tt.name, status, b, tt.status)
		}
		if hit := pullHits(t, h.srv) > before; hit != tt.hit {
			t.Fatalf("%s: cache hit = %v, want %v", tt.name, hit, tt.hit)
		}
	}
}

// TestPullSignatureCacheRekey: a rekey made on one replica ends the cached
// success of the old key on another replica (each keeps its own cache and
// compares the agent's current key), and the new key's pulls are verified
// and then cached.
func TestPullSignatureCacheRekey(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	org, tok := h.install(slackfake.Install{TeamID: "T0PSIG004"})
	c := h.register(org, tok)
	srv2, _, _, _, url2 := h.newReplica()
	ts := c.now()
	oldBody := c.pullBody(10, 0, ts)
	for i, wantHits := range []float64{0, 1} {
		if status, b := pullAt(t, url2, c.token, oldBody); status != http.StatusOK {
			t.Fatalf("pull %d on replica 2: %d %s", i, status, b)
		}
		if got := pullHits(t, srv2); got != wantHits {
			t.Fatalf("replica 2 hits after pull %d = %v, want %v", i, got, wantHits)
		}
	}

	fresh := h.newAgentKeys(org)
	status, b := c.post("/api/agent/rekey", c.token, c.rekeyBody(rekeyReq{box: fresh.box, sig: fresh.sig, nonce: randomNonce(t), ts: c.now()}))
	if status != http.StatusOK {
		t.Fatalf("rekey on replica 1: %d %s", status, b)
	}

	if status, b := pullAt(t, url2, c.token, oldBody); status != http.StatusForbidden || !strings.Contains(string(b), protocol.ErrInvalidSignature) {
		t.Fatalf("old key's cached pull after the rekey = %d %s, want 403", status, b)
	}
	c.sig = fresh.sig
	newBody := c.pullBody(10, 0, ts)
	for i, wantHits := range []float64{1, 2} {
		if status, b := pullAt(t, url2, c.token, newBody); status != http.StatusOK {
			t.Fatalf("new key's pull %d on replica 2: %d %s", i, status, b)
		}
		if got := pullHits(t, srv2); got != wantHits {
			t.Fatalf("replica 2 hits after the new key's pull %d = %v, want %v", i, got, wantHits)
		}
	}
}

// TestPullSignatureCacheOnlyPulls: identical acks (no nonce either) are
// verified every time; they never touch the pull signature cache.
func TestPullSignatureCacheOnlyPulls(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	org, tok := h.install(slackfake.Install{TeamID: "T0PSIG005"})
	c := h.register(org, tok)
	ack := c.ackBody([]string{"m-1"}, c.now())
	for i := range 3 {
		if status, _, b := do(t, http.MethodPost, c.base+"/api/inbox/ack", c.token, ack, nil); status != http.StatusOK {
			t.Fatalf("ack %d: %d %s", i, status, b)
		}
	}
	if got := pullHits(t, h.srv); got != 0 {
		t.Fatalf("identical acks counted %v pull cache hits, want 0", got)
	}
	// A cached pull signature does not authenticate an ack with the same
	// signature.
	pull := c.pullBody(10, 0, c.now())
	for range 2 {
		if status, b := c.pullRaw(pull); status != http.StatusOK {
			t.Fatalf("pull: %d %s", status, b)
		}
	}
	var pr protocol.PullRequest
	if err := json.Unmarshal(pull, &pr); err != nil {
		t.Fatal(err)
	}
	status, _, b := do(t, http.MethodPost, c.base+"/api/inbox/ack", c.token, withField(t, ack, "signature", pr.Signature), nil)
	if status != http.StatusForbidden {
		t.Fatalf("ack carrying the cached pull signature = %d %s, want 403", status, b)
	}
}
