package brokerint_test

// Tests against the real broker package (github.com/sealrelay/sealrelay/broker)
// on the real local Redis, with the fake Slack. Only this _test file imports
// the broker; the bridge's non-test code never does.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sealrelay/sealrelay/bridge"
	"github.com/sealrelay/sealrelay/broker"
	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/slackfake"
	"github.com/sealrelay/sealrelay/internal/testredis"
	"github.com/sealrelay/sealrelay/state"
	"github.com/sealrelay/sealrelay/store/redisstore"
)

const (
	realSigningSecret = "real-broker-signing-secret"
	realClientID      = "cid-bridge"
	realClientSecret  = "cs-bridge"
)

type realBroker struct {
	t      testing.TB
	cfg    broker.Config
	keys   broker.Keys
	prefix string
	fake   *slackfake.Fake
	url    string
	rdb    *redis.Client
	srv    *httptest.Server
	inner  *broker.Server
	clock  atomic.Int64 // offset of the broker clock, ns
}

func newRealBroker(t *testing.T, opts ...func(*broker.Config)) *realBroker {
	t.Helper()
	rdb, prefix := testredis.New(t, "bridge")
	fake := slackfake.New(slackfake.Options{ClientID: realClientID, ClientSecret: realClientSecret})
	slackSrv := httptest.NewServer(fake)
	t.Cleanup(slackSrv.Close)

	box, _ := crypto.GenerateBoxKeyPair()
	sig, _ := crypto.GenerateSigningKey()
	mk, _ := crypto.RandomBytes(32)
	kr, err := crypto.NewKeyring(map[uint32][]byte{1: mk})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := redisstore.Open(rdb, prefix, redisstore.InboxOptions{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rs.Close() })
	rb := &realBroker{t: t, fake: fake, rdb: rdb, prefix: prefix, keys: broker.Keys{Box: box, Signing: sig, Keyring: kr}}
	rb.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rb.inner.Handler().ServeHTTP(w, r)
	}))
	rb.srv.Start()
	t.Cleanup(rb.srv.Close)
	rb.url = rb.srv.URL
	cfg := broker.Config{
		PublicURL: rb.url, SlackClientID: realClientID, SlackClientSecret: realClientSecret,
		SlackSigningSecret: realSigningSecret, SlackAPIURL: slackfake.APIURL(slackSrv.URL),
		SlackAuthorizeURL: slackfake.AuthorizeURL(slackSrv.URL), SendRate: broker.RateLimit{Rate: 1000, Burst: 1000},
		Now: func() time.Time { return time.Now().Add(time.Duration(rb.clock.Load())) },
	}
	for _, o := range opts {
		o(&cfg)
	}
	rb.cfg = cfg
	rb.inner, err = broker.New(cfg, rs, rs.Inbox, rb.keys, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rb.inner.Shutdown(context.Background()) })
	return rb
}

var (
	realTokenRe = regexp.MustCompile(`--registration-token ([A-Za-z0-9_-]+)`)
	realOrgRe   = regexp.MustCompile(`--org-id ([A-Za-z0-9._:-]+)`)
)

// install runs the OAuth install and returns the org id and registration
// token shown on the result page.
func (rb *realBroker) install(team string) (string, string) {
	rb.t.Helper()
	rb.fake.QueueInstall(slackfake.Install{TeamID: team, TeamName: "Bridge Test"})
	return rb.installQueued()
}

// installQueued runs the OAuth install of the installation queued at the
// fake Slack and returns the org id and registration token.
func (rb *realBroker) installQueued() (string, string) {
	rb.t.Helper()
	resp, err := http.Get(rb.url + "/slack/install")
	if err != nil {
		rb.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	page := html.UnescapeString(string(b))
	tok, org := realTokenRe.FindStringSubmatch(page), realOrgRe.FindStringSubmatch(page)
	if resp.StatusCode != 200 || tok == nil || org == nil {
		rb.t.Fatalf("install page %d lacks the register command: %.500s", resp.StatusCode, page)
	}
	return org[1], tok[1]
}

// slackEvent posts a signed Events API request to the broker.
func (rb *realBroker) slackEvent(team, channel, ts, text string) {
	rb.t.Helper()
	body, _ := json.Marshal(map[string]any{
		"type": "event_callback", "team_id": team, "api_app_id": "A1", "event_id": "Ev" + strings.ReplaceAll(ts, ".", ""),
		"event_time": time.Now().Unix(),
		"event":      map[string]any{"type": "message", "channel": channel, "user": "U1", "ts": ts, "text": text},
	})
	rb.slackPost("/slack/events", body, "application/json")
}

func (rb *realBroker) slackPost(path string, body []byte, ct string) {
	rb.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, rb.url+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	slackfake.SignRequest(req, realSigningSecret, time.Now(), body)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		rb.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		rb.t.Fatalf("slack post %s: %d %s", path, resp.StatusCode, b)
	}
}

