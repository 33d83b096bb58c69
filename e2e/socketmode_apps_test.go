package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/internal/slackfake"
)

// syncApp is a Slack app that answers in its acks (bolt/socket.js, or the
// slack-go socketmode app): the scenario waits for what it received and for
// the reply it posted through the bridge's Web API.
type syncApp interface {
	waitKind(t *testing.T, kind string)
	waitReply(t *testing.T) map[string]string
}

// boltSync adapts socket.js's JSON reports.
type boltSync struct{ *jsonApp }

func (b boltSync) waitKind(t *testing.T, kind string) {
	t.Helper()
	b.waitLine(t, "a "+kind, 20*time.Second, func(m map[string]any) bool { return m["kind"] == "received" && m["type"] == kind })
}

func (b boltSync) waitReply(t *testing.T) map[string]string {
	t.Helper()
	return boltApp(b).call(t, "chat.postMessage", 0)
}

// smGoSync adapts the slack-go Socket Mode app.
type smGoSync struct{ *smGoApp }

func (a smGoSync) waitKind(t *testing.T, kind string) { t.Helper(); a.waitReceived(t, kind, "") }

func (a smGoSync) waitReply(t *testing.T) map[string]string {
	t.Helper()
	return a.waitCall(t, "chat.postMessage")
}

// startBolt starts bolt/socket.js with the given receiver ("socket" or
// "http" on port) and waits until it is connected (Socket Mode: the bridge's
// hello) and auth.test through the bridge answered the bot identity.
func startBolt(t *testing.T, e *env, receiver string, port int) *jsonApp {
	t.Helper()
	node := requireBolt(t)
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + e.dir, "NODE_ENV=production",
		"RECEIVER=" + receiver, "SLACK_API_URL=" + e.apiURL(),
		"SLACK_APP_TOKEN=" + smAppToken, "SLACK_BOT_TOKEN=" + smBotToken}
	if receiver == "http" {
		env = append(env, "SIGNING_SECRET="+forwardSecret, "PORT="+strconv.Itoa(port))
	}
	app := startJSONApp(t, "bolt "+receiver+" app", boltDir, e.dir+"/bolt-"+receiver+".log", env, node, "socket.js")
	l := app.waitLine(t, "Bolt to start", 20*time.Second, func(m map[string]any) bool {
		return m["kind"] == "ready" || m["kind"] == "fatal"
	})
	if l["kind"] != "ready" {
		if strings.Contains(fmt.Sprint(l["code"], l["message"]), "EADDRINUSE") {
			app.stop(t)
			return nil
		}
		t.Fatalf("Bolt (%s receiver) did not start: %v", receiver, l)
	}
	if l["user_id"] != botUserID || l["team_id"] != teamID {
		t.Fatalf("Bolt started as %v; want the bot identity %s/%s answered by the bridge", l, teamID, botUserID)
	}
	return app
}

// TestSocketModeBolt runs a real Bolt for JavaScript Socket Mode app
// (@slack/bolt 5.1.0, socketMode: true, apps/bolt/socket.js) through the
// real broker and bridge binaries. Bolt is given only the bridge's API URL
// (clientOptions.slackApiUrl, which Bolt also uses for
// apps.connections.open) and tokens that are not Slack's. It receives an
// event, a slash command and three interactions over the bridge's
// WebSocket, acks them, and its ack payloads come back as the HTTP response
// the broker gives Slack's request.
func TestSocketModeBolt(t *testing.T) {
	t.Parallel()
	requireBolt(t)
	e, r := appsDeploy(t)
	botToken := realBotToken(t, e)
	e.startSocketBridge()
	app := startBolt(t, e, "socket", 0)
	checkNoTokenInProcess(t, app, botToken)

	syncScenario(t, e, r, boltSync{app}, "bolt")

	checkTokens(t, e.fake.Calls(), botToken)
	for _, l := range app.rawLines() {
		if strings.Contains(l, botToken) {
			t.Errorf("the Bolt app saw the bot token: %s", l)
		}
	}
	checkRun(t, e, r, r)
}

