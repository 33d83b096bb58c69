package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/broker"
	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/testredis"
	"github.com/sealrelay/sealrelay/protocol"
)

// e2eAgent is a bridge's keys and access token in the cmd/broker tests.
type e2eAgent struct {
	box   *crypto.BoxKeyPair
	sig   *crypto.SigningKey
	token string
}

func e2eRegister(t *testing.T, api, regToken string) *e2eAgent {
	t.Helper()
	box, _ := crypto.GenerateBoxKeyPair()
	sig, _ := crypto.GenerateSigningKey()
	var reg protocol.RegisterResponse
	postJSON(t, api+"/api/register", "", protocol.RegisterRequest{OrgID: "T0E2E", WorkspaceID: "T0E2E",
		ServerPubkey: box.Public.String(), ServerSigningPubkey: sig.Public().String(), RegistrationToken: regToken}, 200, &reg)
	return &e2eAgent{box: box, sig: sig, token: reg.BrokerAccessToken}
}

// pull pulls without waiting, expecting status; it returns the messages.
func (a *e2eAgent) pull(t *testing.T, api string, status int) []protocol.InboxMessage {
	t.Helper()
	now := time.Now().Unix()
	maxN, wait := 10, 0
	var pr protocol.PullResponse
	postJSON(t, api+"/api/inbox/pull", a.token, protocol.PullRequest{OrgID: "T0E2E", WorkspaceID: "T0E2E",
		ProtocolVersion: protocol.Version, MaxMessages: &maxN, WaitSeconds: &wait, Timestamp: now,
		Signature: protocol.EncodeSignature(a.sig.Sign(protocol.PullSigningBytes("T0E2E", now, maxN, wait)))}, status, &pr)
	return pr.Messages
}

func postSlackEvent(t *testing.T, api, eventID, text string) {
	t.Helper()
	body := `{"type":"event_callback","team_id":"T0E2E","event_id":"` + eventID + `","event":{"type":"app_mention","text":"` + text + `","channel":"C1","ts":"1.2"}}`
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, []byte(e2eSigningSecret))
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
}

var cliTokenPattern = regexp.MustCompile(`(?m)^([A-Za-z0-9_-]{32,})$`)

// TestServeReplaceFlow runs `broker serve` (embedded store and Redis,
// --agents-per-org 1, admin listener on TCP): agent A registers with the
// install page's token; `broker agents token --replace` mints a replace
// token through the admin listener; agent B registers with it; A's next
// pull is answered 401, B gets the next event, and `broker agents list`
// shows B alone.
func TestServeReplaceFlow(t *testing.T) {
	for _, store := range []string{"embedded", "redis"} {
		t.Run(store, func(t *testing.T) {
			_, fs := newE2EFake(t)
			env := e2eEnv(t, fs)
			if store == "redis" {
				_, prefix := testredis.New(t, "replace")
				env["SEALRELAY_REDIS_URL"] = testredis.URL(t)
				env["SEALRELAY_REDIS_PREFIX"] = prefix
			}
			tokenFile := writeFile(t, cliAdminToken+"\n")
			r := startServe(t, []string{"--agents-per-org", "1", "--admin-listen", "127.0.0.1:0", "--admin-token-file", tokenFile}, dropEmpty(env))
			conn := []string{"--admin-url", "http://" + r.addrs.Admin.String(), "--admin-token-file", tokenFile}
			api := r.baseURL

			cb := location(t, location(t, api+"/slack/install").String())
			status, page := httpGet(t, api+cb.Path+"?"+cb.RawQuery)
			page = html.UnescapeString(page)
			m := regTokenPattern.FindStringSubmatch(page)
			if status != 200 || m == nil || !strings.Contains(page, broker.MintReplacePath) {
				t.Fatalf("install page: %d, token %v, replace form %v", status, m != nil, strings.Contains(page, broker.MintReplacePath))
			}
			a := e2eRegister(t, api, m[1])
			postSlackEvent(t, api, "Ev0RPL1", "for A")

			out, _, err := runCLI(t, noTTY, append([]string{"agents", "token", "--replace", "--yes"}, append(conn, "T0E2E")...)...)
			if err != nil {
				t.Fatalf("agents token --replace: %v", err)
			}
			tm := cliTokenPattern.FindStringSubmatch(out)
			if tm == nil || !strings.Contains(out, "REPLACES") {
				t.Fatalf("agents token output lacks a replace token: %q", out)
			}
			if _, _, err := runCLI(t, noTTY, append([]string{"agents", "token", "--replace"}, append(conn, "T0E2E")...)...); err == nil {
				t.Fatal("agents token --replace without a terminal or --yes did not refuse")
			}
			b := e2eRegister(t, api, tm[1])
			_ = a.pull(t, api, http.StatusUnauthorized)
			postSlackEvent(t, api, "Ev0RPL2", "for B")
			msgs := b.pull(t, api, http.StatusOK)
			if len(msgs) != 1 {
				t.Fatalf("B pulled %d messages, want the one event after the replacement", len(msgs))
			}
			env0, _, err := protocol.OpenEnvelope(msgs[0], r.cfg.SigningKey.Public(), b.box)
			if err != nil || !strings.Contains(string(env0.Payload), "for B") {
				t.Fatalf("B's message: %v", err)
			}
			out, _, err = runCLI(t, noTTY, append([]string{"agents", "list", "--json"}, conn...)...)
			if err != nil {
				t.Fatal(err)
			}
			var list []broker.AgentView
			if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 {
				t.Fatalf("agents list after replace: %q %v", out, err)
			}
			if strings.Contains(r.logs.String(), tm[1]) {
				t.Fatal("the replace token is in the log")
			}
		})
	}
}

// TestAgentsTokenCLIErrors: usage errors of `broker agents token`.
func TestAgentsTokenCLIErrors(t *testing.T) {
	t.Parallel()
	f := newBoltFixture(t)
	_, prefix := testredis.New(t, "tokencli")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no org", []string{"agents", "token"}, "want exactly one ORG"},
		{"bad org", []string{"agents", "token", "--yes", "bad org"}, "ORG"},
		{"replace on list", []string{"agents", "list", "--replace"}, "--replace is a flag of"},
		{"direct redis cannot mint", []string{"agents", "token", "--redis-url", testredis.URL(t), "--redis-prefix", prefix, "T0X"}, "admin listener"},
		{"detached admin", append([]string{"agents", "token"}, append(f.conn(), "T0X")...), "501"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := runCLI(t, noTTY, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