func TestAgainstRealBroker(t *testing.T) {
	rb := newRealBroker(t)
	org, token := rb.install("T0REAL01")
	cfgPath := filepath.Join(t.TempDir(), "bridge.env")

	// Error phrases straight from the broker.
	_, err := bridge.Register(t.Context(), bridge.RegisterOptions{BrokerURL: rb.url, OrgID: "T0NOSUCH", RegistrationToken: token, ConfigPath: cfgPath})
	if err == nil || !strings.Contains(err.Error(), "org not found") {
		t.Fatalf("unknown org: %v", err)
	}
	_, err = bridge.Register(t.Context(), bridge.RegisterOptions{BrokerURL: rb.url, OrgID: org, RegistrationToken: strings.Repeat("x", 43), ConfigPath: cfgPath})
	if err == nil || !strings.Contains(err.Error(), "invalid registration token") {
		t.Fatalf("wrong token: %v", err)
	}
	if _, err := bridge.Register(t.Context(), bridge.RegisterOptions{BrokerURL: rb.url, OrgID: org, RegistrationToken: token, ConfigPath: cfgPath}); err != nil {
		t.Fatal(err)
	}
	_, err = bridge.Register(t.Context(), bridge.RegisterOptions{BrokerURL: rb.url, OrgID: org, RegistrationToken: token, ConfigPath: filepath.Join(t.TempDir(), "b.env")})
	if err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("reused token: %v", err)
	}

	id, err := bridge.LoadIdentity(cfgPath, func(string) (string, bool) { return "", false }, false)
	if err != nil {
		t.Fatal(err)
	}
	// Forward to a slack-go-verified app and stream at once.
	app, appSrv := newSlackApp(t)
	cfg := baseConfig(*id, t.TempDir())
	cfg.Stream = true
	cfg.ForwardURL = appSrv.URL + "/slack/events"
	cfg.ForwardSigningSecret = []byte(localSecret)
	ln := apiListener(t)
	cfg.ListenAddr = ln.Addr().String()
	r := start(t, cfg)
	base := serveAPI(t, ln, r.b)
	stream := firstSSEData(t, base)

	rb.slackEvent(org, "C0REAL", "1771464999.000100", "hello from slack")
	got := app.next(t)
	var cb struct {
		Event struct{ Text, Channel string } `json:"event"`
	}
	if err := json.Unmarshal(got.body, &cb); err != nil || cb.Event.Text != "hello from slack" {
		t.Fatalf("forwarded %s (%v)", got.body, err)
	}
	var ev bridge.Event
	select {
	case data := <-stream:
		if err := json.Unmarshal([]byte(data), &ev); err != nil || ev.ThreadID != "C0REAL:1771464999.000100" {
			t.Fatalf("stream event %s", data)
		}
	case <-time.After(testTimeout):
		t.Fatal("no SSE event")
	}

	// Slash command through the broker arrives as a form the app verifies.
	form := url.Values{"command": {"/ask"}, "text": {"what now"}, "channel_id": {"C0REAL"}, "team_id": {org}, "user_id": {"U1"}, "trigger_id": {"1.2.3"}}
	rb.slackPost("/slack/commands", []byte(form.Encode()), "application/x-www-form-urlencoded")
	got = app.next(t)
	if v, err := url.ParseQuery(string(got.body)); err != nil || v.Get("command") != "/ask" || v.Get("text") != "what now" {
		t.Fatalf("forwarded command %s", got.body)
	}

	// Interactivity through the broker arrives as payload=<json>.
	interaction := `{"type":"block_actions","team":{"id":"` + org + `"},"user":{"id":"U1"},"channel":{"id":"C0REAL"},"trigger_id":"1.2.3","actions":[{"action_id":"ok","block_id":"b","type":"button","value":"v & w"}]}`
	rb.slackPost("/slack/interactivity", []byte(url.Values{"payload": {interaction}}.Encode()), "application/x-www-form-urlencoded")
	got = app.next(t)
	v, err := url.ParseQuery(string(got.body))
	if err != nil {
		t.Fatal(err)
	}
	var cbk struct {
		Type    string `json:"type"`
		Actions []struct {
			Value string `json:"value"`
		} `json:"actions"`
	}
	if err := json.Unmarshal([]byte(v.Get("payload")), &cbk); err != nil || cbk.Type != "block_actions" || len(cbk.Actions) != 1 || cbk.Actions[0].Value != "v & w" {
		t.Fatalf("forwarded interaction %s (%v)", got.body, err)
	}

	// Reply through the local API lands in (fake) Slack.
	st, out := post(t, base, "/reply", `{"thread_id":"`+ev.ThreadID+`","text":"on it"}`)
	if st != 200 || out["ts"] == "" {
		t.Fatalf("reply: %d %v", st, out)
	}
	var found bool
	for _, m := range rb.fake.Messages() {
		if m.Channel == "C0REAL" && m.ThreadTS == "1771464999.000100" && m.Text == "on it" {
			found = true
		}
	}
	if !found {
		t.Fatalf("reply not in Slack: %+v", rb.fake.Messages())
	}
	st, out = post(t, base, "/react", `{"channel":"C0REAL","timestamp":"`+out["ts"].(string)+`","emoji":"eyes"}`)
	if st != 200 {
		t.Fatalf("react: %d %v", st, out)
	}
	if calls := rb.fake.CallsTo("reactions.add"); len(calls) != 1 || calls[0].Params.Get("name") != "eyes" {
		t.Fatalf("reactions.add calls %+v", calls)
	}
	r.stop(t)
	if h := r.b.Health(); h.Delivered != 3 || h.Poison != 0 {
		t.Fatalf("health %+v", h)
	}

	// Unregister, then the old credentials are refused and run says so.
	if err := bridge.Unregister(t.Context(), cfgPath, false, false, nil); err != nil {
		t.Fatal(err)
	}
	cfg2 := baseConfig(*id, t.TempDir())
	cfg2.Stream = true
	b2, err := newBridge(t, cfg2)
	if err != nil {
		t.Fatal(err)
	}
	if err := b2.Run(t.Context()); !errors.Is(err, bridge.ErrReauthenticate) {
		t.Fatalf("run after unregister: %v", err)
	}
}

