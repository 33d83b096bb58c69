package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/internal/slackfake"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
)

// TestSignedRequestVerifiesWithSlackGo: the request a poster writes is a
// well-formed HTTP/1.1 POST to the broker's /slack/events that passes
// slack-go's SecretsVerifier with the signing secret (and fails with
// another), and slack-go parses its body as the app_mention it claims.
func TestSignedRequestVerifiesWithSlackGo(t *testing.T) {
	t.Parallel()
	now := time.Now()
	target, err := newBrokerTarget("http://127.0.0.1:1/")
	if err != nil {
		t.Fatal(err)
	}
	p := newPoster(target, newBodyTemplate("T0TEAM", "RUN1"), []byte("the-secret"))
	p.build(41, 2, 6, now.Unix()) // the buffers are reused: the second request must be whole
	raw := bytes.Clone(p.build(42, 3, 7, now.Unix()))
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatalf("ReadRequest: %v\n%s", err, raw)
	}
	if req.URL.String() != "/slack/events" || req.Method != http.MethodPost || req.Host != "127.0.0.1:1" ||
		req.Header.Get("Content-Type") != "application/json" || req.ProtoMinor != 1 {
		t.Fatalf("request %s %s host %q header %v", req.Method, req.URL, req.Host, req.Header)
	}
	got, err := io.ReadAll(req.Body)
	if err != nil {
		t.Fatal(err)
	}
	if want := eventBody("T0TEAM", "RUN1", 42, 3, 7, now); !bytes.Equal(got, want) || req.ContentLength != int64(len(want)) {
		t.Fatalf("body (length %d)\n%s\nwant\n%s", req.ContentLength, got, want)
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
	if sig := req.Header.Get("X-Slack-Signature"); sig != slackfake.Signature("the-secret", now.Unix(), got) {
		t.Fatalf("signature %s, want slackfake's", sig)
	}
	ev, err := slackevents.ParseEvent(json.RawMessage(got), slackevents.OptionNoVerifyToken())
	if err != nil {
		t.Fatal(err)
	}
	m, ok := ev.InnerEvent.Data.(*slackevents.AppMentionEvent)
	if !ok || ev.TeamID != "T0TEAM" || m.Channel != "CRL00003" || !strings.HasSuffix(m.Text, "run=RUN1 ch=3 seq=7") {
		t.Fatalf("parsed %+v / %+v", ev, ev.InnerEvent.Data)
	}
	if id, err := deliveredEventID(got); err != nil || id != eventID("RUN1", 42) || id != p.eventID(42) {
		t.Fatalf("deliveredEventID = %q, %v", id, err)
	}
	https, err := newBrokerTarget("https://broker.example/prefix/")
	if err != nil || https.addr != "broker.example:443" || https.path != "/prefix/slack/events" || https.tls == nil {
		t.Fatalf("https target %+v, %v", https, err)
	}
}

// referenceEventBody is how the harness built a callback before the
// template: json.Marshal of the Events API callback.
func referenceEventBody(team, runID string, n, ch, seq int, now time.Time) []byte {
	ts := fmt.Sprintf("%d.%06d", now.Unix(), n%1_000_000)
	b, err := json.Marshal(map[string]any{
		"token": "relayload", "team_id": team, "api_app_id": loadAppID,
		"event": map[string]any{"type": "app_mention", "user": loadUserID, "text": eventText(runID, ch, seq),
			"ts": ts, "channel": fmt.Sprintf("CRL%05d", ch), "event_ts": ts},
		"type": "event_callback", "event_id": fmt.Sprintf("EvRL%s%08d", runID, n), "event_time": now.Unix(),
		"authorizations": []map[string]any{{"team_id": team, "user_id": loadBotID, "is_bot": true}},
	})
	if err != nil {
		panic(err)
	}
	return b
}

