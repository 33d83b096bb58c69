package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/internal/slackfake"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
)

// The only tokens the Socket Mode apps under test are given: any strings
// work, the real bot token stays on the broker.
const (
	smAppToken = "xapp-not-a-real-token"
	smBotToken = "xoxb-not-a-real-token"
)

// startBridgeWith runs `bridge run` with the agent's config, state
// directory and a fresh local API port, plus args (the sink flags).
func (ag *agent) startBridgeWith(args ...string) {
	e := ag.e
	t := e.t
	t.Helper()
	for attempt := 0; attempt < 3; attempt++ {
		ag.bridgePort = freePort(t)
		ag.bridgeRuns++
		listen := fmt.Sprintf("127.0.0.1:%d", ag.bridgePort)
		p := startProc(t, fmt.Sprintf("bridge %s run #%d", ag.name, ag.bridgeRuns), filepath.Join(e.dir, "bridge-"+ag.name+".log"), minimalEnv(e.dir), bridgeBin,
			append([]string{"run",
				"--config", ag.bridgeCfg,
				"--state-dir", filepath.Join(ag.bridgeDir, "state"),
				"--listen", listen,
				"--log-format", "json",
			}, args...)...)
		if waitHTTP("http://"+listen+"/health", p, 15*time.Second) {
			ag.bridge = p
			ag.bridgeAPI = "http://" + listen
			return
		}
		p.stop(t)
		if !strings.Contains(p.log(), "address already in use") {
			t.Fatalf("bridge did not become ready:\n%s", p.tail(40))
		}
	}
	t.Fatal("bridge: no free port after 3 attempts")
}

// startSocketBridge runs `bridge run --socket-mode --stream=false` at the
// info log level (startSocketModeBridge logs at debug level, which the
// measurements would pay for): events wait at the broker until an app
// connects.
func (ag *agent) startSocketBridge() { ag.startBridgeWith("--socket-mode", "--stream=false") }

// startForwardBridge runs `bridge run` forwarding to forwardURL, signed
// with the forward secret.
func (ag *agent) startForwardBridge(forwardURL string) {
	secretFile := filepath.Join(ag.e.dir, "forward-secret")
	if err := os.WriteFile(secretFile, []byte(forwardSecret+"\n"), 0o600); err != nil {
		ag.e.t.Fatal(err)
	}
	ag.startBridgeWith("--forward-url", forwardURL, "--forward-signing-secret-file", secretFile)
}

// smReceipt is one request a Socket Mode app received.
type smReceipt struct {
	kind  string // events_api type (app_mention) or interaction/command kind
	id    string // event id, command text or view note
	retry int    // the envelope's retry_attempt
	at    time.Time
}

// smGoApp is a Slack app written with slack-go's socketmode package the way
// docs/clients.md tells users to point theirs at the bridge:
// socketmode.New(slack.New(anyBotToken, slack.OptionAppLevelToken(anyAppToken),
// slack.OptionAPIURL("http://127.0.0.1:7890/api/"))). Its handlers answer
// in the ack, as bolt/socket.js does.
type smGoApp struct {
	api    *slack.Client
	smc    *socketmode.Client
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	connected int // connections the client made (hello received)
	received  []smReceipt
	calls     []goCall
	errs      []string
	changed   chan struct{}
	// beforeAck, when set, is called with a slash command's text before
	// the app acks it (a slow app).
	beforeAck func(text string)
}

// startSMGoApp connects a slack-go Socket Mode app to the bridge whose Web
// API is at apiURL and waits until the bridge said hello.
func startSMGoApp(t *testing.T, apiURL string) *smGoApp {
	t.Helper()
	a := &smGoApp{changed: make(chan struct{})}
	a.api = slack.New(smBotToken, slack.OptionAppLevelToken(smAppToken), slack.OptionAPIURL(apiURL), slack.OptionRetry(0))
	a.smc = socketmode.New(a.api)
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.wg.Go(func() {
		if err := a.smc.RunContext(ctx); err != nil && ctx.Err() == nil {
			a.note(func() { a.errs = append(a.errs, "run: "+err.Error()) })
		}
	})
	a.wg.Go(func() { a.loop(ctx) })
	t.Cleanup(a.stop)
	a.wait(t, "the slack-go Socket Mode app to connect", 20*time.Second, func() bool { return a.connected > 0 })
	return a
}

// stop disconnects the app and waits for its goroutines.
func (a *smGoApp) stop() {
	a.cancel()
	a.wg.Wait()
}

func (a *smGoApp) note(f func()) {
	a.mu.Lock()
	f()
	close(a.changed)
	a.changed = make(chan struct{})
	a.mu.Unlock()
}

// wait waits until cond (called with a.mu held) holds; it fails the test
// when d passes first.
func (a *smGoApp) wait(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		a.mu.Lock()
		ok := cond()
		changed, errs := a.changed, append([]string(nil), a.errs...)
		a.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			t.Fatalf("timed out after %s waiting for %s (slack-go errors: %q)", d, what, errs)
		}
	}
}

