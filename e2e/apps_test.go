package e2e

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/sealrelay/sealrelay/internal/slackfake"
)

// roundTrips is the number of calls TestAppsRoundTrip measures: by default
// 1,000, or 200 under the race detector (whose figures mean little and
// which makes each call several times slower).
var roundTrips = flag.Int("apps.roundtrips", 0, "Web API calls TestAppsRoundTrip times through the bridge and broker (0 = 1000, 200 with -race)")

// Where the scenario happens.
const (
	appsChannel = "C0APPS0001"
	appsIM      = "D0APPS0001"
	mentionTS   = "1700000100.000100"
	imTS        = "1700000200.000200"
	clickTS     = "1700000300.000300"
	appsNote    = "ship it"
)

// appUnderTest is a Slack app the scenario drives: it reports each Web API
// call it made (waiting for the after+1-th call of method) with details.
type appUnderTest interface {
	call(t *testing.T, method string, after int) map[string]string
}

// boltApp adapts the Bolt process's JSON reports.
type boltApp struct{ *jsonApp }

func (b boltApp) call(t *testing.T, method string, after int) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, v := range b.waitCall(t, method, after) {
		out[k] = fmt.Sprint(v)
	}
	return out
}

func (a *goApp) call(t *testing.T, method string, after int) map[string]string {
	t.Helper()
	return a.waitCall(t, method, after)
}

// TestAppsBolt runs a real Bolt for JavaScript app (@slack/bolt 5.1.0,
// apps/bolt/app.js) through the real broker and bridge binaries. Bolt is
// configured only with the bridge's forward signing secret, a token that is
// not the bot token, and slackApiUrl pointing at the bridge. It receives an
// app_mention, a message.im, a slash command, a block_actions click and a
// view_submission, and answers through say()/client.*: a threaded reply, a
// reaction, conversations.replies, views.open with the click's trigger_id,
// a chat.startStream/appendStream/stopStream sequence and files.uploadV2.
// Every call is checked at the fake Slack, which must have seen only the
// installation's bot token; the Bolt process never had it.
func TestAppsBolt(t *testing.T) {
	t.Parallel()
	node := requireBolt(t)
	e, r := appsDeploy(t)
	botToken := realBotToken(t, e)

	var app *jsonApp
	for attempt := 0; ; attempt++ {
		port := freePort(t)
		e.startBridgeTo(fmt.Sprintf("http://127.0.0.1:%d/slack/events", port))
		env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + e.dir, "NODE_ENV=production",
			"SIGNING_SECRET=" + forwardSecret, "SLACK_API_URL=" + e.apiURL(),
			"PORT=" + strconv.Itoa(port), "SLACK_BOT_TOKEN=" + appToken}
		app = startJSONApp(t, "bolt app", boltDir, e.dir+"/bolt.log", env, node, "app.js")
		l := app.waitLine(t, "Bolt to start (auth.test against the bridge)", 20*time.Second, func(m map[string]any) bool {
			return m["kind"] == "ready" || m["kind"] == "fatal"
		})
		if l["kind"] == "ready" {
			if l["user_id"] != botUserID || l["team_id"] != teamID || l["token"] != appToken {
				t.Fatalf("Bolt started as %v; want the bot identity %s/%s answered by the bridge", l, teamID, botUserID)
			}
			break
		}
		if attempt == 2 || !strings.Contains(fmt.Sprint(l["code"], l["message"]), "EADDRINUSE") {
			t.Fatalf("Bolt did not start: %v", l)
		}
		app.stop(t)
		e.bridge.stop(t)
	}
	checkNoTokenInProcess(t, app, botToken)

	scenario(t, e, r, boltApp{app}, "bolt")

	// The upload went getUploadURLExternal → POST upload_url →
	// completeUploadExternal, into the thread of the DM.
	up := app.waitLine(t, "the files.uploadV2 result", 20*time.Second, func(m map[string]any) bool {
		return m["kind"] == "call" && m["method"] == "files.uploadV2"
	})
	if up["ok"] != true {
		t.Fatalf("files.uploadV2: %v", up)
	}
	calls := e.fake.Calls()
	content := "hello from bolt through sealrelay\n"
	findCall(t, calls, "files.getUploadURLExternal", map[string]string{"filename": "bolt-report.txt", "length": strconv.Itoa(len(content))})
	findCall(t, calls, "files.completeUploadExternal", map[string]string{"channel_id": appsIM, "thread_ts": imTS})
	checkUpload(t, e, "bolt-report.txt", content)
	checkTokens(t, calls, botToken)
	for _, l := range app.rawLines() {
		if strings.Contains(l, botToken) {
			t.Errorf("the Bolt app saw the bot token: %s", l)
		}
	}
	if strings.Contains(app.stderr(), botToken) {
		t.Error("the Bolt app's log holds the bot token")
	}
	checkRun(t, e, r, r)
}

