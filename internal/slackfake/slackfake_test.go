package slackfake

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"
)

func newFake(t *testing.T, opts Options) (*Fake, *httptest.Server) {
	t.Helper()
	f := New(opts)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

// TestSignatureSlackDocVector checks the signing helper against the example
// in Slack's "Verifying requests from Slack" documentation.
func TestSignatureSlackDocVector(t *testing.T) {
	body := "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
	got := Signature("8f742231b10e8888abcd99yyyzzz85a5", 1531420618, []byte(body))
	want := "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
	if got != want {
		t.Fatalf("Signature = %s, want %s", got, want)
	}
	// slack-go's verifier accepts what SignRequest produces.
	r := httptest.NewRequest(http.MethodPost, "/slack/events", strings.NewReader(body))
	SignRequest(r, "secret", time.Now(), []byte(body))
	sv, err := slack.NewSecretsVerifier(r.Header, "secret")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = sv.Write([]byte(body))
	if err := sv.Ensure(); err != nil {
		t.Fatalf("slack-go rejects SignRequest: %v", err)
	}
}

func TestOAuthFlow(t *testing.T) {
	tests := []struct {
		name       string
		inst       Install
		wantTeam   string
		wantEnt    string
		wantExpiry bool
	}{
		{"workspace", Install{TeamID: "T111", TeamName: "Team One"}, "T111", "", false},
		{"enterprise", Install{EnterpriseID: "E222", EnterpriseName: "Ent", IsEnterpriseInstall: true}, "", "E222", false},
		{"rotating", Install{TeamID: "T333", Rotating: true}, "T333", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newFake(t, Options{ClientID: "cid", ClientSecret: "csecret"})
			f.QueueInstall(tt.inst)
			// The authorize endpoint redirects back with a code and the state.
			callback := "http://broker.test/slack/oauth/callback"
			q := url.Values{"client_id": {"cid"}, "state": {"st-1"}, "redirect_uri": {callback}, "scope": {"chat:write"}}
			client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := client.Get(AuthorizeURL(srv.URL) + "?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc, err := url.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusFound || err != nil || loc.Query().Get("state") != "st-1" {
				t.Fatalf("authorize: %d %q", resp.StatusCode, resp.Header.Get("Location"))
			}
			code := loc.Query().Get("code")
			ctx := context.Background()
			if _, err := slack.GetOAuthV2ResponseContext(ctx, http.DefaultClient, "cid", "wrong", code, callback, slack.OAuthOptionAPIURL(APIURL(srv.URL))); err == nil || !strings.Contains(err.Error(), "bad_client_secret") {
				t.Fatalf("wrong secret: %v", err)
			}
			res, err := slack.GetOAuthV2ResponseContext(ctx, http.DefaultClient, "cid", "csecret", code, callback, slack.OAuthOptionAPIURL(APIURL(srv.URL)))
			if err != nil {
				t.Fatal(err)
			}
			if res.Team.ID != tt.wantTeam || res.Enterprise.ID != tt.wantEnt || res.IsEnterpriseInstall != (tt.wantEnt != "") {
				t.Fatalf("oauth response ids: %+v", res)
			}
			if (res.RefreshToken != "") != tt.wantExpiry || (res.ExpiresIn > 0) != tt.wantExpiry {
				t.Fatalf("rotation fields: refresh=%q expires=%d", res.RefreshToken, res.ExpiresIn)
			}
			if _, err := slack.GetOAuthV2ResponseContext(ctx, http.DefaultClient, "cid", "csecret", code, callback, slack.OAuthOptionAPIURL(APIURL(srv.URL))); err == nil {
				t.Fatal("code accepted twice")
			}
			api := slack.New(res.AccessToken, slack.OptionAPIURL(APIURL(srv.URL)))
			at, err := api.AuthTestContext(ctx)
			if err != nil || at.BotID == "" || at.UserID == "" {
				t.Fatalf("auth.test: %+v %v", at, err)
			}
			if tt.wantExpiry {
				r2, err := slack.RefreshOAuthV2TokenContext(ctx, http.DefaultClient, "cid", "csecret", res.RefreshToken, slack.OAuthOptionAPIURL(APIURL(srv.URL)))
				if err != nil || r2.AccessToken == res.AccessToken || r2.RefreshToken == res.RefreshToken {
					t.Fatalf("refresh: %+v %v", r2, err)
				}
				if _, err := slack.RefreshOAuthV2TokenContext(ctx, http.DefaultClient, "cid", "csecret", res.RefreshToken, slack.OAuthOptionAPIURL(APIURL(srv.URL))); err == nil {
					t.Fatal("refresh token accepted twice")
				}
			}
		})
	}
}

