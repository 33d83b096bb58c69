package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/slackfake"
	"github.com/sealrelay/sealrelay/internal/testredis"
	"github.com/sealrelay/sealrelay/protocol"
)

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// location GETs u without following redirects and returns the Location.
func location(t *testing.T, u string) *url.URL {
	t.Helper()
	resp, err := noRedirect.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("GET %s = %d, want 302: %s", u, resp.StatusCode, b)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

var regTokenPattern = regexp.MustCompile(`--registration-token ([A-Za-z0-9_-]{32,})`)

// e2e constants of the fake Slack app.
const e2eClientID, e2eClientSecret, e2eSigningSecret = "111.222", "fake-client-secret", "fake-signing-secret"

// e2eEnv is the environment of a broker serving the fake Slack app at fs.
func e2eEnv(t *testing.T, fs *httptest.Server) map[string]string {
	env := baseEnv(t)
	env["SEALRELAY_PUBLIC_URL"] = e2ePublicURL
	env["SEALRELAY_SLACK_CLIENT_ID"] = e2eClientID
	env["SEALRELAY_SLACK_CLIENT_SECRET"] = ""
	env["SEALRELAY_SLACK_CLIENT_SECRET_FILE"] = writeFile(t, e2eClientSecret+"\n")
	env["SEALRELAY_SLACK_SIGNING_SECRET"] = e2eSigningSecret
	env["SEALRELAY_SLACK_API_URL"] = slackfake.APIURL(fs.URL)
	env["SEALRELAY_SLACK_AUTHORIZE_URL"] = slackfake.AuthorizeURL(fs.URL)
	return env
}

const e2ePublicURL = "https://relay.example.test"

// newE2EFake returns the fake Slack and its server (closed when t ends).
func newE2EFake(t *testing.T) (*slackfake.Fake, *httptest.Server) {
	fake := slackfake.New(slackfake.Options{ClientID: e2eClientID, ClientSecret: e2eClientSecret,
		DefaultInstall: slackfake.Install{TeamID: "T0E2E", TeamName: "e2e"}})
	fs := httptest.NewServer(fake)
	t.Cleanup(fs.Close)
	return fake, fs
}

// TestServeEndToEnd runs the whole path through a broker started the way
// `broker serve` starts it (configuration from the environment), against
// the fake Slack: OAuth install → register → signed Slack event → pull →
// ack → send. It runs on the embedded store and on Redis.
func TestServeEndToEnd(t *testing.T) {
	for _, store := range []string{"embedded", "redis"} {
		t.Run(store, func(t *testing.T) {
			fake, fs := newE2EFake(t)
			env := e2eEnv(t, fs)
			if store == "redis" {
				_, prefix := testredis.New(t, "e2e")
				env["SEALRELAY_REDIS_URL"] = testredis.URL(t)
				env["SEALRELAY_REDIS_PREFIX"] = prefix
			}
			e2eFlow(t, fake, startServe(t, nil, dropEmpty(env)))
		})
	}
}

func dropEmpty(env map[string]string) map[string]string {
	for k, v := range env {
		if v == "" {
			delete(env, k)
		}
	}
	return env
}

// e2eFlow runs install → register → event → pull → ack → send, each step
// on the next of rs in turn (so with two replicas every step crosses
// replicas from the one before).
func e2eFlow(t *testing.T, fake *slackfake.Fake, rs ...*running) {
	t.Helper()
	const clientID, clientSecret, signingSecret, publicURL = e2eClientID, e2eClientSecret, e2eSigningSecret, e2ePublicURL
	step := 0
	next := func() *running { r := rs[step%len(rs)]; step++; return r }
	r := rs[0]
	api := next().baseURL

	// Install: broker → Slack authorize (consent) → broker callback
	// at the public URL, which the test maps to the listener.
	auth := location(t, api+"/slack/install")
	if q := auth.Query(); q.Get("client_id") != clientID || q.Get("redirect_uri") != publicURL+"/slack/oauth/callback" {
		t.Fatalf("authorize redirect %s", auth)
	}
	cb := location(t, auth.String())
	if !strings.HasPrefix(cb.String(), publicURL+"/slack/oauth/callback?") {
		t.Fatalf("callback %s", cb)
	}
	api = next().baseURL
	status, page := httpGet(t, api+cb.Path+"?"+cb.RawQuery)
	if status != 200 {
		t.Fatalf("callback = %d: %s", status, page)
	}
	page = html.UnescapeString(page)
	m := regTokenPattern.FindStringSubmatch(page)
	if m == nil || !strings.Contains(page, "bridge register --broker-url "+publicURL+" --org-id T0E2E") {
		t.Fatalf("install page lacks the register command:\n%s", page)
	}
	regToken := m[1]

	// Register an agent.
	agentBox, _ := crypto.GenerateBoxKeyPair()
	agentSig, _ := crypto.GenerateSigningKey()
	var reg protocol.RegisterResponse
	api = next().baseURL
	postJSON(t, api+"/api/register", "", protocol.RegisterRequest{OrgID: "T0E2E", WorkspaceID: "T0E2E",
		ServerPubkey: agentBox.Public.String(), ServerSigningPubkey: agentSig.Public().String(), RegistrationToken: regToken}, 200, &reg)

	// A signed Slack event is sealed to the agent.
	body := `{"type":"event_callback","team_id":"T0E2E","event_id":"Ev0E2E","event":{"type":"app_mention","text":"hello e2e","channel":"C1","ts":"1.2"}}`
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, []byte(signingSecret))
	fmt.Fprintf(mac, "v0:%s:%s", ts, body)
	api = next().baseURL
	req, _ := http.NewRequest(http.MethodPost, api+"/slack/events", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Slack-Request-Timestamp", ts)
	req.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/slack/events = %d", resp.StatusCode)
	}

	now := time.Now().Unix()
	maxN, wait := 10, 5
	var pulled protocol.PullResponse
	api = next().baseURL
	postJSON(t, api+"/api/inbox/pull", reg.BrokerAccessToken, protocol.PullRequest{OrgID: "T0E2E", WorkspaceID: "T0E2E",
		ProtocolVersion: protocol.Version, MaxMessages: &maxN, WaitSeconds: &wait, Timestamp: now,
		Signature: protocol.EncodeSignature(agentSig.Sign(protocol.PullSigningBytes("T0E2E", now, maxN, wait)))}, 200, &pulled)
	if len(pulled.Messages) != 1 {
		t.Fatalf("pulled %d messages", len(pulled.Messages))
	}
	env0, _, err := protocol.OpenEnvelope(pulled.Messages[0], r.cfg.SigningKey.Public(), agentBox)
	if err != nil {
		t.Fatalf("open envelope: %v", err)
	}
	if env0.Source != protocol.SourceSlack || !strings.Contains(string(env0.Payload), "hello e2e") {
		t.Fatalf("envelope %+v", env0)
	}
	ids := []string{pulled.Messages[0].MessageID}
	var acked protocol.AckResponse
	api = next().baseURL
	postJSON(t, api+"/api/inbox/ack", reg.BrokerAccessToken, protocol.AckRequest{OrgID: "T0E2E", WorkspaceID: "T0E2E",
		ProtocolVersion: protocol.Version, MessageIDs: ids, Timestamp: now,
		Signature: protocol.EncodeSignature(agentSig.Sign(protocol.AckSigningBytes("T0E2E", now, ids)))}, 200, &acked)
	if acked.Acked != 1 {
		t.Fatalf("acked %d", acked.Acked)
	}

	// Send a reply through the broker to the fake Slack.
	ct, nonce, err := agentBox.Seal([]byte(`{"text":"reply e2e"}`), r.cfg.BoxKey.Public)
	if err != nil {
		t.Fatal(err)
	}
	routing := protocol.Routing{Channel: "C1", ThreadTS: "1.2"}
	enc, nb := base64.StdEncoding.EncodeToString(ct), base64.StdEncoding.EncodeToString(nonce[:])
	var sent protocol.SendResponse
	api = next().baseURL
	postJSON(t, api+"/api/send", reg.BrokerAccessToken, protocol.SendRequest{OrgID: "T0E2E", WorkspaceID: "T0E2E",
		Action: "chat.postMessage", Routing: routing, EncryptedBody: enc, Nonce: nb, Timestamp: now,
		Signature: protocol.EncodeSignature(agentSig.Sign(protocol.SendSigningBytes("T0E2E", "chat.postMessage", now, enc, nb, routing)))}, 200, &sent)
	msgs := fake.Messages()
	if !sent.OK || len(msgs) != 1 || msgs[0].Text != "reply e2e" || msgs[0].Channel != "C1" {
		t.Fatalf("send %+v, fake holds %+v", sent, msgs)
	}

	// The plaintext never reached the logs.
	for _, r := range rs {
		logs := r.logs.String()
		for _, secret := range []string{"hello e2e", "reply e2e", regToken, reg.BrokerAccessToken, clientSecret, signingSecret} {
			if strings.Contains(logs, secret) {
				t.Errorf("logs contain %q", secret)
			}
		}
	}
}
