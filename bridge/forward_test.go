package bridge_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"

	"github.com/sealrelay/sealrelay/bridge"
	"github.com/sealrelay/sealrelay/bridge/bridgetest"
	"github.com/sealrelay/sealrelay/protocol"
)

const localSecret = "8f742231b10e8888abcd99yyyzzz85a5"

// slackApp is a local Slack app that verifies every request with slack-go's
// SecretsVerifier, as an unmodified app would.
type slackApp struct {
	t        testing.TB
	mu       sync.Mutex
	status   []int // answers to give, in order (then 200)
	got      chan appRequest
	rejected int
	rejects  chan struct{}
}

type appRequest struct {
	path        string
	contentType string
	body        []byte
}

func newSlackApp(t testing.TB) (*slackApp, *httptest.Server) {
	a := &slackApp{t: t, got: make(chan appRequest, 100), rejects: make(chan struct{}, 100)}
	srv := httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(srv.Close)
	return a, srv
}

func (a *slackApp) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	sv, err := slack.NewSecretsVerifier(r.Header, localSecret)
	if err == nil {
		_, _ = sv.Write(body)
		err = sv.Ensure()
	}
	a.mu.Lock()
	if err != nil {
		a.rejected++
		a.mu.Unlock()
		a.rejects <- struct{}{}
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	st := 200
	if len(a.status) > 0 {
		st, a.status = a.status[0], a.status[1:]
	}
	a.mu.Unlock()
	if st == 200 {
		a.got <- appRequest{path: r.URL.Path, contentType: r.Header.Get("Content-Type"), body: body}
	}
	w.WriteHeader(st)
}

func (a *slackApp) next(t testing.TB) appRequest {
	t.Helper()
	select {
	case r := <-a.got:
		return r
	case <-time.After(testTimeout):
		t.Fatal("local app received nothing")
		return appRequest{}
	}
}

func TestForwardModeVerifiedBySlackGo(t *testing.T) {
	fb := bridgetest.New(t, testOrg)
	id := newIdentity(t, fb)
	app, srv := newSlackApp(t)
	cfg := baseConfig(t, id, t.TempDir())
	cfg.ForwardURL = srv.URL + "/slack/events"
	cfg.ForwardInteractivityURL = srv.URL + "/slack/interactivity"
	cfg.ForwardSigningSecret = []byte(localSecret)
	start(t, cfg)

	// Events API.
	fb.Enqueue(slackEvent("hello & <you>", "C1", "1771464999.000100"))
	req := app.next(t)
	if req.path != "/slack/events" || req.contentType != "application/json" {
		t.Fatalf("event forwarded to %s as %s", req.path, req.contentType)
	}
	ev, err := slackevents.ParseEvent(json.RawMessage(req.body), slackevents.OptionNoVerifyToken())
	if err != nil {
		t.Fatal(err)
	}
	msg, ok := ev.InnerEvent.Data.(*slackevents.MessageEvent)
	if !ok || msg.Text != "hello & <you>" || msg.Channel != "C1" {
		t.Fatalf("inner event %#v", ev.InnerEvent.Data)
	}

	// Interactivity: payload=<json>.
	interaction := `{"type":"block_actions","team":{"id":"T0123ABCD"},"user":{"id":"U1"},"channel":{"id":"C9"},"actions":[{"action_id":"approve","block_id":"b","type":"button","value":"yes & no"}],"message":{"ts":"1.2","text":"q"}}`
	fb.Enqueue(protocol.Envelope{Source: "slack", Type: "block_actions", BrokerTimestamp: time.Now().Unix(), Payload: json.RawMessage(interaction)})
	req = app.next(t)
	if req.path != "/slack/interactivity" || req.contentType != "application/x-www-form-urlencoded" {
		t.Fatalf("interaction forwarded to %s as %s", req.path, req.contentType)
	}
	form, err := url.ParseQuery(string(req.body))
	if err != nil {
		t.Fatal(err)
	}
	var cb slack.InteractionCallback
	if err := json.Unmarshal([]byte(form.Get("payload")), &cb); err != nil {
		t.Fatal(err)
	}
	if cb.Type != slack.InteractionTypeBlockActions || cb.ActionCallback.BlockActions[0].Value != "yes & no" || cb.Channel.ID != "C9" {
		t.Fatalf("interaction %+v", cb)
	}

	// Slash command: form fields.
	cmd := `{"command":"/deploy","text":"prod now","channel_id":"C7","user_id":"U2","team_id":"T0123ABCD","response_url":"https://hooks.slack.com/commands/x","trigger_id":"1.2.3"}`
	fb.Enqueue(protocol.Envelope{Source: "slack", Type: protocol.TypeSlashCommand, BrokerTimestamp: time.Now().Unix(), Payload: json.RawMessage(cmd)})
	req = app.next(t)
	if req.path != "/slack/events" || req.contentType != "application/x-www-form-urlencoded" {
		t.Fatalf("command forwarded to %s as %s", req.path, req.contentType)
	}
	hr := httptest.NewRequest(http.MethodPost, "/", nil)
	hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	hr.Body = io.NopCloser(stringsReader(string(req.body)))
	sc, err := slack.SlashCommandParse(hr)
	if err != nil {
		t.Fatal(err)
	}
	if sc.Command != "/deploy" || sc.Text != "prod now" || sc.ChannelID != "C7" {
		t.Fatalf("slash command %+v", sc)
	}

	// A slash command whose payload is not an object cannot be forwarded:
	// it is skipped (and acked), not retried forever.
	fb.Enqueue(protocol.Envelope{Source: "slack", Type: protocol.TypeSlashCommand, BrokerTimestamp: time.Now().Unix(), Payload: json.RawMessage(`"not an object"`)})

	// A system message is acked but not forwarded.
	fb.Enqueue(protocol.Envelope{Source: "system", Type: "notice", BrokerTimestamp: time.Now().Unix(), Payload: json.RawMessage(`{}`)})
	waitFor(t, fb, "all acked", func() bool { return fb.Pending() == 0 })
	select {
	case r := <-app.got:
		t.Fatalf("system message forwarded to %s", r.path)
	default:
	}
	if app.rejected != 0 {
		t.Fatalf("slack-go rejected %d forwarded requests", app.rejected)
	}
}

