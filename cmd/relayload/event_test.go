package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
)

// TestSignedRequestVerifiesWithSlackGo: the webhook the harness posts
// passes slack-go's SecretsVerifier with the signing secret (and fails with
// another), and slack-go parses its body as the app_mention it claims.
func TestSignedRequestVerifiesWithSlackGo(t *testing.T) {
	t.Parallel()
	now := time.Now()
	body := eventBody("T0TEAM", "RUN1", 42, 3, 7, now)
	req, err := signedRequest(context.Background(), "http://127.0.0.1:1/", []byte("the-secret"), body, now)
	if err != nil {
		t.Fatal(err)
	}
	if req.URL.String() != "http://127.0.0.1:1/slack/events" || req.Method != http.MethodPost {
		t.Fatalf("request %s %s", req.Method, req.URL)
	}
	got, err := io.ReadAll(req.Body)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		secret string
		ok     bool
	}{{"the-secret", true}, {"another-secret", false}}
	for _, tc := range tests {
		sv, err := slack.NewSecretsVerifier(req.Header, tc.secret)
		if err != nil {
			t.Fatalf("NewSecretsVerifier: %v", err)
		}
		_, _ = sv.Write(got)
		if err := sv.Ensure(); (err == nil) != tc.ok {
			t.Fatalf("secret %q: Ensure() = %v, want ok=%v", tc.secret, err, tc.ok)
		}
	}
	ev, err := slackevents.ParseEvent(json.RawMessage(got), slackevents.OptionNoVerifyToken())
	if err != nil {
		t.Fatal(err)
	}
	m, ok := ev.InnerEvent.Data.(*slackevents.AppMentionEvent)
	if !ok || ev.TeamID != "T0TEAM" || m.Channel != "CRL00003" || !strings.HasSuffix(m.Text, "run=RUN1 ch=3 seq=7") {
		t.Fatalf("parsed %+v / %+v", ev, ev.InnerEvent.Data)
	}
	if id, err := deliveredEventID(got); err != nil || id != eventID("RUN1", 42) {
		t.Fatalf("deliveredEventID = %q, %v", id, err)
	}
}

// TestDeliveredIDs reads event ids from forwarded bodies and SSE data, and
// refuses what is not an Events API callback.
func TestDeliveredIDs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, sse, want string
	}{
		{name: "ok", sse: `{"message_id":"m-1","type":"event_callback","payload":{"type":"event_callback","event_id":"Ev1"}}`, want: "Ev1"},
		{name: "not json", sse: `{`},
		{name: "no message id", sse: `{"payload":{"type":"event_callback","event_id":"Ev1"}}`},
		{name: "interactivity", sse: `{"message_id":"m-1","payload":{"type":"block_actions"}}`},
		{name: "no event id", sse: `{"message_id":"m-1","payload":{"type":"event_callback"}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := sseEventID([]byte(tc.sse))
			if (err == nil) != (tc.want != "") || got != tc.want {
				t.Fatalf("sseEventID = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