// TestBodyTemplateMatchesJSONMarshal: the template gives byte for byte the
// callback json.Marshal gave, for any team (escaped as encoding/json
// escapes it), event number, channel and sequence number in range.
func TestBodyTemplateMatchesJSONMarshal(t *testing.T) {
	t.Parallel()
	now := time.Unix(1796160099, 0)
	tests := []struct {
		team, run  string
		n, ch, seq int
		unix       int64
	}{
		{team: "T0RELAYLD", run: "ABCDEF01", n: 0, ch: 0, seq: 1},
		{team: "T0RELAYLD", run: "ABCDEF01", n: 12345, ch: 3, seq: 77},
		{team: "E0ENTERPRISE", run: "00000000", n: maxEvents - 1, ch: maxChannels - 1, seq: maxEvents},
		{team: "T<&>\"\\\u2028é", run: "RUN", n: 1_000_001, ch: 99999, seq: 5},
		{team: "T1", run: "RUN", n: 7, ch: 1, seq: 1, unix: 1},
	}
	for _, tc := range tests {
		at := now
		if tc.unix != 0 {
			at = time.Unix(tc.unix, 0)
		}
		tmpl := newBodyTemplate(tc.team, tc.run)
		buf := tmpl.appendBody(make([]byte, 0, 8), 1, 1, 1, 5) // reused below
		got := tmpl.appendBody(buf[:0], tc.n, tc.ch, tc.seq, at.Unix())
		if want := referenceEventBody(tc.team, tc.run, tc.n, tc.ch, tc.seq, at); !bytes.Equal(got, want) {
			t.Errorf("%+v:\n got %s\nwant %s", tc, got, want)
		}
		if id, want := string(tmpl.appendEventID(nil, tc.n)), fmt.Sprintf("EvRL%s%08d", tc.run, tc.n); id != want || eventID(tc.run, tc.n) != want {
			t.Errorf("event id %q, want %q", id, want)
		}
	}
	if channelID(42) != "CRL00042" {
		t.Errorf("channelID(42) = %q", channelID(42))
	}
}

// FuzzBodyTemplate: the template and json.Marshal agree for any team.
func FuzzBodyTemplate(f *testing.F) {
	f.Add("T0RELAYLD", 12345, 3, 77)
	f.Add("T<\u2028>\xff", 0, 0, 0)
	f.Fuzz(func(t *testing.T, team string, n, ch, seq int) {
		n, ch, seq = abs(n)%(2*maxEvents), abs(ch)%maxChannels, abs(seq)%(2*maxEvents)
		now := time.Unix(1796160099, 0)
		got := newBodyTemplate(team, "RUN").appendBody(nil, n, ch, seq, now.Unix())
		if want := referenceEventBody(team, "RUN", n, ch, seq, now); !bytes.Equal(got, want) {
			t.Fatalf("got %s\nwant %s", got, want)
		}
	})
}

