package brokerint_test

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slack-go/slack"

	"github.com/sealrelay/sealrelay/bridge"
	"github.com/sealrelay/sealrelay/internal/slackfake"
)

// TestWebAPIAgainstRealBroker drives the bridge's Slack Web API facade with
// the real slack-go client through the real broker's /api/call to the fake
// Slack: the app holds only the local API token, Slack sees only the
// installation's bot token, a denied method never reaches Slack, and
// auth.test answers the bot's real identity.
func TestWebAPIAgainstRealBroker(t *testing.T) {
	t.Parallel()
	rb := newRealBroker(t)
	const botToken = "xoxb-real-installation-token-0001"
	rb.fake.QueueInstall(slackfake.Install{TeamID: "T0WEBAPI", TeamName: "Web API", BotToken: botToken, BotUserID: "U0BOTWEB", BotID: "B0BOTWEB"})
	org, token := rb.installQueued()
	cfgPath := filepath.Join(t.TempDir(), "bridge.env")
	if _, err := bridge.Register(t.Context(), bridge.RegisterOptions{BrokerURL: rb.url, OrgID: org, RegistrationToken: token, ConfigPath: cfgPath}); err != nil {
		t.Fatal(err)
	}
	id, err := bridge.LoadIdentity(cfgPath, func(string) (string, bool) { return "", false }, false)
	if err != nil {
		t.Fatal(err)
	}
	const localToken = "local-api-token-for-the-app-0123456789"
	cfg := baseConfig(*id, t.TempDir())
	cfg.Stream = true
	cfg.LocalToken = localToken
	ln := apiListener(t)
	cfg.ListenAddr = ln.Addr().String()
	r := start(t, cfg)
	base := serveAPI(t, ln, r.b)

	api := slack.New(localToken, slack.OptionAPIURL(base+"/api/"))
	at, err := api.AuthTestContext(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if at.TeamID != "T0WEBAPI" || at.UserID != "U0BOTWEB" || at.BotID != "B0BOTWEB" {
		t.Fatalf("auth.test identity %+v", at)
	}
	ch, ts, err := api.PostMessageContext(t.Context(), "C0WEB", slack.MsgOptionText("hello via the facade", false))
	if err != nil || ch != "C0WEB" || ts == "" {
		t.Fatalf("PostMessage: %q %q %v", ch, ts, err)
	}
	if _, _, err := api.PostMessageContext(t.Context(), "C0WEB", slack.MsgOptionText("in thread", false), slack.MsgOptionTS(ts)); err != nil {
		t.Fatal(err)
	}
	msgs, _, _, err := api.GetConversationRepliesContext(t.Context(), &slack.GetConversationRepliesParameters{ChannelID: "C0WEB", Timestamp: ts})
	if err != nil || len(msgs) < 2 {
		t.Fatalf("replies: %d %v", len(msgs), err)
	}
	if err := api.AddReactionContext(t.Context(), "eyes", slack.NewRefToMessage("C0WEB", ts)); err != nil {
		t.Fatal(err)
	}
	// A method outside the default policy: Slack's error form, never Slack.
	if _, err := api.GetBillableInfoContext(t.Context(), slack.GetBillableInfoParams{}); err == nil || !strings.Contains(err.Error(), "method_not_allowed") {
		t.Fatalf("team.billableInfo: %v", err)
	}
	if n := len(rb.fake.CallsTo("team.billableInfo")); n != 0 {
		t.Fatalf("a denied method reached Slack %d times", n)
	}
	// The app's token is worthless: a wrong one is refused by the bridge.
	if _, err := slack.New("xoxb-wrong", slack.OptionAPIURL(base+"/api/")).AuthTestContext(t.Context()); err == nil || !strings.Contains(err.Error(), "invalid_auth") {
		t.Fatalf("wrong local token: %v", err)
	}
	for _, c := range rb.fake.Calls() {
		if c.Method == "authorize" || c.Method == "oauth.v2.access" {
			continue
		}
		if c.Token != botToken {
			t.Errorf("Slack saw %s with token %q, want the installation's bot token", c.Method, c.Token)
		}
		if c.Params.Has("token") {
			t.Errorf("Slack saw a token argument on %s", c.Method)
		}
	}
	if n := len(rb.fake.CallsTo("chat.postMessage")); n != 2 {
		t.Fatalf("chat.postMessage reached Slack %d times, want 2", n)
	}
	if resp, err := http.Get(base + "/api/auth.test"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET auth.test without a token: %v", err)
	} else {
		resp.Body.Close()
	}
}
