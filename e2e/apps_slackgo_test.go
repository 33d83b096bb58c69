package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
)

// goApp is a Slack app written with slack-go the way docs/clients.md tells
// users to point theirs at the bridge: slack.New(anyToken,
// slack.OptionAPIURL("http://127.0.0.1:7890/api/")) for the Web API and the
// bridge's forward signing secret for slack.NewSecretsVerifier. It handles
// the same events, command and interactions as the Bolt app
// (apps/bolt/app.js) and records what each Web API call answered.
type goApp struct {
	api    *slack.Client
	secret string
	srv    *httptest.Server
	wg     sync.WaitGroup

	mu       sync.Mutex
	received []string
	calls    []goCall
	badSig   int
	changed  chan struct{}
}

// goCall is one Web API call the app made and its outcome.
type goCall struct {
	method string
	err    error
	detail map[string]string
}

// newGoApp starts the app's HTTP endpoint; its Web API client is set with
// useAPI once the bridge's address is known.
func newGoApp(t *testing.T, secret string) *goApp {
	a := &goApp{secret: secret, changed: make(chan struct{})}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(func() {
		a.srv.Close()
		a.wg.Wait()
	})
	return a
}

// useAPI points the app's slack-go client at apiURL with a token that is
// not the bot token, exactly as docs/clients.md says.
func (a *goApp) useAPI(apiURL string) {
	a.api = slack.New(appToken, slack.OptionAPIURL(apiURL), slack.OptionRetry(0))
}

// eventsURL is where the bridge forwards to.
func (a *goApp) eventsURL() string { return a.srv.URL + "/slack/events" }

func (a *goApp) note(kind string, c *goCall) {
	a.mu.Lock()
	if kind != "" {
		a.received = append(a.received, kind)
	}
	if c != nil {
		a.calls = append(a.calls, *c)
	}
	close(a.changed)
	a.changed = make(chan struct{})
	a.mu.Unlock()
}

func (a *goApp) record(method string, err error, detail map[string]string) {
	a.note("", &goCall{method: method, err: err, detail: detail})
}

// serve verifies the forwarded request like a Slack app must, answers at
// once (Slack's 3-second rule), and handles it in the background.
func (a *goApp) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	sv, err := slack.NewSecretsVerifier(r.Header, a.secret)
	if err == nil {
		_, _ = sv.Write(body)
		err = sv.Ensure()
	}
	if err != nil {
		a.mu.Lock()
		a.badSig++
		a.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var handle func(context.Context)
	if r.Header.Get("Content-Type") == "application/x-www-form-urlencoded" {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		if form.Has("command") {
			req := r.Clone(r.Context())
			req.Body = io.NopCloser(bytes.NewReader(body))
			cmd, err := slack.SlashCommandParse(req)
			if err != nil {
				http.Error(w, "bad command", http.StatusBadRequest)
				return
			}
			handle = func(ctx context.Context) { a.onCommand(ctx, cmd) }
		} else {
			var cb slack.InteractionCallback
			if err := json.Unmarshal([]byte(form.Get("payload")), &cb); err != nil {
				http.Error(w, "bad payload", http.StatusBadRequest)
				return
			}
			handle = func(ctx context.Context) { a.onInteraction(ctx, &cb) }
		}
	} else {
		ev, err := slackevents.ParseEvent(json.RawMessage(body), slackevents.OptionNoVerifyToken())
		if err != nil {
			http.Error(w, "bad event", http.StatusBadRequest)
			return
		}
		handle = func(ctx context.Context) { a.onEvent(ctx, ev) }
	}
	w.WriteHeader(http.StatusOK)
	a.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		handle(ctx)
	})
}