// TestAppsSlackGo runs the same scenario with a slack-go app configured
// with slack.OptionAPIURL pointing at the bridge (no upload: slack-go only
// uploads to an https slack.com URL).
func TestAppsSlackGo(t *testing.T) {
	t.Parallel()
	e, r := appsDeploy(t)
	botToken := realBotToken(t, e)

	app := newGoApp(t, forwardSecret)
	e.startBridgeTo(app.eventsURL())
	app.useAPI(e.apiURL())
	who, err := app.api.AuthTest()
	if err != nil {
		t.Fatalf("auth.test through the bridge: %v", err)
	}
	if who.UserID != botUserID || who.TeamID != teamID {
		t.Fatalf("auth.test through the bridge answered %s/%s, want %s/%s", who.TeamID, who.UserID, teamID, botUserID)
	}

	scenario(t, e, r, app, "slack-go")

	// A Slack error comes back to the app as Slack's own error.
	e.fake.Script("conversations.replies", slackfake.Reply{Error: "thread_not_found"})
	if _, _, _, err := app.api.GetConversationReplies(&slack.GetConversationRepliesParameters{ChannelID: appsChannel, Timestamp: "1700000999.000001"}); err == nil || err.Error() != "thread_not_found" {
		t.Errorf("conversations.replies with a scripted Slack error: %v, want thread_not_found", err)
	}
	// A method outside the broker's default policy is refused there, as a
	// Slack-style error, and never reaches Slack.
	if _, err := app.api.InviteUsersToConversation(appsChannel, "U0OTHER"); err == nil || err.Error() != "method_not_allowed" {
		t.Errorf("conversations.invite (not in the default policy): %v, want method_not_allowed", err)
	}
	if n := len(e.fake.CallsTo("conversations.invite")); n != 0 {
		t.Errorf("the fake Slack received %d conversations.invite calls the policy refused", n)
	}
	checkTokens(t, e.fake.Calls(), botToken)
	if received, badSig := app.snapshot(); badSig != 0 || len(received) != 5 {
		t.Errorf("slack-go app received %v with %d bad signatures; want the 5 requests, all verified", received, badSig)
	}
	checkRun(t, e, r, r)
}

// scenario posts an app_mention, a message.im, a slash command, a click
// and a modal submission to the broker as Slack would, waits for app's
// answers and checks each at the fake Slack. who prefixes the app's texts.
func scenario(t *testing.T, e *env, r *replica, app appUnderTest, who string) {
	t.Helper()
	mark := len(e.fake.Calls())
	// The messages people posted, as Slack holds them.
	e.fake.AddMessage(slackfake.Message{Channel: appsChannel, TS: mentionTS, Text: "<@" + botUserID + "> hello", User: "U0HUMAN"})
	e.fake.AddMessage(slackfake.Message{Channel: appsIM, TS: imTS, Text: "stream me something", User: "U0HUMAN"})

	if err := e.postSlackEvent(r, "Ev0APPS0001", map[string]any{"type": "app_mention", "user": "U0HUMAN",
		"text": "<@" + botUserID + "> hello", "ts": mentionTS, "channel": appsChannel, "event_ts": mentionTS}); err != nil {
		t.Fatal(err)
	}
	reply := app.call(t, "chat.postMessage", 0)
	app.call(t, "reactions.add", 0)
	if got := app.call(t, "conversations.replies", 0); got["messages"] != "2" {
		t.Errorf("conversations.replies answered %s messages, want the mention and the reply", got["messages"])
	}

	if err := e.postSlackEvent(r, "Ev0APPS0002", map[string]any{"type": "message", "channel_type": "im", "user": "U0HUMAN",
		"text": "stream me something", "ts": imTS, "channel": appsIM, "event_ts": imTS}); err != nil {
		t.Fatal(err)
	}
	stream := app.call(t, "chat.startStream", 0)
	app.call(t, "chat.appendStream", 0)
	app.call(t, "chat.stopStream", 0)

	if err := e.postCommand(r, "/relay", "approve please", appsChannel, "trig-command-1"); err != nil {
		t.Fatal(err)
	}
	app.call(t, "chat.postMessage", 1)

	click := "trig-click-" + randHex(t, 4)
	if err := e.postInteraction(r, e.blockActionsPayload(appsChannel, clickTS, "approve", click)); err != nil {
		t.Fatal(err)
	}
	app.call(t, "views.open", 0)

	if err := e.postInteraction(r, e.viewSubmissionPayload(appsChannel, appsNote, "trig-submit-1")); err != nil {
		t.Fatal(err)
	}
	app.call(t, "chat.postMessage", 2)

	calls := callsSince(e, mark)
	if got := findCall(t, calls, "chat.postMessage", map[string]string{"channel": appsChannel, "thread_ts": mentionTS}); got.Params.Get("text") != who+": threaded reply" {
		t.Errorf("threaded reply text %q", got.Params.Get("text"))
	}
	if reply["ts"] == "" {
		t.Errorf("the threaded reply's answer carried no ts: %v", reply)
	}
	findCall(t, calls, "reactions.add", map[string]string{"channel": appsChannel, "timestamp": mentionTS, "name": "eyes"})
	findCall(t, calls, "conversations.replies", map[string]string{"channel": appsChannel, "ts": mentionTS})
	findCall(t, calls, "chat.startStream", map[string]string{"channel": appsIM, "thread_ts": imTS})
	if stream["ts"] == "" {
		t.Fatalf("chat.startStream answered no ts: %v", stream)
	}
	findCall(t, calls, "chat.appendStream", map[string]string{"channel": appsIM, "ts": stream["ts"]})
	findCall(t, calls, "chat.stopStream", map[string]string{"channel": appsIM, "ts": stream["ts"]})
	streamed := false
	for _, m := range e.fake.Messages() {
		if m.Channel == appsIM && m.TS == stream["ts"] {
			streamed = m.ThreadTS == imTS && m.Text == "Thinking about it. Done." && !m.Streaming
			if !streamed {
				t.Errorf("streamed message %+v, want %q in the thread, stopped", m, "Thinking about it. Done.")
			}
		}
	}
	if !streamed {
		t.Errorf("the fake Slack holds no streamed message %s", stream["ts"])
	}
	if got := findCall(t, calls, "chat.postMessage", map[string]string{"channel": appsChannel, "blocks": ""}); !strings.Contains(got.Params.Get("blocks"), `"approve"`) {
		t.Errorf("the command's answer has no approve button: %s", got.Params.Get("blocks"))
	}
	if got := findCall(t, calls, "views.open", map[string]string{"trigger_id": click}); !strings.Contains(got.Params.Get("view"), "relay_modal") {
		t.Errorf("views.open view %s, want the relay_modal", got.Params.Get("view"))
	}
	findCall(t, calls, "chat.postMessage", map[string]string{"channel": appsChannel, "text": who + ": submitted " + appsNote})
}