// TestSocketModeSlackGo runs the same scenario with slack-go's socketmode
// client: socketmode.New(slack.New(anyToken, slack.OptionAppLevelToken(anyAppToken),
// slack.OptionAPIURL(bridge + "/api/"))).
func TestSocketModeSlackGo(t *testing.T) {
	t.Parallel()
	e, r := appsDeploy(t)
	botToken := realBotToken(t, e)
	e.startSocketBridge()
	app := startSMGoApp(t, e.apiURL())
	who, err := app.api.AuthTest()
	if err != nil {
		t.Fatalf("auth.test through the bridge: %v", err)
	}
	if who.UserID != botUserID || who.TeamID != teamID {
		t.Fatalf("auth.test through the bridge answered %s/%s, want %s/%s", who.TeamID, who.UserID, teamID, botUserID)
	}

	syncScenario(t, e, r, smGoSync{app}, "slack-go")

	for _, rc := range app.snapshot() {
		if rc.retry != 0 {
			t.Errorf("%s %s arrived with retry_attempt %d; the app acked every envelope at once", rc.kind, rc.id, rc.retry)
		}
	}
	checkTokens(t, e.fake.Calls(), botToken)
	checkRun(t, e, r, r)
}

// TestSyncAnswerForwardBolt runs the scenario through forward mode: the
// bridge POSTs each request to a Bolt HTTP app (apps/bolt/socket.js with
// RECEIVER=http) and sends the body of Bolt's HTTP response (ack('text')
// as {"text": ...}) to the broker as the answer.
func TestSyncAnswerForwardBolt(t *testing.T) {
	t.Parallel()
	requireBolt(t)
	e, r := appsDeploy(t)
	botToken := realBotToken(t, e)
	var app *jsonApp
	for attempt := 0; app == nil; attempt++ {
		if attempt == 3 {
			t.Fatal("Bolt: no free port after 3 attempts")
		}
		if e.bridge != nil {
			e.bridge.stop(t)
		}
		port := freePort(t)
		e.startForwardBridge(fmt.Sprintf("http://127.0.0.1:%d/slack/events", port))
		app = startBolt(t, e, "http", port)
	}

	syncScenario(t, e, r, boltSync{app}, "bolt")

	checkTokens(t, e.fake.Calls(), botToken)
	checkRun(t, e, r, r)
}