// snapshot returns what the app received so far.
func (a *smGoApp) snapshot() []smReceipt {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]smReceipt(nil), a.received...)
}

// loop handles the client's events: every envelope is acked, commands and
// the interactions Slack reads the answer of with a payload.
func (a *smGoApp) loop(ctx context.Context) {
	for {
		var evt socketmode.Event
		select {
		case <-ctx.Done():
			return
		case evt = <-a.smc.Events:
		}
		at := time.Now()
		switch evt.Type {
		case socketmode.EventTypeConnected:
			a.note(func() { a.connected++ })
		case socketmode.EventTypeInvalidAuth, socketmode.EventTypeConnectionError, socketmode.EventTypeErrorBadMessage:
			a.note(func() { a.errs = append(a.errs, fmt.Sprintf("%s: %v", evt.Type, evt.Data)) })
		case socketmode.EventTypeEventsAPI:
			a.onEvent(ctx, evt, at)
		case socketmode.EventTypeSlashCommand:
			cmd, _ := evt.Data.(slack.SlashCommand)
			a.mu.Lock()
			before := a.beforeAck
			a.mu.Unlock()
			if before != nil {
				before(cmd.Text)
			}
			a.ack(evt, map[string]any{"response_type": "ephemeral", "text": "slack-go: ack for " + cmd.Text})
			a.record(smReceipt{kind: "slash_command", id: cmd.Text, at: at}, evt)
		case socketmode.EventTypeInteractive:
			cb, _ := evt.Data.(slack.InteractionCallback)
			switch cb.Type {
			case slack.InteractionTypeViewSubmission:
				note := cb.View.State.Values["note"]["note_input"].Value
				a.ack(evt, map[string]any{"response_action": "errors",
					"errors": map[string]string{"note": fmt.Sprintf("slack-go: %q is not allowed", note)}})
				a.record(smReceipt{kind: "view_submission", id: note, at: at}, evt)
			case slack.InteractionTypeBlockSuggestion:
				a.ack(evt, map[string]any{"options": []map[string]any{{
					"text": map[string]string{"type": "plain_text", "text": "slack-go: " + cb.Value}, "value": "v1"}}})
				a.record(smReceipt{kind: "block_suggestion", id: cb.Value, at: at}, evt)
			default:
				a.ack(evt, nil)
				id := ""
				if len(cb.ActionCallback.BlockActions) > 0 {
					id = cb.ActionCallback.BlockActions[0].ActionID
				}
				a.record(smReceipt{kind: string(cb.Type), id: id, at: at}, evt)
			}
		}
	}
}

func (a *smGoApp) ack(evt socketmode.Event, payload any) {
	if evt.Request == nil {
		return
	}
	var err error
	if payload == nil {
		err = a.smc.Ack(*evt.Request)
	} else {
		err = a.smc.Ack(*evt.Request, payload)
	}
	if err != nil {
		a.note(func() { a.errs = append(a.errs, "ack: "+err.Error()) })
	}
}

func (a *smGoApp) record(r smReceipt, evt socketmode.Event) {
	if evt.Request != nil {
		r.retry = evt.Request.RetryAttempt
	}
	a.note(func() { a.received = append(a.received, r) })
}

// onEvent acks an Events API envelope, records it and answers an
// app_mention with a threaded reply through the bridge's Web API.
func (a *smGoApp) onEvent(ctx context.Context, evt socketmode.Event, at time.Time) {
	a.ack(evt, nil)
	var outer struct {
		EventID string `json:"event_id"`
		Event   struct {
			Type    string `json:"type"`
			Channel string `json:"channel"`
			TS      string `json:"ts"`
		} `json:"event"`
	}
	if evt.Request != nil {
		_ = json.Unmarshal(evt.Request.Payload, &outer)
	}
	a.record(smReceipt{kind: outer.Event.Type, id: outer.EventID, at: at}, evt)
	if outer.Event.Type != "app_mention" || strings.HasPrefix(outer.EventID, "Ev0LAT") {
		return
	}
	a.wg.Go(func() {
		ch, ts, err := a.api.PostMessageContext(ctx, outer.Event.Channel, slack.MsgOptionText("slack-go: threaded reply", false), slack.MsgOptionTS(outer.Event.TS))
		a.note(func() {
			a.calls = append(a.calls, goCall{method: "chat.postMessage", err: err, detail: map[string]string{"channel": ch, "ts": ts}})
		})
	})
}

// syncAnswer is the HTTP response a Slack request received from the
// broker.
type syncAnswer struct {
	status      int
	contentType string
	body        []byte
	took        time.Duration
}