// checkNoTokenInProcess checks that the app process was never given the
// bot token: not in its environment or command line.
func checkNoTokenInProcess(t *testing.T, app *jsonApp, botToken string) {
	t.Helper()
	for _, kv := range app.cmd.Env {
		if strings.Contains(kv, botToken) {
			t.Errorf("the app's environment holds the bot token in %s", strings.SplitN(kv, "=", 2)[0])
		}
	}
	for _, a := range app.cmd.Args {
		if strings.Contains(a, botToken) {
			t.Error("the app's command line holds the bot token")
		}
	}
	// What the kernel says the running process has (Linux).
	for _, f := range []string{"environ", "cmdline"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", app.cmd.Process.Pid, f))
		if err == nil && bytes.Contains(b, []byte(botToken)) {
			t.Errorf("/proc/<bolt>/%s holds the bot token", f)
		}
	}
}

// checkUpload checks that the fake Slack received the file's bytes.
func checkUpload(t *testing.T, e *env, filename, content string) {
	t.Helper()
	for _, f := range e.fake.Uploads() {
		if f.Filename == filename {
			if string(f.Data) != content {
				t.Errorf("uploaded %s holds %q, want %q", filename, f.Data, content)
			}
			return
		}
	}
	t.Errorf("the fake Slack received no upload of %s", filename)
}

// TestAppsRoundTrip measures the Web API round trip of a slack-go app
// through the real binaries: app → bridge /api/chat.postMessage → broker
// /api/call → fake Slack → back, over -apps.roundtrips sequential calls.
// The broker's per-agent call bucket for posting methods is turned off
// (--call-rate-post 0) so that the calls measure the relay, not the
// limiter. It reports p50/p99 (run with -v to see them) and asserts only
// that every call succeeded; speed is not asserted.
//
//	go test ./e2e -run TestAppsRoundTrip -v -count=1
func TestAppsRoundTrip(t *testing.T) {
	t.Parallel()
	e, r := appsDeploy(t, "--call-rate-post", "0")
	botToken := realBotToken(t, e)
	e.startBridgeTo(e.recv.srv.URL + "/slack/events")
	api := slack.New(appToken, slack.OptionAPIURL(e.apiURL()), slack.OptionRetry(0))
	ctx := context.Background()

	call := func(i int) error {
		_, _, err := api.PostMessageContext(ctx, appsChannel, slack.MsgOptionText("round trip "+strconv.Itoa(i), false))
		return err
	}
	for i := range 20 { // warm up connections and the broker's caches
		if err := call(-i); err != nil {
			t.Fatalf("warm-up call: %v", err)
		}
	}
	n := *roundTrips
	if n <= 0 {
		n = 1000
		if raceEnabled {
			n = 200
		}
	}
	d := make([]time.Duration, n)
	start := time.Now()
	for i := range d {
		t0 := time.Now()
		if err := call(i); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		d[i] = time.Since(t0)
	}
	total := time.Since(start)
	slices.Sort(d)
	t.Logf("/api/chat.postMessage round trip (slack-go → bridge → broker → fake Slack → back), %d sequential calls, race=%v: p50 %s, p90 %s, p99 %s, max %s; %.0f calls/s",
		n, raceEnabled, percentile(d, 50).Round(time.Microsecond), percentile(d, 90).Round(time.Microsecond),
		percentile(d, 99).Round(time.Microsecond), d[n-1].Round(time.Microsecond), float64(n)/total.Seconds())
	checkTokens(t, e.fake.Calls(), botToken)
	checkRun(t, e, r, r)
}