func TestDenyConsent(t *testing.T) {
	f, srv := newFake(t, Options{})
	f.QueueInstall(Install{DenyConsent: true})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(AuthorizeURL(srv.URL) + "?state=s&redirect_uri=" + url.QueryEscape("http://x.test/cb"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc.Query().Get("error") != "access_denied" || loc.Query().Get("code") != "" {
		t.Fatalf("location %v", loc)
	}
}

func TestMessagingAndScripts(t *testing.T) {
	f, srv := newFake(t, Options{})
	f.AddToken("xoxb-good", Install{TeamID: "T1"})
	ctx := context.Background()
	api := slack.New("xoxb-good", slack.OptionAPIURL(APIURL(srv.URL)))
	ch, ts, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("hello", false), slack.MsgOptionTS("1.2"))
	if err != nil || ch != "C1" || ts == "" {
		t.Fatalf("post: %s %s %v", ch, ts, err)
	}
	if _, _, _, err := api.UpdateMessageContext(ctx, "C1", ts, slack.MsgOptionText("edited", false)); err != nil {
		t.Fatal(err)
	}
	if err := api.AddReactionContext(ctx, "thumbsup", slack.NewRefToMessage("C1", ts)); err != nil {
		t.Fatal(err)
	}
	msgs := f.Messages()
	if len(msgs) != 1 || msgs[0].Text != "edited" || msgs[0].ThreadTS != "1.2" || len(msgs[0].Reactions) != 1 {
		t.Fatalf("messages: %+v", msgs)
	}
	posts := f.CallsTo("chat.postMessage")
	if len(posts) != 1 || posts[0].Token != "xoxb-good" || posts[0].Params.Get("text") != "hello" || posts[0].Params.Get("token") != "" {
		t.Fatalf("recorded post: %+v", posts)
	}

	tests := []struct {
		name    string
		token   string
		script  *Reply
		check   func(error) bool
		wantErr string
	}{
		{"scripted error", "xoxb-good", &Reply{Error: "channel_not_found"}, nil, "channel_not_found"},
		{"unknown token", "xoxb-bad", nil, nil, "invalid_auth"},
		{"rate limited", "xoxb-good", &Reply{Status: 429, RetryAfter: 7}, func(err error) bool {
			var rl *slack.RateLimitedError
			return errors.As(err, &rl) && rl.RetryAfter == 7*time.Second
		}, ""},
		{"server error", "xoxb-good", &Reply{Status: 503}, func(err error) bool {
			var sc slack.StatusCodeError
			return errors.As(err, &sc) && sc.Code == 503
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.script != nil {
				f.Script("chat.postMessage", *tt.script)
			}
			api := slack.New(tt.token, slack.OptionAPIURL(APIURL(srv.URL)))
			_, _, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("x", false))
			if err == nil {
				t.Fatal("want an error")
			}
			if tt.check != nil && !tt.check(err) {
				t.Fatalf("error %v (%T)", err, err)
			}
			if tt.wantErr != "" && err.Error() != tt.wantErr {
				t.Fatalf("error %q, want %q", err, tt.wantErr)
			}
		})
	}
	f.RevokeToken("xoxb-good")
	if _, _, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("x", false)); err == nil || err.Error() != "token_revoked" {
		t.Fatalf("revoked: %v", err)
	}
}

func TestConcurrentCalls(t *testing.T) {
	f, srv := newFake(t, Options{})
	f.AddToken("xoxb-c", Install{})
	api := slack.New("xoxb-c", slack.OptionAPIURL(APIURL(srv.URL)))
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, _ = api.PostMessageContext(context.Background(), "C1", slack.MsgOptionText("x", false))
		}()
	}
	wg.Wait()
	if n := len(f.CallsTo("chat.postMessage")); n != 20 {
		t.Fatalf("recorded %d calls, want 20", n)
	}
	if n := len(f.Messages()); n != 20 {
		t.Fatalf("%d messages, want 20", n)
	}
}

// TestJSONBodyAndBearer: JSON-bodied calls with a bearer header are parsed
// and recorded like form calls.
func TestJSONBodyAndBearer(t *testing.T) {
	f, srv := newFake(t, Options{})
	f.AddToken("xoxb-json", Install{TeamID: "T9"})
	req, _ := http.NewRequest(http.MethodPost, APIURL(srv.URL)+"chat.postMessage",
		strings.NewReader(`{"channel":"C9","text":"json hi","blocks":[{"type":"divider"}]}`))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Authorization", "Bearer xoxb-json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	calls := f.CallsTo("chat.postMessage")
	if len(calls) != 1 || calls[0].Token != "xoxb-json" || calls[0].Params.Get("text") != "json hi" ||
		calls[0].Params.Get("blocks") != `[{"type":"divider"}]` || calls[0].Error != "" {
		t.Fatalf("recorded %+v", calls)
	}
}