// json decodes the answer's body; an empty body is nil.
func (a syncAnswer) json(t testing.TB) map[string]any {
	t.Helper()
	if len(a.body) == 0 {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(a.body, &m); err != nil {
		t.Fatalf("the broker answered Slack with %q (%s), not a JSON object: %v", a.body, a.contentType, err)
	}
	return m
}

// syncClient is Slack's side: it gives up after 3 s, as Slack does.
var syncClient = &http.Client{Timeout: 3 * time.Second}

// postSync posts body to path on replica r signed like Slack signs it and
// returns the broker's HTTP response, which is what Slack would show.
func postSync(r *replica, path, contentType string, body []byte) (syncAnswer, error) {
	req, err := http.NewRequest(http.MethodPost, r.url+path, bytes.NewReader(body))
	if err != nil {
		return syncAnswer{}, err
	}
	req.Header.Set("Content-Type", contentType)
	slackfake.SignRequest(req, signingSecret, time.Now(), body)
	t0 := time.Now()
	resp, err := syncClient.Do(req)
	if err != nil {
		return syncAnswer{}, fmt.Errorf("post %s to %s: %w", path, r.name, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	took := time.Since(t0)
	if err != nil {
		return syncAnswer{}, fmt.Errorf("post %s to %s: reading the answer: %w", path, r.name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return syncAnswer{}, fmt.Errorf("post %s to %s: %s %s", path, r.name, resp.Status, answer)
	}
	return syncAnswer{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), body: answer, took: took}, nil
}

// commandBody is a signed slash command's form body.
func (e *env) commandBody(command, text, channel, triggerID string) []byte {
	return []byte(url.Values{"command": {command}, "text": {text}, "team_id": {e.orgID}, "team_domain": {"e2e"},
		"user_id": {"U0HUMAN"}, "user_name": {"human"}, "channel_id": {channel}, "channel_name": {"apps"},
		"api_app_id": {"A0FAKE001"}, "token": {"e2e-verification"}, "trigger_id": {triggerID},
		"response_url": {"https://hooks.slack.invalid/commands/1"}}.Encode())
}

// interactionBody is an interactivity request's form body (payload=<json>).
func interactionBody(payload map[string]any) []byte {
	b, err := json.Marshal(payload)
	if err != nil {
		panic(err)
	}
	return []byte(url.Values{"payload": {string(b)}}.Encode())
}

// syncCommand posts a slash command and returns Slack's response.
func (e *env) syncCommand(r *replica, text, triggerID string) (syncAnswer, error) {
	return postSync(r, "/slack/commands", "application/x-www-form-urlencoded", e.commandBody("/relay", text, appsChannel, triggerID))
}

// syncInteraction posts an interaction and returns Slack's response.
func (e *env) syncInteraction(r *replica, payload map[string]any) (syncAnswer, error) {
	return postSync(r, "/slack/interactivity", "application/x-www-form-urlencoded", interactionBody(payload))
}

// blockSuggestionPayload asks for the options of the external select
// action "pick" while the user typed value.
func (e *env) blockSuggestionPayload(value string) map[string]any {
	return map[string]any{
		"type": "block_suggestion", "token": "e2e-verification", "api_app_id": "A0FAKE001",
		"team":      map[string]any{"id": e.orgID, "domain": "e2e"},
		"user":      map[string]any{"id": "U0HUMAN", "username": "human", "team_id": e.orgID},
		"container": map[string]any{"type": "view", "view_id": "V0APPS0001"},
		"action_id": "pick", "block_id": "pick_block", "value": value,
		"view": map[string]any{"id": "V0APPS0001", "type": "modal", "callback_id": "relay_modal", "team_id": e.orgID},
	}
}

// waitReceived waits for the first request of kind whose id is id ("" for
// any) and returns it.
func (a *smGoApp) waitReceived(t testing.TB, kind, id string) smReceipt {
	t.Helper()
	var got smReceipt
	a.wait(t, "the slack-go Socket Mode app to receive "+kind+" "+id, 20*time.Second, func() bool {
		for _, r := range a.received {
			if r.kind == kind && (id == "" || r.id == id) {
				got = r
				return true
			}
		}
		return false
	})
	return got
}

// waitCall waits for the app's first chat.postMessage and fails the test
// unless it succeeded.
func (a *smGoApp) waitCall(t testing.TB, method string) map[string]string {
	t.Helper()
	var c goCall
	a.wait(t, "the slack-go Socket Mode app's "+method, 20*time.Second, func() bool {
		for _, x := range a.calls {
			if x.method == method {
				c = x
				return true
			}
		}
		return false
	})
	if c.err != nil {
		t.Fatalf("slack-go Socket Mode app: %s failed: %v", method, c.err)
	}
	return c.detail
}

// prime posts an event through replica r and waits until the app has it.
// The broker holds a request only once an agent declared inbox.respond in
// a pull (protocol §8.2), and the bridge's first pull may still be on its
// way when the app has connected; the pull that brought this event had
// declared it, so requests posted after prime are held.
func (a *smGoApp) prime(t *testing.T, e *env, r *replica) {
	t.Helper()
	id := "Ev0PRIME" + randHex(t, 4)
	if err := e.postSlackEvent(r, id, map[string]any{"type": "reaction_added", "user": "U0HUMAN", "reaction": "eyes",
		"item": map[string]any{"type": "message", "channel": appsChannel, "ts": mentionTS}, "event_ts": mentionTS}); err != nil {
		t.Fatal(err)
	}
	a.waitReceived(t, "reaction_added", id)
}