// TestSyncAnswerAcrossReplicas holds Slack's request on replica A while
// the bridge polls replica B only, so the agent's respond arrives at B and
// must reach the request held on A.
func TestSyncAnswerAcrossReplicas(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.startReplica("A")
	b := e.startReplica("B")
	org, token := e.install(a)
	e.register(b.url, org, token)
	e.startSocketBridge()
	app := startSMGoApp(t, e.apiURL())
	app.prime(t, e, a)

	for i, r := range []*replica{a, b, a} {
		text := fmt.Sprintf("held on %s, %d", r.name, i)
		ans, err := e.syncCommand(r, text, "trig-xr-"+strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		checkText(t, ans, "slash command held on "+r.name, "slack-go: ack for "+text)
		app.waitReceived(t, "slash_command", text)
	}
	ans, err := e.syncInteraction(a, e.viewSubmissionPayload(appsChannel, appsNote, "trig-xr-view"))
	if err != nil {
		t.Fatal(err)
	}
	checkViewErrors(t, ans, fmt.Sprintf("slack-go: %q is not allowed", appsNote))
	checkRun(t, e, a, b)
}

// TestSyncAnswerLate has the app ack a held slash command only after the
// broker's deadline passed (--sync-response-timeout 1s) and Slack got its
// empty 200: the late answer is still sent, refused as late by the broker
// (delivered: false) and logged once on both sides, never silently dropped;
// the next command is answered as usual.
func TestSyncAnswerLate(t *testing.T) {
	t.Parallel()
	e, r := appsDeploy(t, "--sync-response-timeout", "1s")
	e.startSocketBridge()
	app := startSMGoApp(t, e.apiURL())
	app.prime(t, e, r)
	release := make(chan struct{})
	app.mu.Lock()
	app.beforeAck = func(text string) {
		if text == "too slow" {
			<-release
		}
	}
	app.mu.Unlock()

	ans, err := e.syncCommand(r, "too slow", "trig-late")
	close(release)
	if err != nil {
		t.Fatal(err)
	}
	if len(ans.body) != 0 {
		t.Errorf("the broker answered Slack with %q before the app answered, want an empty 200 at the deadline", ans.body)
	}
	const brokerLate, bridgeLate = "respond came after the held request's deadline", "the app answered after respond_by"
	waitFor(t, "the late answer logged by the broker and the bridge", 20*time.Second, func() bool {
		return countLines(r.proc, brokerLate) > 0 && countLines(e.bridge, bridgeLate) > 0
	})
	app.waitReceived(t, "slash_command", "too slow")

	ans, err = e.syncCommand(r, "on time", "trig-on-time")
	if err != nil {
		t.Fatal(err)
	}
	checkText(t, ans, "the command after the late one", "slack-go: ack for on time")
	if n := countLines(r.proc, brokerLate); n != 1 {
		t.Errorf("the broker logged %d late answers, want 1", n)
	}
	if n := countLines(e.bridge, bridgeLate); n != 1 {
		t.Errorf("the bridge logged %d late answers, want 1", n)
	}
	checkRun(t, e, r, r)
}

// syncScenario posts, as Slack does, an app_mention, a slash command, a
// block_actions click, a view_submission and a block_suggestion to replica
// r, and checks that app received each and that the broker's HTTP response
// to Slack is the app's ack payload. who prefixes the app's texts.
func syncScenario(t *testing.T, e *env, r *replica, app syncApp, who string) {
	t.Helper()
	mark := len(e.fake.Calls())
	e.fake.AddMessage(slackfake.Message{Channel: appsChannel, TS: mentionTS, Text: "<@" + botUserID + "> hello", User: "U0HUMAN"})
	if err := e.postSlackEvent(r, "Ev0SYNC0001", map[string]any{"type": "app_mention", "user": "U0HUMAN",
		"text": "<@" + botUserID + "> hello", "ts": mentionTS, "channel": appsChannel, "event_ts": mentionTS}); err != nil {
		t.Fatal(err)
	}
	app.waitKind(t, "app_mention")
	if reply := app.waitReply(t); reply["ts"] == "" {
		t.Errorf("the threaded reply's answer carried no ts: %v", reply)
	}
	if got := findCall(t, callsSince(e, mark), "chat.postMessage", map[string]string{"channel": appsChannel, "thread_ts": mentionTS}); got.Params.Get("text") != who+": threaded reply" {
		t.Errorf("threaded reply text %q", got.Params.Get("text"))
	}

	ans, err := e.syncCommand(r, "approve please", "trig-sync-command")
	if err != nil {
		t.Fatal(err)
	}
	checkText(t, ans, "/relay", who+": ack for approve please")
	app.waitKind(t, "slash_command")

	ans, err = e.syncInteraction(r, e.blockActionsPayload(appsChannel, clickTS, "approve", "trig-sync-click"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ans.body) != 0 {
		t.Errorf("block_actions: the broker answered Slack with %q, want an empty 200 at once (not held)", ans.body)
	}
	app.waitKind(t, "block_actions")

	ans, err = e.syncInteraction(r, e.viewSubmissionPayload(appsChannel, appsNote, "trig-sync-submit"))
	if err != nil {
		t.Fatal(err)
	}
	checkViewErrors(t, ans, fmt.Sprintf("%s: %q is not allowed", who, appsNote))
	app.waitKind(t, "view_submission")

	ans, err = e.syncInteraction(r, e.blockSuggestionPayload("shi"))
	if err != nil {
		t.Fatal(err)
	}
	var first map[string]any
	opts, _ := ans.json(t)["options"].([]any)
	if len(opts) > 0 {
		first, _ = opts[0].(map[string]any)
	}
	if text, _ := first["text"].(map[string]any); len(opts) != 1 || text["text"] != who+": shi" || first["value"] != "v1" {
		t.Errorf("block_suggestion: the broker answered Slack with %s, want the app's one option %q", ans.body, who+": shi")
	}
	app.waitKind(t, "block_suggestion")
}

// checkText checks that Slack's response is the app's JSON answer with
// text want.
func checkText(t *testing.T, ans syncAnswer, what, want string) {
	t.Helper()
	if !strings.HasPrefix(ans.contentType, "application/json") {
		t.Errorf("%s: the broker answered Slack with Content-Type %q, want application/json (body %q)", what, ans.contentType, ans.body)
	}
	if got := ans.json(t); got["text"] != want {
		t.Errorf("%s: the broker answered Slack with %q, want the app's answer %q", what, ans.body, want)
	}
}

// checkViewErrors checks that Slack's response to a view_submission is
// response_action errors with the note field's error want.
func checkViewErrors(t *testing.T, ans syncAnswer, want string) {
	t.Helper()
	got := ans.json(t)
	errs, _ := got["errors"].(map[string]any)
	if got["response_action"] != "errors" || errs["note"] != want {
		t.Errorf("view_submission: the broker answered Slack with %q, want response_action errors with note %q", ans.body, want)
	}
}