func (a *goApp) onEvent(ctx context.Context, ev slackevents.EventsAPIEvent) {
	switch e := ev.InnerEvent.Data.(type) {
	case *slackevents.AppMentionEvent:
		a.note("app_mention", nil)
		ch, ts, err := a.api.PostMessageContext(ctx, e.Channel, slack.MsgOptionText("slack-go: threaded reply", false), slack.MsgOptionTS(e.TimeStamp))
		a.record("chat.postMessage", err, map[string]string{"channel": ch, "ts": ts})
		err = a.api.AddReactionContext(ctx, "eyes", slack.NewRefToMessage(e.Channel, e.TimeStamp))
		a.record("reactions.add", err, nil)
		msgs, _, _, err := a.api.GetConversationRepliesContext(ctx, &slack.GetConversationRepliesParameters{ChannelID: e.Channel, Timestamp: e.TimeStamp})
		a.record("conversations.replies", err, map[string]string{"messages": fmt.Sprint(len(msgs))})
	case *slackevents.MessageEvent:
		if e.ChannelType != "im" || e.SubType != "" {
			return
		}
		a.note("message.im", nil)
		_, ts, err := a.api.StartStreamContext(ctx, e.Channel, slack.MsgOptionTS(e.TimeStamp), slack.MsgOptionMarkdownText("Thinking"))
		a.record("chat.startStream", err, map[string]string{"ts": ts})
		if err != nil {
			return
		}
		_, _, err = a.api.AppendStreamContext(ctx, e.Channel, ts, slack.MsgOptionMarkdownText(" about it"))
		a.record("chat.appendStream", err, nil)
		_, _, err = a.api.StopStreamContext(ctx, e.Channel, ts, slack.MsgOptionMarkdownText(". Done."))
		a.record("chat.stopStream", err, nil)
	}
}

func (a *goApp) onCommand(ctx context.Context, cmd slack.SlashCommand) {
	a.note("slash_command", nil)
	button := slack.NewButtonBlockElement("approve", "yes", slack.NewTextBlockObject(slack.PlainTextType, "Approve", false, false))
	ch, ts, err := a.api.PostMessageContext(ctx, cmd.ChannelID, slack.MsgOptionText("slack-go: approve?", false),
		slack.MsgOptionBlocks(slack.NewActionBlock("relay_actions", button)))
	a.record("chat.postMessage", err, map[string]string{"channel": ch, "ts": ts})
}

func (a *goApp) onInteraction(ctx context.Context, cb *slack.InteractionCallback) {
	switch cb.Type {
	case slack.InteractionTypeBlockActions:
		a.note("block_actions", nil)
		input := slack.NewInputBlock("note", slack.NewTextBlockObject(slack.PlainTextType, "Note", false, false), nil,
			slack.NewPlainTextInputBlockElement(nil, "note_input"))
		view := slack.ModalViewRequest{Type: slack.VTModal, CallbackID: "relay_modal", PrivateMetadata: cb.Channel.ID,
			Title:  slack.NewTextBlockObject(slack.PlainTextType, "Relay", false, false),
			Submit: slack.NewTextBlockObject(slack.PlainTextType, "Send", false, false),
			Blocks: slack.Blocks{BlockSet: []slack.Block{input}}}
		res, err := a.api.OpenViewContext(ctx, cb.TriggerID, view)
		id := ""
		if res != nil {
			id = res.View.ID
		}
		a.record("views.open", err, map[string]string{"view_id": id})
	case slack.InteractionTypeViewSubmission:
		a.note("view_submission", nil)
		note := cb.View.State.Values["note"]["note_input"].Value
		ch, ts, err := a.api.PostMessageContext(ctx, cb.View.PrivateMetadata, slack.MsgOptionText("slack-go: submitted "+note, false))
		a.record("chat.postMessage", err, map[string]string{"channel": ch, "ts": ts, "note": note})
	}
}

// waitCall waits for the (after+1)-th call of method and fails the test
// unless it succeeded.
func (a *goApp) waitCall(t *testing.T, method string, after int) map[string]string {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		a.mu.Lock()
		n := 0
		for _, c := range a.calls {
			if c.method != method {
				continue
			}
			if n++; n > after {
				a.mu.Unlock()
				if c.err != nil {
					t.Fatalf("slack-go app: %s failed: %v", method, c.err)
				}
				return c.detail
			}
		}
		changed := a.changed
		a.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("timed out waiting for the slack-go app's %s call", method)
		}
	}
}

// snapshot returns what the app received and how many forwards failed
// signature verification.
func (a *goApp) snapshot() (received []string, badSig int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.received...), a.badSig
}