func TestForwardWrongSecretIsRejectedAndNotAcked(t *testing.T) {
	fb := bridgetest.New(t, testOrg)
	id := newIdentity(t, fb)
	app, srv := newSlackApp(t)
	cfg := baseConfig(t, id, t.TempDir())
	cfg.ForwardURL = srv.URL
	cfg.ForwardSigningSecret = []byte("not-the-app-secret")
	r := start(t, cfg)
	fb.Enqueue(slackEvent("x", "C1", "1.1"))
	// Several failed attempts prove retrying without ack.
	for i := 0; i < 3; i++ {
		select {
		case <-app.rejects:
		case <-time.After(testTimeout):
			t.Fatal("no retry")
		}
	}
	r.stop(t)
	if fb.Pending() != 1 || len(fb.Acked()) != 0 {
		t.Fatalf("rejected delivery was acked: %v", fb.Acked())
	}
}

func TestForwardRetriesUntil2xx(t *testing.T) {
	fb := bridgetest.New(t, testOrg)
	id := newIdentity(t, fb)
	app, srv := newSlackApp(t)
	app.status = []int{500, 404, 302}
	cfg := baseConfig(t, id, t.TempDir())
	cfg.ForwardURL = srv.URL
	cfg.ForwardSigningSecret = []byte(localSecret)
	cfg.Stream = true // both sinks: the stream must see the event once
	r := start(t, cfg)
	mid := fb.Enqueue(slackEvent("x", "C1", "1.1"))
	app.next(t)
	waitFor(t, fb, "ack", func() bool { return fb.Pending() == 0 })
	if got := fb.Acked(); !equalStrings(got, []string{mid}) {
		t.Fatalf("acked %v", got)
	}
	r.stop(t)
	if h := r.b.Health(); h.StreamBuffered != 1 || h.Delivered != 1 {
		t.Fatalf("stream saw the event %d times (delivered %d)", h.StreamBuffered, h.Delivered)
	}
}

func TestSlackSignatureKnownAnswer(t *testing.T) {
	// Slack's documented example (api.slack.com/authentication/verifying-requests-from-slack).
	body := "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
	got := bridge.SlackSignature([]byte("8f742231b10e8888abcd99yyyzzz85a5"), 1531420618, []byte(body))
	if got != "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503" {
		t.Fatalf("signature %s", got)
	}
}