func abs(n int) int {
	if n < 0 {
		if n == -n { // the most negative int
			return 0
		}
		return -n
	}
	return n
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

// referenceSSEEventID and referenceDeliveredEventID are how the harness read
// deliveries before the scanner: json.Unmarshal of the whole event.
func referenceSSEEventID(data []byte) (string, error) {
	var ev struct {
		MessageID string          `json:"message_id"`
		Type      string          `json:"type"`
		Payload   json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(data, &ev); err != nil {
		return "", err
	}
	if ev.MessageID == "" || len(ev.Payload) == 0 {
		return "", errSSENoFields
	}
	return referenceDeliveredEventID(ev.Payload)
}

func referenceDeliveredEventID(payload []byte) (string, error) {
	var p struct {
		Type    string `json:"type"`
		EventID string `json:"event_id"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		return "", err
	}
	if p.Type != "event_callback" || p.EventID == "" {
		return "", errNotCallback
	}
	return p.EventID, nil
}

// deliveryCases are SSE data the scanner must read as encoding/json does.
var deliveryCases = []string{
	`{"message_id":"m-1","type":"event_callback","payload":{"type":"event_callback","event_id":"Ev1"}}`,
	` {"message_id" : "m-1" , "payload" : { "event_id" : "Ev1" , "type" : "event_callback" } } ` + "\n",
	`{"message_id":"m-1","source":"slack","broker_timestamp":1796160099,"type":"event_callback","payload":{"api_app_id":"A0","authorizations":[{"is_bot":true,"team_id":"T","user_id":"U"}],"event":{"channel":"C1","text":"\u003c@U\u003e \"hi\" \\ é","ts":"1.000001"},"event_id":"EvRL1","event_time":-1.5e+3,"team_id":"T","type":"event_callback"},"thread_id":"C1:1.000001"}`,
	`{"MESSAGE_ID":"m","Payload":{"Type":"event_callback","Event_Id":"Ev2"}}`,
	`{"message_id":"m","payload":{"type":"event_callback","event_id":"Ev\u0031"}}`,
	`{"message_id":"m","payload":{"type":"event_callback","event_\u0069d":"Ev3"}}`,
	`{"message_id":"m","payload":{"type":"event_callback","event_id":"Ev\u00e9","event_id":null}}`,
	`{"message_id":"m","payload":{"type":"event_callback","event_id":"Ev1"},"payload":null}`,
	`{"message_id":"m","payload":{"type":"event_callback","event_id":"Ev\xff"}}`,
	`{"meſſage_id":"m","payload":{"type":"event_callback","event_id":"Ev4"}}`,
	`{"message_id":7,"payload":{"type":"event_callback","event_id":"Ev1"}}`,
	`{"message_id":"m","type":1,"payload":{"type":"event_callback","event_id":"Ev1"}}`,
	`{"message_id":"m","payload":{"type":"event_callback","event_id":"Ev1"}} x`,
	`{"message_id":"m","payload":{"type":"event_callback","event_id":"Ev1","x":01}}`,
	`{"message_id":"m","payload":{"type":"event_callback","event_id":"Ev1","x":[1,2,]}}`,
	`{"message_id":"m","payload":{"type":"event_callback","event_id":"Ev1","x":"\q"}}`,
	`{"message_id":"m","payload":{"type":"event_callback","event_id":"Ev1","x":"tab\there"}}`,
	`{"message_id":"m","payload":{"type":"event_callback","event_id":"Ev1","x":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}}`,
	`{"message_id":"m","payload":{"type":"event_callback","event_id":"Ev1","x":` + strings.Repeat("[", 9990) + strings.Repeat("]", 9990) + `}}`,
	`{"message_id":"m","payload":"text"}`,
	`{"message_id":"m","payload":{"type":"block_actions"}}`,
	`{"message_id":"","payload":{"type":"event_callback","event_id":"Ev1"}}`,
	`{"payload":{"type":"event_callback","event_id":"Ev1"}}`,
	`[]`, `null`, `{`, ``, `"x"`, `{"message_id":"m","payload":{"type":"event_callback","event_id":"Ev1"}`,
	`{"message_id":"m","payload":{"type":"event_callback","event_id":"Ev1","n":[-0.5e-3,1E9,true,false,null,{}]}}`,
	`{"message_id":"m","payload":{"type":"event_callback","event_id":"Ev1","n":-}}`,
	`{"message_id":"m","payload":{"type":"event_callback","event_id":"Ev1","n":1.}}`,
	`{"message_id":"m","payload":{"type":"event_callback","event_id":"Ev1","n":tru}}`,
}

// TestDeliveryIDsMatchEncodingJSON: on every case the scanner accepts
// exactly what json.Unmarshal accepted and returns the same event id, for
// SSE data and for its payload alone (a forwarded body).
func TestDeliveryIDsMatchEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, in := range deliveryCases {
		checkDeliveryIDs(t, []byte(in))
	}
}

// FuzzDeliveryIDsMatchEncodingJSON: the same on any input.
func FuzzDeliveryIDsMatchEncodingJSON(f *testing.F) {
	for _, in := range deliveryCases {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, in []byte) { checkDeliveryIDs(t, in) })
}

func checkDeliveryIDs(t *testing.T, in []byte) {
	t.Helper()
	got, err := sseEventID(in)
	want, werr := referenceSSEEventID(in)
	if got != want || (err == nil) != (werr == nil) {
		t.Fatalf("sseEventID(%.200q) = %q, %v; encoding/json gives %q, %v", in, got, err, want, werr)
	}
	got, err = deliveredEventID(in)
	want, werr = referenceDeliveredEventID(in)
	if got != want || (err == nil) != (werr == nil) {
		t.Fatalf("deliveredEventID(%.200q) = %q, %v; encoding/json gives %q, %v", in, got, err, want, werr)
	}
}
