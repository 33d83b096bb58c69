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

// TestServeEndToEnd runs the whole path through a broker started the way
// `broker serve` starts it (configuration from the environment), against
// the fake Slack: OAuth install → register → signed Slack event → pull →
// ack → send. It runs on the embedded store and on Redis.
func TestServeEndToEnd(t *testing.T) {
	for _, store := range []string{"embedded", "redis"} {
		t.Run(store, func(t *testing.T) {
			const clientID, clientSecret, signingSecret = "111.222", "fake-client-secret", "fake-signing-secret"
			fake := slackfake.New(slackfake.Options{ClientID: clientID, ClientSecret: clientSecret,
				DefaultInstall: slackfake.Install{TeamID: "T0E2E", TeamName: "e2e"}})
			fs := httptest.NewServer(fake)
			defer fs.Close()

			env := baseEnv(t)
			const publicURL = "https://relay.example.test"
			env["SEALRELAY_PUBLIC_URL"] = publicURL
			env["SEALRELAY_SLACK_CLIENT_ID"] = clientID
			env["SEALRELAY_SLACK_CLIENT_SECRET"] = ""
			env["SEALRELAY_SLACK_CLIENT_SECRET_FILE"] = writeFile(t, clientSecret+"\n")
			env["SEALRELAY_SLACK_SIGNING_SECRET"] = signingSecret
			env["SEALRELAY_SLACK_API_URL"] = slackfake.APIURL(fs.URL)
			env["SEALRELAY_SLACK_AUTHORIZE_URL"] = slackfake.AuthorizeURL(fs.URL)
			if store == "redis" {
				_, prefix := testredis.New(t, "e2e")
				env["SEALRELAY_REDIS_URL"] = testredis.URL(t)
				env["SEALRELAY_REDIS_PREFIX"] = prefix
			}
			for k, v := range env {
				if v == "" {
					delete(env, k)
				}
			}
			r := startServe(t, nil, env)
			api := r.baseURL

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
			postJSON(t, api+"/api/register", "", protocol.RegisterRequest{OrgID: "T0E2E", WorkspaceID: "T0E2E",
				ServerPubkey: agentBox.Public.String(), ServerSigningPubkey: agentSig.Public().String(), RegistrationToken: regToken}, 200, &reg)

			// A signed Slack event is sealed to the agent.
			body := `{"type":"event_callback","team_id":"T0E2E","event_id":"Ev0E2E","event":{"type":"app_mention","text":"hello e2e","channel":"C1","ts":"1.2"}}`
			ts := strconv.FormatInt(time.Now().Unix(), 10)
			mac := hmac.New(sha256.New, []byte(signingSecret))
			fmt.Fprintf(mac, "v0:%s:%s", ts, body)
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
			postJSON(t, api+"/api/send", reg.BrokerAccessToken, protocol.SendRequest{OrgID: "T0E2E", WorkspaceID: "T0E2E",
				Action: "chat.postMessage", Routing: routing, EncryptedBody: enc, Nonce: nb, Timestamp: now,
				Signature: protocol.EncodeSignature(agentSig.Sign(protocol.SendSigningBytes("T0E2E", "chat.postMessage", now, enc, nb, routing)))}, 200, &sent)
			msgs := fake.Messages()
			if !sent.OK || len(msgs) != 1 || msgs[0].Text != "reply e2e" || msgs[0].Channel != "C1" {
				t.Fatalf("send %+v, fake holds %+v", sent, msgs)
			}

			// The plaintext never reached the logs.
			logs := r.logs.String()
			for _, secret := range []string{"hello e2e", "reply e2e", regToken, reg.BrokerAccessToken, clientSecret, signingSecret} {
				if strings.Contains(logs, secret) {
					t.Errorf("logs contain %q", secret)
				}
			}
		})
	}
}