// TestRealBrokerReplicaFailover runs two broker replicas on one Redis; the
// bridge is given both URLs, the replica it polls is killed, and events
// posted to the survivor still arrive.
func TestRealBrokerReplicaFailover(t *testing.T) {
	rb := newRealBroker(t)
	second := rb.replica(t)
	org, token := rb.install("T0REAL02")
	cfgPath := filepath.Join(t.TempDir(), "bridge.env")
	if _, err := bridge.Register(t.Context(), bridge.RegisterOptions{BrokerURL: rb.url + "," + second.URL, OrgID: org, RegistrationToken: token, ConfigPath: cfgPath}); err != nil {
		t.Fatal(err)
	}
	id, err := bridge.LoadIdentity(cfgPath, func(string) (string, bool) { return "", false }, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(id.BrokerURLs) != 2 {
		t.Fatalf("urls %v", id.BrokerURLs)
	}
	col := newCollector()
	cfg := baseConfig(*id, t.TempDir())
	cfg.Deliver = col.deliver
	start(t, cfg)
	rb.slackEvent(org, "C0A", "1771464999.000100", "before")
	if ev := col.next(t); !strings.Contains(string(ev.Payload), "before") {
		t.Fatalf("got %s", ev.Payload)
	}
	// Kill the first replica (the one the bridge polls), mid long-poll.
	rb.srv.CloseClientConnections()
	rb.srv.Close()
	rb.url = second.URL
	rb.slackEvent(org, "C0A", "1771464999.000200", "after")
	if ev := col.next(t); !strings.Contains(string(ev.Payload), "after") {
		t.Fatalf("got %s", ev.Payload)
	}
}

// replica starts another broker instance (its own Server, State and queue
// client) on the same Redis prefix and keys, as a second deployment replica.
func (rb *realBroker) replica(t *testing.T) *httptest.Server {
	rs, err := redisstore.Open(rb.rdb, rb.prefix, redisstore.InboxOptions{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rs.Close() })
	srv, err := broker.New(rb.cfg, rs, rs.Inbox, rb.keys, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	s := httptest.NewServer(srv.Handler())
	t.Cleanup(s.Close)
	return s
}

// TestRealBrokerExpiredAccessToken: the broker's clock passes the token's
// expiry while the bridge runs; the next pull is refused with 401 and Run
// exits telling the user to register again.
func TestRealBrokerExpiredAccessToken(t *testing.T) {
	rb := newRealBroker(t)
	org, token := rb.install("T0REAL03")
	cfgPath := filepath.Join(t.TempDir(), "bridge.env")
	if _, err := bridge.Register(t.Context(), bridge.RegisterOptions{BrokerURL: rb.url, OrgID: org, RegistrationToken: token, ConfigPath: cfgPath}); err != nil {
		t.Fatal(err)
	}
	id, err := bridge.LoadIdentity(cfgPath, func(string) (string, bool) { return "", false }, false)
	if err != nil {
		t.Fatal(err)
	}
	if id.AccessTokenExpiresAt.IsZero() {
		t.Fatal("no expiry from the broker")
	}
	col := newCollector()
	cfg := baseConfig(*id, t.TempDir())
	cfg.WaitSeconds = 1
	cfg.Deliver = col.deliver
	b, err := newBridge(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Run(context.Background()) }()
	rb.slackEvent(org, "C0X", "1771464999.000100", "before expiry")
	col.next(t)
	rb.clock.Store(int64(state.DefaultAccessTokenTTL + time.Hour))
	select {
	case err := <-done:
		if !errors.Is(err, bridge.ErrReauthenticate) || !strings.Contains(err.Error(), "bridge register") || !strings.Contains(err.Error(), "401") {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Run kept polling with an expired token")
	}
}
